"""The extract stage: corpus -> the four extract files of the data contract."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import ConfigError, ExtractConfig, RunConfig, load_config
from pipeline.contracts import OBJECTS, PROMPTS, SKIPPED, WORDS, RunDir
from pipeline.scenes import NOUNS
from pipeline.vocabulary import category_names
from stages import extract

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO / "configs" / "prompts" / "everyday.txt"
CAPTIONS = REPO.parent / "shared" / "data" / "captions_val2017_first1000.json"


def config(corpus: Path | None = None, **extract_settings: object) -> RunConfig:
    return RunConfig(corpus=str(corpus) if corpus else None, extract=ExtractConfig(**extract_settings))


def table(path: Path) -> pa.Table:
    return pq.read_table(path)


def files(run: RunDir) -> list[Path]:
    return [run.prompts, run.words, run.objects, run.extract_skipped]


def test_outputs_follow_the_contract(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    summary = extract.run(run, config(DEFAULT_CORPUS))
    for path, schema in zip(files(run), (PROMPTS, WORDS, OBJECTS, SKIPPED)):
        assert pq.read_schema(path).remove_metadata().equals(schema), path.name
    prompts, words, objects = table(run.prompts), table(run.words), table(run.objects)

    lines = DEFAULT_CORPUS.read_text(encoding="utf-8").splitlines()
    assert prompts.column("prompt_id").to_pylist() == list(range(len(lines)))  # the shipped corpus: nothing skipped
    assert prompts.column("prompt").to_pylist() == lines
    assert prompts.column("source_row").to_pylist() == list(range(len(lines)))
    assert set(prompts.column("source").to_pylist()) == {"everyday.txt"}
    assert summary == {
        "prompts": len(lines),
        "words": words.num_rows,
        "objects": objects.num_rows,
        "categories": len(set(objects.column("category").to_pylist())),
        "skipped": 0,
        "skip_reasons": {},
    }
    # every word of an object points back at it; object spans match the prompt text
    text_of = dict(zip(prompts.column("prompt_id").to_pylist(), prompts.column("prompt").to_pylist()))
    word_rows = words.to_pylist()
    for obj in objects.to_pylist():
        prompt = text_of[obj["prompt_id"]]
        assert prompt[obj["start_char"] : obj["end_char"]] == obj["text"]
        members = [
            w["word_index"]
            for w in word_rows
            if w["prompt_id"] == obj["prompt_id"] and w["object_index"] == obj["object_index"]
        ]
        assert members == list(range(obj["word_start"], obj["word_end"]))
    # the corpus covers what it promises: multi-object, plurals, compounds, a repeated word
    categories = set(objects.column("category").to_pylist())
    assert {"teddy bear", "hot dog", "fire hydrant", "stop sign", "apple"} <= categories
    per_prompt = objects.group_by("prompt_id").aggregate([("object_index", "count")])
    assert max(per_prompt.column("object_index_count").to_pylist()) >= 3


def test_the_default_config_points_at_the_scene_corpus(tmp_path: Path) -> None:
    # the embedded model's world: every caption is used and every object is one of its nouns
    scenes = REPO / "configs" / "prompts" / "scenes.txt"
    assert Path(load_config().corpus) == scenes.resolve()
    run = RunDir(tmp_path / "run")
    summary = extract.run(run, config(scenes))
    assert summary["skipped"] == 0 and summary["prompts"] == 24
    heads = {c.split()[-1] for c in table(run.objects).column("category").to_pylist()}  # "teal boat" -> "boat"
    assert heads <= set(NOUNS) and len(heads) >= 6


def test_shipped_corpus_fits_coco80(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    summary = extract.run(run, config(DEFAULT_CORPUS, vocabulary="coco80"))
    assert summary["skipped"] == 0
    categories = table(run.objects).column("category").to_pylist()
    assert set(categories) <= set(category_names("coco80"))
    assert "person" in categories and "couch" in categories  # man/woman/boy and sofa are synonyms


def test_bad_rows_are_recorded_and_nothing_is_lost(tmp_path: Path) -> None:
    corpus = tmp_path / "prompts.txt"
    corpus.write_bytes(
        b"a cat and a dog on a sofa\n"  # 0 kept
        b"\n"  # 1 empty
        b"A cat and  a dog on a sofa\n"  # 2 duplicate of 0
        b"running quickly and happily\n"  # 3 no nouns
        b"a caf\xe9 with a horse\n"  # 4 not UTF-8
        b"three hot dogs on a plate\n"  # 5 kept
    )
    run = RunDir(tmp_path / "run")
    summary = extract.run(run, config(corpus))
    prompts, skipped = table(run.prompts), table(run.extract_skipped)
    assert prompts.column("source_row").to_pylist() == [0, 5]
    assert prompts.column("prompt_id").to_pylist() == [0, 1]
    rows = skipped.to_pylist()
    assert [r["source_row"] for r in rows] == [1, 2, 3, 4]
    assert prompts.num_rows + skipped.num_rows == 6
    reasons = [r["reason"] for r in rows]
    assert reasons[0] == "empty prompt" and reasons[1].startswith("duplicate of row 0")
    assert reasons[2] == "no nouns" and "UTF-8" in reasons[3]
    assert all(r["stage"] == "extract" and r["source"] == "prompts.txt" for r in rows)
    assert summary["skipped"] == 4
    assert summary["skip_reasons"] == {"duplicate": 1, "empty prompt": 1, "no nouns": 1, "not valid UTF-8": 1}
    # skipped prompts have no words
    assert set(table(run.words).column("prompt_id").to_pylist()) == {0, 1}


def test_max_prompts_caps_accepted_prompts_and_records_the_rest(tmp_path: Path) -> None:
    corpus = tmp_path / "prompts.txt"
    corpus.write_text("a cat\nrunning fast\na dog\na horse\na cow\n", encoding="utf-8")
    run = RunDir(tmp_path / "run")
    summary = extract.run(run, config(corpus, max_prompts=2))
    assert table(run.prompts).column("prompt").to_pylist() == ["a cat", "a dog"]
    skipped = table(run.extract_skipped).to_pylist()
    assert [(s["source_row"], s["reason"]) for s in skipped] == [
        (1, "no nouns"),
        (3, "beyond extract.max_prompts (2)"),
        (4, "beyond extract.max_prompts (2)"),
    ]
    assert summary["prompts"] == 2 and summary["skip_reasons"]["beyond extract.max_prompts"] == 2


def test_coco_captions_corpus_keeps_ids(tmp_path: Path) -> None:
    if not CAPTIONS.exists():
        pytest.fail(f"COCO captions not found at {CAPTIONS}: the tests expect ../shared/data beside the repository")
    run = RunDir(tmp_path / "run")
    extract.run(run, config(CAPTIONS, vocabulary="coco80", max_prompts=25))
    prompts = table(run.prompts).to_pylist()
    assert len(prompts) == 25
    annotations = json.loads(CAPTIONS.read_text(encoding="utf-8"))["annotations"]
    for row in prompts:
        ann = annotations[row["source_row"]]
        assert (row["coco_image_id"], row["coco_caption_id"]) == (ann["image_id"], ann["id"])
    categories = set(table(run.objects).column("category").to_pylist())
    assert categories <= set(category_names("coco80")) and "person" in categories


def test_corpus_argument_overrides_config_and_one_is_required(tmp_path: Path) -> None:
    corpus = tmp_path / "mine.txt"
    corpus.write_text("a red bus\n", encoding="utf-8")
    run = RunDir(tmp_path / "run")
    extract.run(run, config(DEFAULT_CORPUS), corpus=corpus)
    assert table(run.prompts).column("prompt").to_pylist() == ["a red bus"]
    with pytest.raises(ConfigError, match="no prompt corpus"):
        extract.run(RunDir(tmp_path / "other"), config(None))


def test_rerun_is_a_no_op_returning_the_same_summary(tmp_path: Path) -> None:
    corpus = tmp_path / "prompts.txt"
    corpus.write_text("a cat on a mat\n\na dog and a cat\nquickly\n", encoding="utf-8")
    run = RunDir(tmp_path / "run")
    first = extract.run(run, config(corpus))
    stamps = [p.stat().st_mtime_ns for p in files(run)]
    corpus.unlink()  # a rerun must not need the corpus: it reads nothing but its own outputs
    second = extract.run(run, config(corpus))
    assert second == first
    assert [p.stat().st_mtime_ns for p in files(run)] == stamps
    # with one output missing, the stage runs again (and needs its corpus)
    run.objects.unlink()
    with pytest.raises(FileNotFoundError, match="prompts.txt"):
        extract.run(run, config(corpus))
