"""The whole loop a user runs: dataset run with --review -> reviewer accepts -> pull -> evaluate (issue 4)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import config_to_dict
from pipeline.labelstudio.client import connect
from pipeline.config import config_with
from tests.test_review import accept, act_as_reviewer
from tests.test_workflow import PROMPTS, fast_config, write_corpus


def test_run_review_pull_evaluate_on_a_real_run(
    tmp_path: Path, labelstudio: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LABEL_STUDIO_URL", labelstudio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", labelstudio.api_key)
    config = config_with(fast_config(tmp_path), "review", project_title=f"daamset loop {uuid.uuid4().hex[:8]}")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config_to_dict(config)))
    corpus = write_corpus(tmp_path / "prompts.txt", PROMPTS[:4])
    run_dir = tmp_path / "run"

    assert main(["run", str(config_path), "--out", str(run_dir), "--prompts", str(corpus), "--review"]) == 0
    out = capsys.readouterr().out
    assert "4 tasks imported" in out and "review at http" in out
    project = json.loads((run_dir / "review" / "project.json").read_text())
    assert labelstudio.api_key not in (run_dir / "review" / "project.json").read_text()

    act_as_reviewer(connect(labelstudio.url, labelstudio.api_key), project["project_id"], accept)
    assert main(["review", "pull", str(run_dir)]) == 0
    assert main(["evaluate", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "0.4" in printed
    summary = json.loads((run_dir / "eval" / "summary.json").read_text())
    assert set(summary) == {"0.3", "0.4", "0.5"}
    # the reviewer accepted the tau=0.4 masks unchanged
    assert summary["0.4"]["segm"]["AP"] == pytest.approx(1.0)
    assert summary["0.4"]["bbox"]["AP"] == pytest.approx(1.0)
    assert summary["0.4"]["miou"] == pytest.approx(1.0)
    assert (run_dir / "eval" / "ap_vs_tau.png").stat().st_size > 0
