"""The dataset run end to end on the embedded model (issue 3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from pycocotools import mask as mask_utils

from pipeline.coco import load_coco
from pipeline.config import load_config
from pipeline.metrics import coco_ap
from pipeline.config import config_with
from pipeline.workflow import run_dataset

REPO = Path(__file__).resolve().parent.parent

# Small but varied: multi-object, plural, compound noun, attribute, numeral,
# punctuation, a repeated word.
PROMPTS = [
    "a cat and a dog on a sofa",
    "three apples on a wooden table.",
    "a teddy bear next to a hot dog",
    "a red car in front of a white house",
    "two birds above a boat",
    "a dog chasing another dog",
    "an umbrella, a chair and a bicycle",
    "a pizza on a plate",
    "a horse in a field",
]


def fast_config(tmp: Path, *, scheduler: str | None = "inline", n_workers: int = 1, partition_size: int = 3):
    """The default config, made quick: 4 steps, small partitions."""
    config = load_config(REPO / "configs" / "default.yaml")
    config = config_with(config, "generation", steps=4, batch_size=2)
    config = config_with(config, "export", previews=2)
    return config_with(config, "cluster", scheduler=scheduler, n_workers=n_workers, partition_size=partition_size)


def write_corpus(path: Path, prompts: list[str]) -> Path:
    path.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    return path


def dataset_files(run_dir: Path) -> dict[str, object]:
    """What must be identical between two runs of the same config."""
    instances = json.loads((run_dir / "coco" / "instances.json").read_text())
    images = {p.name: p.read_bytes() for p in sorted((run_dir / "images").glob("*.png"))}
    return {"instances": instances, "images": images}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One uninterrupted run (in-process executor), shared by the comparisons below."""
    tmp = tmp_path_factory.mktemp("reference")
    corpus = write_corpus(tmp / "prompts.txt", PROMPTS)
    run_dir = tmp / "run"
    run_dataset(fast_config(tmp), run_dir, prompts=corpus)
    return run_dir, corpus


def test_coco_files_are_valid_and_consistent(reference_run: tuple[Path, Path]) -> None:
    run_dir, _ = reference_run
    gt = load_coco(run_dir / "coco" / "instances.json")
    assert len(gt.getImgIds()) == len(PROMPTS)
    assert gt.getAnnIds(), "the run produced no instances"
    for ann in gt.loadAnns(gt.getAnnIds()):
        rle = ann["segmentation"]
        rle_bytes = {"size": rle["size"], "counts": rle["counts"].encode()}
        assert ann["bbox"] == pytest.approx(mask_utils.toBbox(rle_bytes).tolist())
        assert ann["area"] == pytest.approx(float(mask_utils.area(rle_bytes)))
        assert ann["iscrowd"] == 0
    predictions = json.loads((run_dir / "coco" / "predictions.json").read_text())
    dt = gt.loadRes(predictions)
    assert len(dt.getAnnIds()) == len(gt.getAnnIds())
    dataset = json.loads((run_dir / "coco" / "instances.json").read_text())
    for iou_type in ("segm", "bbox"):
        assert coco_ap(dataset, predictions, iou_type)["AP"] == pytest.approx(1.0)
    for tau in (0.3, 0.4, 0.5):
        assert (run_dir / "coco" / f"predictions_tau{tau:g}.json").exists()
    captions = json.loads((run_dir / "coco" / "captions.json").read_text())
    assert sorted(a["caption"] for a in captions["annotations"]) == sorted(PROMPTS)


def test_categories_are_the_noun_lemmas(reference_run: tuple[Path, Path]) -> None:
    run_dir, _ = reference_run
    names = {c["name"] for c in json.loads((run_dir / "coco" / "instances.json").read_text())["categories"]}
    expected = {
        "cat", "dog", "sofa", "apple", "table", "teddy bear", "hot dog", "car", "house", "bird", "boat",
        "umbrella", "chair", "bicycle", "pizza", "plate", "horse", "field",
    }  # fmt: skip
    assert names == expected


def test_stats_cover_every_word_and_category(reference_run: tuple[Path, Path]) -> None:
    run_dir, _ = reference_run
    words = pq.read_table(run_dir / "stats" / "words.parquet").to_pandas()
    # every part of speech is measured, not only nouns
    assert {"NOUN", "DET", "ADP", "NUM", "ADJ", "CCONJ", "PUNCT"} <= set(words["pos"])
    assert words["coverage"].between(0, 1).all()
    categories = pq.read_table(run_dir / "stats" / "categories.parquet").to_pandas()
    assert categories.loc[categories["category"] == "dog", "n_mentions"].item() == 3  # "dog" twice in one prompt
    images = pq.read_table(run_dir / "stats" / "images.parquet").to_pandas()
    assert len(images) == len(PROMPTS)
    assert (run_dir / "stats" / "skipped.parquet").exists()
    assert sorted(p.name for p in (run_dir / "previews").glob("*.png")), "no preview pictures"


def test_heat_maps_carry_their_generation_parameters(reference_run: tuple[Path, Path]) -> None:
    from pipeline.daam import HeatMap

    run_dir, _ = reference_run
    images = {i["id"]: i for i in json.loads((run_dir / "coco" / "instances.json").read_text())["images"]}
    heat_map = HeatMap.load(run_dir / "heatmaps" / "00000002.safetensors")
    assert heat_map.prompt == images[2]["prompt"]
    assert heat_map.params["seed"] == images[2]["seed"] and heat_map.params["image_id"] == 2
    assert heat_map.params["steps"] == 4 and heat_map.params["guidance"] is True


def test_rerun_skips_finished_work_and_changes_nothing(reference_run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, corpus = reference_run
    before = dataset_files(run_dir)
    summary = run_dataset(fast_config(tmp_path), run_dir, prompts=corpus)
    assert summary["generate"]["partitions_done_before"] == 3
    assert dataset_files(run_dir) == before


def test_changed_config_is_refused(reference_run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, corpus = reference_run
    changed = config_with(fast_config(tmp_path), "generation", steps=5, batch_size=2)
    with pytest.raises(ValueError, match="generation"):
        run_dataset(changed, run_dir, prompts=corpus)


def test_bad_input_is_recorded_not_fatal(tmp_path: Path) -> None:
    long_prompt = "a dog " + " ".join(["and a very fluffy cat"] * 20) + " beside a giraffe"
    raw = (
        "a cat on a mat\n"
        "\n"
        "   \n"
        "a cat on a mat\n"  # duplicate
        "quickly and slowly\n"  # no noun
        f"{long_prompt}\n"
    ).encode() + b"a caf\xe9 with a \xff table\n"  # not UTF-8
    corpus = tmp_path / "bad.txt"
    corpus.write_bytes(raw)
    run_dir = tmp_path / "run"
    run_dataset(fast_config(tmp_path), run_dir, prompts=corpus)
    skipped = pq.read_table(run_dir / "stats" / "skipped.parquet").to_pandas()
    reasons = " | ".join(skipped["reason"].str.lower())
    for expected in ("empty", "duplicate", "noun", "utf-8", "limit"):
        assert expected in reasons, f"no skip mentions {expected!r}: {reasons}"
    # the over-long prompt was still generated; only the words past the limit are skipped
    images = pq.read_table(run_dir / "stats" / "images.parquet").to_pandas()
    assert images["truncated"].sum() == 1
    giraffe = skipped[skipped["input"] == "giraffe"]
    assert len(giraffe) >= 1 and (giraffe["stage"] == "annotate").all()


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "p.txt", PROMPTS[:1])
    config = config_with(fast_config(tmp_path), "model", id=str(tmp_path / "no-such-model"))
    with pytest.raises(Exception, match="no-such-model"):
        run_dataset(config, tmp_path / "run", prompts=corpus)


def test_local_cluster_two_workers_gives_the_same_dataset(reference_run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, corpus = reference_run
    for n_workers in (1, 2):
        out = tmp_path / f"workers{n_workers}"
        summary = run_dataset(fast_config(tmp_path, scheduler=None, n_workers=n_workers), out, prompts=corpus)
        assert "Dask" in summary["executed"]
        assert dataset_files(out) == dataset_files(run_dir)


def _daamset(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=REPO,
        start_new_session=True,  # its own process group: killing it kills its Dask workers too
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kwargs,
    )


def test_killed_run_resumes_to_the_same_dataset(reference_run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, corpus = reference_run
    import yaml

    config_path = tmp_path / "config.yaml"
    # the reference run's config (batches shape the numerics), on a LocalCluster this time
    config = fast_config(tmp_path, scheduler=None)
    from pipeline.config import config_to_dict

    config_path.write_text(yaml.safe_dump(config_to_dict(config)))
    out = tmp_path / "run"
    proc = _daamset("run", str(config_path), "--out", str(out), "--prompts", str(corpus))
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "generate").glob("part-*.parquet")):
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "generate").glob("part-*.parquet")))
    assert 1 <= done < 3, "the run was not killed in the middle of generation"
    assert not (out / "coco" / "instances.json").exists()

    resumed = _daamset("run", str(config_path), "--out", str(out), "--prompts", str(corpus))
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output.decode()
    assert f"({done} partitions resumed)" in output.decode()
    assert dataset_files(out) == dataset_files(run_dir)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_cluster_on_loopback_uses_the_gpu_worker(reference_run: tuple[Path, Path], tmp_path: Path) -> None:
    from distributed import Client

    run_dir, corpus = reference_run
    address = f"tcp://127.0.0.1:{_free_port()}"
    dask = str(Path(sys.executable).parent / "dask")
    quiet = {"cwd": tmp_path, "env": {**os.environ, "PYTHONPATH": str(REPO)},
             "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}  # fmt: skip
    worker = [dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard"]
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                               "--no-dashboard"], **quiet)]  # fmt: skip
    try:
        procs.append(subprocess.Popen([*worker, "--resources", "GPU=1", "--name", "gpu-worker"], **quiet))
        procs.append(subprocess.Popen([*worker, "--name", "cpu-worker"], **quiet))
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
            workers = client.scheduler_info(n_workers=-1)["workers"]
            gpu_address = next(a for a, w in workers.items() if w.get("resources", {}).get("GPU"))
        out = tmp_path / "run"
        summary = run_dataset(fast_config(tmp_path, scheduler=address), out, prompts=corpus)
        assert "GPU" in summary["executed"]
        used = pq.read_table(sorted((out / "generate").glob("part-*.parquet"))).column("worker").to_pylist()
        assert set(used) == {gpu_address}
        assert dataset_files(out) == dataset_files(run_dir)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_the_model_is_loaded_once_per_worker_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.models
    from stages import generate

    real_load, calls = pipeline.models.load_pipeline, []

    def counting_load(*args, **kwargs):
        calls.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(pipeline.models, "load_pipeline", counting_load)
    generate._pipeline.cache_clear()
    corpus = write_corpus(tmp_path / "p.txt", PROMPTS[:5])
    summary = run_dataset(fast_config(tmp_path, partition_size=2), tmp_path / "run", prompts=corpus)
    assert summary["generate"]["images"] == 5  # three partitions ...
    assert len(calls) == 1  # ... one model load


def test_force_redoes_a_run_with_a_changed_config(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "p.txt", PROMPTS[:2])
    run_dir = tmp_path / "run"
    run_dataset(fast_config(tmp_path), run_dir, prompts=corpus)
    first = dataset_files(run_dir)
    changed = config_with(fast_config(tmp_path), "generation", steps=6, batch_size=2)
    summary = run_dataset(changed, run_dir, prompts=corpus, force=True)
    assert summary["generate"]["partitions_done_before"] == 0  # redone, not resumed
    assert "steps: 6" in (run_dir / "run.yaml").read_text()
    assert dataset_files(run_dir)["images"] != first["images"]


def test_a_prompt_that_fails_to_generate_is_skipped_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stages import generate

    real = generate._generate_batch

    def failing_on_horses(run, config, pipe, batch, worker):
        if any("horse" in record["prompt"] for record in batch):
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(run, config, pipe, batch, worker)

    monkeypatch.setattr(generate, "_generate_batch", failing_on_horses)
    prompts = ["a cat on a mat", "a horse in a field", "a dog on a sofa"]
    run_dir = tmp_path / "run"
    summary = run_dataset(fast_config(tmp_path), run_dir, prompts=write_corpus(tmp_path / "p.txt", prompts))
    assert summary["generate"] == {"images": 2, "skipped": 1, "partitions_done_before": 0}
    skipped = pq.read_table(run_dir / "stats" / "skipped.parquet").to_pandas()
    row = skipped[skipped["stage"] == "generate"].iloc[0]
    assert row["input"] == "a horse in a field" and "out of memory" in row["reason"]
    # the batch-mate of the failing prompt was generated on its own
    captions = json.loads((run_dir / "coco" / "captions.json").read_text())["annotations"]
    assert sorted(c["caption"] for c in captions) == ["a cat on a mat", "a dog on a sofa"]
