"""evaluate(): summary, per-category table, plot and printed table, from a ground truth on disk."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.coco import save_coco
from pipeline.config import EvaluateConfig, RunConfig
from pipeline.contracts import RunDir
from pipeline.contracts import PER_CATEGORY
from stages.evaluate import evaluate, format_table
from tests.labelstudio_fixtures import CATEGORIES, MAIN_TAU, TAUS, make_run

CONFIG = RunConfig(evaluate=EvaluateConfig(taus=list(TAUS)))


def _reviewed(run: RunDir, image_ids: set[int]) -> dict:
    """A ground truth that accepts the run's own masks on ``image_ids``."""
    dataset = json.loads(run.instances_json.read_text())
    gt = copy.deepcopy(dataset)
    gt["images"] = [i for i in gt["images"] if i["id"] in image_ids]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in image_ids]
    save_coco(run.ground_truth_json, gt)
    return gt


def test_summary_table_and_plot(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", 6)
    gt = _reviewed(run, {1, 2, 3, 4})  # images 5 and 6 were never reviewed
    summary = evaluate(run.root, CONFIG)

    assert sorted(summary) == ["0.3", "0.4", "0.5"]
    main = summary[f"{MAIN_TAU:g}"]
    # the predictions on the unreviewed images 5 and 6 are not counted as false positives
    assert main["segm"] == {"AP": 1.0, "AP50": 1.0, "AP75": 1.0} and main["bbox"]["AP"] == 1.0
    assert main["miou"] == 1.0 and main["n_images"] == 4 and main["n_gt"] == main["n_pred"] == len(gt["annotations"])
    for tau in ("0.3", "0.5"):
        assert 0.0 < summary[tau]["miou"] < 1.0
        assert summary[tau]["segm"]["AP"] < 1.0
    assert json.loads((run.eval / "summary.json").read_text()) == summary

    table = pq.read_table(run.eval / "per_category.parquet")
    assert table.schema.equals(PER_CATEGORY)
    rows = table.to_pylist()
    assert len(rows) == len(TAUS) * len(CATEGORIES)
    assert {r["category"] for r in rows} == set(CATEGORIES)
    main_rows = [r for r in rows if r["tau"] == pytest.approx(MAIN_TAU)]
    assert all(r["segm_AP"] == 1.0 and r["miou"] == 1.0 for r in main_rows)
    assert sum(r["n_gt"] for r in main_rows) == len(gt["annotations"])

    with Image.open(run.eval / "ap_vs_tau.png") as image:
        assert image.format == "PNG" and image.width > 300

    text = format_table(summary)
    lines = text.splitlines()
    assert len(lines) == 2 + len(TAUS) + 1
    assert lines[3].startswith(" 0.40") and "100.0" in lines[3]


def test_a_category_without_truth_is_reported_as_undefined(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", 6)
    gt = _reviewed(run, {1, 2, 3, 4, 5, 6})
    gt["annotations"] = [a for a in gt["annotations"] if a["category_id"] != 2]
    save_coco(run.ground_truth_json, gt)
    summary = evaluate(run.root, CONFIG)
    rows = pq.read_table(run.eval / "per_category.parquet").to_pylist()
    hot_dog = [r for r in rows if r["category_id"] == 2]
    assert all(r["segm_AP"] is None and r["miou"] is None and r["n_pred"] > 0 for r in hot_dog)
    # the other categories are still perfect at the main tau, and the undefined one is left out
    assert summary["0.4"]["segm"]["AP"] == 1.0
    assert "     -" not in format_table(summary).splitlines()[2]


def test_missing_inputs_are_named(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", 2)
    with pytest.raises(FileNotFoundError, match="review pull"):
        evaluate(run.root, CONFIG)
    _reviewed(run, {1})
    with pytest.raises(FileNotFoundError, match=r"predictions_tau0.7.json.*annotate.sweep"):
        evaluate(run.root, RunConfig(evaluate=EvaluateConfig(taus=[0.7])))
    _reviewed(run, set())
    with pytest.raises(ValueError, match="no reviewed images"):
        evaluate(run.root, CONFIG)
    assert not (run.eval / "summary.json").exists()


def test_cli_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    run = make_run(tmp_path / "run", 3)
    _reviewed(run, {1, 2, 3})
    assert main(["evaluate", str(run.root), "--taus", "0.4", "0.5"]) == 0
    out = capsys.readouterr().out
    assert " 0.40  100.0  100.0  100.0  100.0  100.0  100.0  100.0      3" in out
    assert sorted(json.loads((run.eval / "summary.json").read_text())) == ["0.4", "0.5"]
