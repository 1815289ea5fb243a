"""Reading prompt corpora: every format, and every kind of bad row recorded as a skip."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.contracts import SKIPPED
from pipeline.corpus import SUPPORTED_SUFFIXES, CorpusError, PromptRecord, normalize_whitespace, read_corpus

REPO = Path(__file__).resolve().parents[1]
CAPTIONS = REPO.parent / "shared" / "data" / "captions_val2017_first1000.json"


def coco_captions() -> dict:
    """The shared COCO captions file (beside the repository, as in CI)."""
    if not CAPTIONS.exists():
        pytest.fail(f"COCO captions not found at {CAPTIONS}: the tests expect ../shared/data beside the repository")
    return json.loads(CAPTIONS.read_text(encoding="utf-8"))


def prompts(records: list[PromptRecord]) -> list[str]:
    return [r.prompt for r in records]


def test_txt_one_prompt_a_line_with_whitespace_normalised(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("a cat on a mat\n  two\tdogs   in a  park  \nthe third one\n", encoding="utf-8")
    records, skips = read_corpus(path)
    assert prompts(records) == ["a cat on a mat", "two dogs in a park", "the third one"]
    assert [r.source_row for r in records] == [0, 1, 2]
    assert {r.source for r in records} == {"p.txt"}
    assert all(r.coco_image_id is None and r.coco_caption_id is None for r in records)
    assert skips == []


def test_crlf_and_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes(b"\xef\xbb\xbfa cat\r\na dog\r\n")
    records, skips = read_corpus(path)
    assert prompts(records) == ["a cat", "a dog"]
    assert skips == []


def test_empty_and_blank_lines_are_recorded_skips(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("a cat\n\n   \t \na dog\n", encoding="utf-8")
    records, skips = read_corpus(path)
    assert prompts(records) == ["a cat", "a dog"]
    assert [r.source_row for r in records] == [0, 3]
    assert [(s["source_row"], s["reason"]) for s in skips] == [(1, "empty prompt"), (2, "empty prompt")]
    assert all(s["stage"] == "extract" and s["source"] == "p.txt" for s in skips)
    # the skip rows fit the contract's table
    pa.Table.from_pylist(skips, schema=SKIPPED)


def test_non_utf8_bytes_are_a_skip_naming_the_row(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes(b"a cat\na caf\xe9 with a dog\na horse\n")
    records, skips = read_corpus(path)
    assert prompts(records) == ["a cat", "a horse"]
    (skip,) = skips
    assert skip["source_row"] == 1
    assert "row 1" in skip["reason"] and "UTF-8" in skip["reason"] and "0xe9" in skip["reason"]
    assert skip["input"] == "a caf\ufffd with a dog"  # decoded with replacement, not lost


def test_duplicates_keep_the_first_ignoring_case_and_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("A Cat on a mat\na dog\na  cat on a MAT \na dog\n", encoding="utf-8")
    records, skips = read_corpus(path)
    assert prompts(records) == ["A Cat on a mat", "a dog"]  # the first keeps its casing
    assert [(s["source_row"], s["input"]) for s in skips] == [(2, "a cat on a MAT"), (3, "a dog")]
    assert skips[0]["reason"].startswith("duplicate of row 0")
    assert skips[1]["reason"].startswith("duplicate of row 1")


def test_jsonl_with_a_configurable_column_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    lines = [
        json.dumps({"text": "a cat", "other": 1}),
        "{not json",
        json.dumps({"other": 2}),
        json.dumps({"text": None}),
        json.dumps({"text": 42}),
        "",
        json.dumps(["a list"]),
        json.dumps({"text": "a dog"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records, skips = read_corpus(path, prompt_column="text")
    assert prompts(records) == ["a cat", "a dog"]
    assert [r.source_row for r in records] == [0, 7]
    reasons = {s["source_row"]: s["reason"] for s in skips}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6]
    assert reasons[1].startswith("not valid JSON")
    assert reasons[2].startswith("no 'text' field")
    assert "null" in reasons[3] and "not a string" in reasons[4]
    assert reasons[5] == "empty prompt" and reasons[6].startswith("not a JSON object")


def test_jsonl_non_utf8_inside_a_string(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"prompt": "a cat"}\n{"prompt": "a \xff dog"}\n')
    records, skips = read_corpus(path)
    assert prompts(records) == ["a cat"]
    assert skips[0]["source_row"] == 1 and "UTF-8" in skips[0]["reason"]
    assert skips[0]["input"] == "a \ufffd dog"


def test_parquet_bytes_and_json_escapes_that_are_not_utf8(tmp_path: Path) -> None:
    # Parquet writers need not check UTF-8; JSON can escape a lone surrogate that no UTF-8 encodes
    parquet = tmp_path / "p.parquet"
    raw = pa.array([b"a cat", b"a \xff dog"], pa.binary()).cast(pa.string(), safe=False)
    pq.write_table(pa.table({"prompt": raw}), parquet)
    records, skips = read_corpus(parquet)
    assert prompts(records) == ["a cat"]
    assert (skips[0]["source_row"], skips[0]["input"]) == (1, "a \ufffd dog") and "0xff" in skips[0]["reason"]

    captions = tmp_path / "captions_x.json"
    annotations = [{"image_id": 1, "id": 10, "caption": "a \ud800 cat"}, {"image_id": 1, "id": 11, "caption": "a dog"}]
    captions.write_text(json.dumps({"annotations": annotations}), encoding="utf-8")
    records, skips = read_corpus(captions)
    assert [(r.prompt, r.coco_caption_id) for r in records] == [("a dog", 11)]
    assert skips[0]["source_row"] == 0 and "U+D800" in skips[0]["reason"]
    pa.Table.from_pylist(skips, schema=SKIPPED)  # the skip itself is storable


def test_missing_column_is_an_error_naming_file_column_and_columns(tmp_path: Path) -> None:
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"caption": "a cat", "id": 3}) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as err:
        read_corpus(jsonl, prompt_column="prompt")
    assert str(jsonl) in str(err.value) and "'prompt'" in str(err.value)
    assert "caption" in str(err.value) and "id" in str(err.value)

    csv_path = tmp_path / "p.csv"
    csv_path.write_text("caption,id\na cat,3\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"no column 'prompt'; it has \['caption', 'id'\]"):
        read_corpus(csv_path)

    parquet = tmp_path / "p.parquet"
    pq.write_table(pa.table({"caption": ["a cat"]}), parquet)
    with pytest.raises(CorpusError, match=r"no column 'prompt'; it has \['caption'\]"):
        read_corpus(parquet)


def test_csv_and_tsv(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(b'id,prompt\n1,"a cat, a dog and a bird"\n2,\n3,"a horse\nin a field"\n4,a caf\xe9\n5,a cow\n')
    records, skips = read_corpus(path)
    assert prompts(records) == ["a cat, a dog and a bird", "a horse in a field", "a cow"]
    assert [r.source_row for r in records] == [0, 2, 4]  # data rows, header not counted
    assert [(s["source_row"], s["reason"].split(" (")[0]) for s in skips] == [
        (1, "empty prompt"),
        (3, "not valid UTF-8"),
    ]

    tsv = tmp_path / "p.tsv"
    tsv.write_text("caption\tn\na cat, sleeping\t1\n", encoding="utf-8")
    records, _ = read_corpus(tsv, prompt_column="caption")
    assert prompts(records) == ["a cat, sleeping"]


def test_parquet_column_with_nulls(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"n": [1, 2, 3], "prompt": ["a cat", None, " a  dog "]}), path)
    records, skips = read_corpus(path)
    assert prompts(records) == ["a cat", "a dog"]
    assert [r.source_row for r in records] == [0, 2]
    assert skips[0]["source_row"] == 1 and "null" in skips[0]["reason"]
    with pytest.raises(CorpusError, match="'n' holds int64, not strings"):
        read_corpus(path, prompt_column="n")


def test_coco_captions_keep_image_and_caption_ids(tmp_path: Path) -> None:
    data = coco_captions()
    part = dict(data, annotations=data["annotations"][:40])
    path = tmp_path / "captions_part.json"
    path.write_text(json.dumps(part), encoding="utf-8")
    records, skips = read_corpus(path)
    assert len(records) + len(skips) == 40  # nothing lost silently
    assert len(records) > 30
    for record in records:
        ann = part["annotations"][record.source_row]
        assert record.prompt == normalize_whitespace(ann["caption"])
        assert record.coco_image_id == ann["image_id"]
        assert record.coco_caption_id == ann["id"]
        assert record.source == "captions_part.json"


def test_whole_coco_captions_file_accounts_for_every_caption() -> None:
    data = coco_captions()
    records, skips = read_corpus(CAPTIONS)
    assert len(records) + len(skips) == len(data["annotations"])
    assert len({r.coco_caption_id for r in records}) == len(records)
    assert all(s["reason"].startswith("duplicate") for s in skips)


def test_json_that_is_not_coco_captions_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"prompt": "a cat"}]), encoding="utf-8")
    with pytest.raises(CorpusError, match="COCO captions"):
        read_corpus(path)


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_corpus(missing)
    odd = tmp_path / "p.docx"
    odd.write_text("a cat\n", encoding="utf-8")
    with pytest.raises(CorpusError) as err:
        read_corpus(odd)
    assert "'.docx'" in str(err.value)
    assert all(suffix in str(err.value) for suffix in SUPPORTED_SUFFIXES)
