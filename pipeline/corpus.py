"""Reading a prompt corpus into prompt records, with every dropped row recorded.

Formats (chosen by the file name):

- ``.txt``: one prompt a line.
- ``.jsonl`` / ``.ndjson``: one JSON object a line, the prompt in ``prompt_column``.
- ``.csv`` / ``.tsv``: a header row, the prompt in ``prompt_column``.
- ``.parquet``: the prompt in the string column ``prompt_column``.
- ``.json``: COCO captions (``captions_*.json``, or any JSON object whose
  ``annotations`` hold ``caption``); image and caption ids are kept.

``source_row`` is 0-based: the line of a .txt / .jsonl file, the data row of a
.csv / .parquet file (header not counted), the index in ``annotations`` of a
COCO captions file.

Whitespace is normalised (runs of any whitespace become one space, ends
stripped). A row is skipped, with its reason, when it is blank, holds bytes
that are not UTF-8 (the skip shows it decoded with replacement characters),
lacks the prompt, or repeats an earlier prompt. Duplicates are found
**ignoring case** (after whitespace normalisation): CLIP's tokenizer lower-cases
text, so "A cat" and "a cat" are the same input to the model. The first
occurrence is kept, with its own casing.

Errors that concern the whole file (missing file, unknown format, missing
column) raise instead: nothing could be read.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import ConfigError

__all__ = [
    "STAGE",
    "SUPPORTED_SUFFIXES",
    "CorpusError",
    "PromptRecord",
    "normalize_whitespace",
    "read_corpus",
    "skip_record",
]

STAGE = "extract"
SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".json")


class CorpusError(ConfigError):
    """The corpus file as a whole cannot be read (unknown format, missing column...)."""


@dataclass(frozen=True)
class PromptRecord:
    """One usable prompt and where it came from (the contract's PROMPTS row, minus prompt_id)."""

    prompt: str
    source: str
    source_row: int
    coco_image_id: int | None = None
    coco_caption_id: int | None = None


def normalize_whitespace(text: str) -> str:
    """Collapse runs of whitespace (spaces, tabs, newlines) to one space; strip the ends."""
    return " ".join(text.split())


def skip_record(source: str, source_row: int | None, text: str, reason: str, *, stage: str = STAGE) -> dict[str, Any]:
    """A row of the contract's SKIPPED table for an input that was not used."""
    return {
        "stage": stage,
        "source": source,
        "source_row": source_row,
        "prompt_id": None,
        "image_id": None,
        "input": text,
        "reason": reason,
    }


# A raw row before checks: (source_row, text or None, reason it has no text, extra ids).
# Undecodable bytes arrive as lone surrogates (decoded with "surrogateescape"),
# so one check finds them in every format.
@dataclass(frozen=True)
class _Raw:
    row: int
    text: str | None
    problem: str | None = None
    coco_image_id: int | None = None
    coco_caption_id: int | None = None


def _has_surrogates(text: str) -> bool:
    # also catches lone surrogates written as JSON escapes (\ud800): no UTF-8 encodes them
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _bad_bytes(text: str) -> list[str]:
    return [
        f"0x{ord(ch) - 0xDC00:02x}" if "\udc80" <= ch <= "\udcff" else f"U+{ord(ch):04X}"
        for ch in text
        if "\ud800" <= ch <= "\udfff"
    ]


def _replaced(text: str) -> str:
    """``text`` with undecodable bytes (and lone surrogates) shown as U+FFFD, as a strict reader shows them."""
    if not _has_surrogates(text):
        return text
    out = bytearray()
    for ch in text:
        if "\udc80" <= ch <= "\udcff":
            out.append(ord(ch) - 0xDC00)
        elif "\ud800" <= ch <= "\udfff":
            out.extend("\ufffd".encode())
        else:
            out.extend(ch.encode())
    return out.decode("utf-8", "replace")


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark is not part of the first prompt
        data = data[3:]
    return data.decode("utf-8", "surrogateescape")


def _lines(path: Path) -> list[str]:
    # split on \n only (str.splitlines would also split on \x1c, \u2028 ... inside a prompt)
    text = _decode(path.read_bytes())
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline does not start a row
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _missing_column(path: Path, column: str, columns: list[str]) -> CorpusError:
    return CorpusError(
        f"corpus {path}: no column {column!r}; it has {columns}. "
        "Set extract.prompt_column in the config to the column that holds the prompts."
    )


def _read_txt(path: Path, column: str) -> Iterator[_Raw]:
    for row, line in enumerate(_lines(path)):
        yield _Raw(row, line)


def _read_jsonl(path: Path, column: str) -> Iterator[_Raw]:
    rows: list[_Raw] = []
    seen_columns: set[str] = set()
    found = False
    for row, line in enumerate(_lines(path)):
        if not line.strip():
            rows.append(_Raw(row, line))  # reported as an empty line below
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            rows.append(_Raw(row, None, f"not valid JSON ({err.msg} at column {err.colno}): {_replaced(line)[:200]}"))
            continue
        if not isinstance(obj, dict):
            rows.append(_Raw(row, None, f"not a JSON object: {_replaced(line)[:200]}"))
            continue
        seen_columns.update(obj)
        if column not in obj:
            rows.append(_Raw(row, None, f"no {column!r} field: {_replaced(line)[:200]}"))
            continue
        found = True
        rows.append(_value_row(row, obj[column], column))
    if rows and not found and seen_columns:
        raise _missing_column(path, column, sorted(seen_columns))
    yield from rows


def _value_row(row: int, value: Any, column: str) -> _Raw:
    if value is None:
        return _Raw(row, None, f"{column!r} is null")
    if not isinstance(value, str):
        return _Raw(row, None, f"{column!r} is not a string but {type(value).__name__} {value!r}")
    return _Raw(row, value)


def _read_csv(path: Path, column: str) -> Iterator[_Raw]:
    text = _decode(path.read_bytes())
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    header = [_replaced(h).strip() for h in header]
    if column not in header:
        raise _missing_column(path, column, header)
    index = header.index(column)
    for row, fields in enumerate(reader):
        if not fields:  # a blank line
            yield _Raw(row, "")
        elif index >= len(fields):
            yield _Raw(row, None, f"row has {len(fields)} fields, no {column!r} value")
        else:
            yield _Raw(row, fields[index])


def _read_parquet(path: Path, column: str) -> Iterator[_Raw]:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise CorpusError(f"corpus {path}: not a readable Parquet file: {err}") from err
    if column not in schema.names:
        raise _missing_column(path, column, list(schema.names))
    field_type = schema.field(column).type
    if not (pa.types.is_string(field_type) or pa.types.is_large_string(field_type)):
        raise CorpusError(f"corpus {path}: column {column!r} holds {field_type}, not strings")
    # Parquet does not guarantee valid UTF-8: read bytes and decode like the other formats
    values = pq.read_table(path, columns=[column]).column(column).cast(pa.large_binary()).to_pylist()
    for row, value in enumerate(values):
        yield _value_row(row, None if value is None else value.decode("utf-8", "surrogateescape"), column)


def _read_coco_captions(path: Path, column: str) -> Iterator[_Raw]:
    try:
        data = json.loads(_decode(path.read_bytes()))
    except json.JSONDecodeError as err:
        raise CorpusError(f"corpus {path}: not valid JSON: {err}") from err
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(annotations, list) or not any(isinstance(a, dict) and "caption" in a for a in annotations):
        raise CorpusError(
            f"corpus {path}: a .json corpus must be a COCO captions file "
            "(an object whose 'annotations' hold 'caption', 'image_id' and 'id'); "
            "use .jsonl for one JSON object a line"
        )
    for row, ann in enumerate(annotations):
        if not isinstance(ann, dict) or "caption" not in ann:
            yield _Raw(row, None, f"annotation without a caption: {str(ann)[:200]}")
            continue
        raw = _value_row(row, ann["caption"], "caption")
        image_id, caption_id = ann.get("image_id"), ann.get("id")
        yield _Raw(
            row,
            raw.text,
            raw.problem,
            coco_image_id=image_id if isinstance(image_id, int) else None,
            coco_caption_id=caption_id if isinstance(caption_id, int) else None,
        )


_READERS = {
    ".txt": _read_txt,
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".csv": _read_csv,
    ".tsv": _read_csv,
    ".parquet": _read_parquet,
    ".json": _read_coco_captions,
}


def read_corpus(path: str | Path, *, prompt_column: str = "prompt") -> tuple[list[PromptRecord], list[dict[str, Any]]]:
    """Read the prompts of ``path``: the usable ones in corpus order, and a skip row
    (the contract's SKIPPED) for every row that was not used."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus {path}: no such file")
    if path.is_dir():
        raise CorpusError(f"corpus {path}: is a folder; give a prompt file")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise CorpusError(
            f"corpus {path}: unknown format {path.suffix or '(no suffix)'!r}; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)} (.json = COCO captions)"
        )
    source = path.name
    records: list[PromptRecord] = []
    skips: list[dict[str, Any]] = []
    first_row: dict[str, int] = {}  # case-folded prompt -> row of its first occurrence
    for raw in reader(path, prompt_column):
        if raw.text is None:
            skips.append(skip_record(source, raw.row, "", raw.problem or "no prompt"))
            continue
        if _has_surrogates(raw.text):
            bad = " ".join(_bad_bytes(raw.text)[:8])
            shown = normalize_whitespace(_replaced(raw.text))
            skips.append(skip_record(source, raw.row, shown, f"not valid UTF-8 ({bad}) in row {raw.row}"))
            continue
        prompt = normalize_whitespace(raw.text)
        if not prompt:
            skips.append(skip_record(source, raw.row, raw.text, "empty prompt"))
            continue
        key = prompt.casefold()
        if key in first_row:
            skips.append(
                skip_record(
                    source, raw.row, prompt, f"duplicate of row {first_row[key]} (ignoring case and whitespace)"
                )
            )
            continue
        first_row[key] = raw.row
        records.append(PromptRecord(prompt, source, raw.row, raw.coco_image_id, raw.coco_caption_id))
    return records, skips
