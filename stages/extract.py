"""Stage 1, extract: prompt corpus -> extract/{prompts,words,objects,skipped}.parquet.

Reads the corpus (``pipeline.corpus``), parses the prompts with spaCy and finds
their objects (``pipeline.nlp``, ``pipeline.vocabulary``), and writes the four
files of the contract. ``prompt_id`` is the position among accepted prompts
in corpus order; ``extract.max_prompts`` caps the accepted prompts, and the
rows past the cap are recorded as skipped (not parsed).

The four files are written atomically, ``prompts.parquet`` last; when all four
exist the stage does nothing and returns the summary read back from them.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.atomic import read_parquet, write_parquet
from pipeline.config import ConfigError, RunConfig
from pipeline.contracts import OBJECTS, PROMPTS, SKIPPED, WORDS, RunDir
from pipeline.corpus import read_corpus, skip_record
from pipeline.nlp import load_nlp, parse_prompts
from pipeline.vocabulary import load_vocabulary

__all__ = ["run", "summary_from_files"]

log = logging.getLogger(__name__)


def _summary(prompts: int, words: int, objects: int, categories: int, skip_reasons: Counter[str]) -> dict[str, Any]:
    return {
        "prompts": prompts,
        "words": words,
        "objects": objects,
        "categories": categories,
        "skipped": sum(skip_reasons.values()),
        "skip_reasons": dict(sorted(skip_reasons.items())),
    }


def _reason_kind(reason: str) -> str:
    """The reason without its row-specific part, for counting ("duplicate of row 3" -> "duplicate")."""
    for kind in ("duplicate", "not valid UTF-8", "not valid JSON", "beyond extract.max_prompts"):
        if reason.startswith(kind):
            return kind
    return reason.split(":", 1)[0]


def summary_from_files(run_dir: RunDir) -> dict[str, Any]:
    """The stage's summary, computed from its output files."""
    objects = read_parquet(run_dir.objects, OBJECTS)
    skipped = read_parquet(run_dir.extract_skipped, SKIPPED)
    return _summary(
        prompts=pq.read_metadata(run_dir.prompts).num_rows,
        words=pq.read_metadata(run_dir.words).num_rows,
        objects=objects.num_rows,
        categories=len(set(objects.column("category").to_pylist())),
        skip_reasons=Counter(_reason_kind(r) for r in skipped.column("reason").to_pylist()),
    )


def run(run_dir: RunDir, config: RunConfig, corpus: Path | None = None) -> dict[str, Any]:
    """Extract prompts, words and objects from the corpus (``corpus`` overrides ``config.corpus``)."""
    outputs = [run_dir.extract_skipped, run_dir.words, run_dir.objects, run_dir.prompts]
    if all(p.exists() for p in outputs):
        log.info("extract: outputs in %s exist, skipping", run_dir.extract)
        return summary_from_files(run_dir)

    path = Path(corpus) if corpus is not None else (Path(config.corpus) if config.corpus else None)
    if path is None:
        raise ConfigError("no prompt corpus: set `corpus` in the config or pass --prompts")
    settings = config.extract
    records, skips = read_corpus(path, prompt_column=settings.prompt_column)
    vocabulary = load_vocabulary(settings.vocabulary)
    nlp = load_nlp(settings.spacy_model)
    cap = settings.max_prompts

    prompt_rows: list[dict[str, Any]] = []
    word_rows: list[dict[str, Any]] = []
    object_rows: list[dict[str, Any]] = []
    # Past the cap nothing more is needed: parse lazily and stop feeding spaCy there.
    parsed = parse_prompts(nlp, (r.prompt for r in records), settings.batch_size, vocabulary)
    with tqdm(total=len(records), desc=f"{'extract':>9}", unit="prompt") as bar:  # aligned with the workflow's bars
        for position, record in enumerate(records):
            if cap is not None and len(prompt_rows) >= cap:
                for rest in records[position:]:
                    skips.append(
                        skip_record(rest.source, rest.source_row, rest.prompt, f"beyond extract.max_prompts ({cap})")
                    )
                bar.update(len(records) - position)
                break
            result = next(parsed)
            bar.update(1)
            if result.skip_reason is not None:
                skips.append(skip_record(record.source, record.source_row, record.prompt, result.skip_reason))
                continue
            prompt_id = len(prompt_rows)
            prompt_rows.append({"prompt_id": prompt_id, **vars(record)})
            word_rows.extend({"prompt_id": prompt_id, **vars(w)} for w in result.words)
            object_rows.extend({"prompt_id": prompt_id, **vars(o)} for o in result.objects)
    parsed.close()

    skips.sort(key=lambda s: (s["source_row"] is None, s["source_row"] or 0))
    write_parquet(run_dir.extract_skipped, skips, SKIPPED)
    write_parquet(run_dir.words, word_rows, WORDS)
    write_parquet(run_dir.objects, object_rows, OBJECTS)
    write_parquet(run_dir.prompts, prompt_rows, PROMPTS)  # last: its presence marks the stage done

    summary = _summary(
        prompts=len(prompt_rows),
        words=len(word_rows),
        objects=len(object_rows),
        categories=len({o["category"] for o in object_rows}),
        skip_reasons=Counter(_reason_kind(s["reason"]) for s in skips),
    )
    log.info(
        "extract: %d prompts, %d objects in %d categories, %d skipped (%s)",
        summary["prompts"],
        summary["objects"],
        summary["categories"],
        summary["skipped"],
        ", ".join(f"{k}: {v}" for k, v in summary["skip_reasons"].items()) or "none",
    )
    return summary
