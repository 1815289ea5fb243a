"""Atomic file writes: write beside the target, then rename over it.

A reader (or a resumed run) therefore sees either the old file or the whole
new one, never a half-written file. ``os.replace`` is atomic on POSIX when
both paths are on one file system, which holds because the temporary file
sits in the target's folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["atomic_path", "write_json", "write_parquet", "write_text", "read_parquet"]


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _write_with(target: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    return _write_with(target, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(target: str | os.PathLike[str], obj: Any, *, indent: int | None = None) -> Path:
    return write_text(target, json.dumps(obj, indent=indent, ensure_ascii=False))


def write_parquet(
    target: str | os.PathLike[str],
    rows: list[dict[str, Any]] | pa.Table,
    schema: pa.Schema,
) -> Path:
    """Write ``rows`` (dicts or a table) as Parquet with exactly ``schema``."""
    if isinstance(rows, pa.Table):
        table = rows.select(schema.names).cast(schema)
    else:
        table = pa.Table.from_pylist(list(rows), schema=schema)
    return _write_with(target, lambda p: pq.write_table(table, p))


def read_parquet(path: str | os.PathLike[str], schema: pa.Schema | None = None) -> pa.Table:
    """Read a Parquet file, checking it against ``schema`` when given."""
    table = pq.read_table(path)
    if schema is not None:
        missing = [n for n in schema.names if n not in table.column_names]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; was it written by another version?")
        table = table.select(schema.names).cast(schema)
    return table
