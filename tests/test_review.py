"""Review against a real Label Studio: push -> a reviewer's work through the API -> pull -> evaluate.

The expected figures are computed here from the masks themselves (numpy IoUs
and a from-scratch COCO-style AP), not with pipeline.metrics or COCOeval.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import masks
from pipeline.config import EvaluateConfig, ReviewConfig, RunConfig
from pipeline.contracts import RunDir
from pipeline.labelstudio import convert
from pipeline.labelstudio.client import AuthenticationFailed, Connection, ProjectNotFound, ServerUnreachable, connect
from stages import review
from stages.evaluate import evaluate
from tests.labelstudio_fixtures import HEIGHT, MAIN_TAU, TAUS, WIDTH, free_port, make_run, synthetic_objects

N_IMAGES = 6


def _config(sample_size: int = N_IMAGES) -> RunConfig:
    title = f"daamset test {uuid.uuid4().hex[:10]}"  # unique: CI's server outlives test runs
    return RunConfig(
        review=ReviewConfig(project_title=title, sample_size=sample_size, stratify=True, seed=0),
        evaluate=EvaluateConfig(taus=list(TAUS)),
    )


@pytest.fixture()
def conn(labelstudio: Any) -> Connection:
    return connect(labelstudio.url, labelstudio.api_key, retries=2, backoff=0.1)


# ----------------------------------------------------------- the reviewer


Decision = Callable[[int, list[dict[str, Any]]], "list[dict[str, Any]] | str | None"]


def act_as_reviewer(conn: Connection, project_id: int, decide: Decision) -> None:
    """For each task, ``decide(image_id, predicted regions)`` returns the regions to submit,
    "skip" to cancel the task, or None to leave it untouched."""
    for task in conn.sdk.tasks.list(project=project_id, fields="task_only"):
        image_id = int(task.data["image_id"])
        (prediction,) = conn.sdk.predictions.list(task=task.id)
        decision = decide(image_id, copy.deepcopy(list(prediction.result)))
        if decision is None:
            continue
        if decision == "skip":
            conn.sdk.annotations.create(task.id, result=[], was_cancelled=True)
        else:
            conn.sdk.annotations.create(task.id, result=decision, lead_time=12.5)


def accept(image_id: int, regions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return regions


def _masks_of(gt: dict[str, Any]) -> dict[int, list[tuple[int, np.ndarray]]]:
    out: dict[int, list[tuple[int, np.ndarray]]] = {int(img["id"]): [] for img in gt["images"]}
    for ann in gt["annotations"]:
        out[int(ann["image_id"])].append((int(ann["category_id"]), masks.decode(ann["segmentation"])))
    return out


def _same_objects(a: list[tuple[int, np.ndarray]], b: list[tuple[int, np.ndarray]]) -> bool:
    key = lambda o: (o[0], o[1].tobytes())  # noqa: E731
    return sorted(map(key, a)) == sorted(map(key, b))


# ------------------------------------------- expected figures, from scratch


def _tight_box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _box_iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


def expected_ap(
    gt: dict[int, list[tuple[int, np.ndarray]]], preds: list[tuple[int, int, np.ndarray, float]], kind: str
) -> dict[str, float]:
    """COCO's AP rules (greedy matching by score, 101-point interpolated precision, mean over
    IoU 0.50:0.95 and categories with ground truth), written out over numpy masks."""

    def iou(p: np.ndarray, g: np.ndarray) -> float:
        return _mask_iou(p, g) if kind == "segm" else _box_iou(_tight_box(p), _tight_box(g))

    thresholds = np.linspace(0.5, 0.95, 10)
    categories = sorted({c for objs in gt.values() for c, _ in objs})
    table = np.zeros((len(thresholds), len(categories)))
    for ci, cat in enumerate(categories):
        n_gt = sum(1 for objs in gt.values() for c, _ in objs if c == cat)
        for ti, t in enumerate(thresholds):
            marks: list[tuple[float, bool]] = []
            for image_id in sorted(gt):
                gts = [m for c, m in gt[image_id] if c == cat]
                dets = sorted([(s, m) for i, c, m, s in preds if i == image_id and c == cat], key=lambda d: -d[0])
                taken = [False] * len(gts)
                for score, det in dets:
                    best, match = min(t, 1 - 1e-10), -1
                    for gi, g in enumerate(gts):
                        if not taken[gi] and iou(det, g) >= best:
                            best, match = iou(det, g), gi
                    if match >= 0:
                        taken[match] = True
                    marks.append((score, match >= 0))
            marks.sort(key=lambda m: -m[0])
            tp = np.cumsum([m[1] for m in marks])
            fp = np.cumsum([not m[1] for m in marks])
            recall = tp / n_gt
            precision = list(tp / np.maximum(tp + fp, np.spacing(1)))
            for i in range(len(precision) - 1, 0, -1):
                precision[i - 1] = max(precision[i - 1], precision[i])
            points = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
            table[ti, ci] = np.mean([precision[p] if p < len(precision) else 0.0 for p in points])
    return {"AP": float(table.mean()), "AP50": float(table[0].mean()), "AP75": float(table[5].mean())}


def expected_miou(
    gt: dict[int, list[tuple[int, np.ndarray]]], preds: list[tuple[int, int, np.ndarray, float]]
) -> float:
    ious = []
    for image_id, objs in gt.items():
        for cat in sorted({c for c, _ in objs}):
            g = np.logical_or.reduce([m for c, m in objs if c == cat])
            ps = [m for i, c, m, _ in preds if i == image_id and c == cat]
            p = np.logical_or.reduce(ps) if ps else np.zeros_like(g)
            ious.append(_mask_iou(p, g))
    return float(np.mean(ious))


def predictions_at(run: RunDir, tau: float, images: set[int]) -> list[tuple[int, int, np.ndarray, float]]:
    results = json.loads(run.predictions_at(tau).read_text())
    return [
        (int(r["image_id"]), int(r["category_id"]), masks.decode(r["segmentation"]), float(r["score"]))
        for r in results
        if int(r["image_id"]) in images
    ]


# ----------------------------------------------------------------- the cases


def test_accepting_every_prediction_gives_ap_1_at_the_pushed_tau(tmp_path: Path, conn: Connection) -> None:
    run = make_run(tmp_path / "run-accept", N_IMAGES)
    config = _config()
    report = review.push(run.root, config, connection=conn)
    assert report["project_created"] and report["imported"] == N_IMAGES == report["tasks"]

    act_as_reviewer(conn, report["project_id"], accept)
    pulled = review.pull(run.root, config, connection=conn)
    assert pulled["annotated"] == N_IMAGES and pulled["skipped"] == pulled["unannotated"] == 0

    # the brush masks came back exactly, with the same image and category ids
    gt = json.loads(run.ground_truth_json.read_text())
    instances = json.loads(run.instances_json.read_text())
    assert gt["categories"] == instances["categories"]
    assert [i["id"] for i in gt["images"]] == [i["id"] for i in instances["images"]]
    ours, theirs = _masks_of(gt), _masks_of(instances)
    assert all(_same_objects(ours[i], theirs[i]) for i in theirs)
    ann = gt["annotations"][0]
    assert ann["annotator"] == conn.check()["email"] and ann["annotated_at"] and ann["source"] == "brush"

    summary = evaluate(run.root, config)
    main = summary[f"{MAIN_TAU:g}"]
    assert main["segm"] == {"AP": 1.0, "AP50": 1.0, "AP75": 1.0}
    assert main["bbox"] == {"AP": 1.0, "AP50": 1.0, "AP75": 1.0}
    assert main["miou"] == 1.0
    # the other taus are scored against the same truth, and fall short of it
    for tau in TAUS:
        preds = predictions_at(run, tau, set(ours))
        assert summary[f"{tau:g}"]["segm"]["AP"] == pytest.approx(expected_ap(ours, preds, "segm")["AP"])
        assert summary[f"{tau:g}"]["miou"] == pytest.approx(expected_miou(ours, preds))
    assert summary["0.3"]["miou"] < 1.0 and summary["0.5"]["miou"] < 1.0


def test_edits_change_ap_and_miou_by_what_they_imply(tmp_path: Path, conn: Connection) -> None:
    run = make_run(tmp_path / "run-edit", N_IMAGES)
    config = _config()
    objects = synthetic_objects(N_IMAGES)
    report = review.push(run.root, config, connection=conn)

    erased = objects[1][0][1].copy()
    cols = erased.any(axis=0).nonzero()[0]
    erased[:, cols[-len(cols) // 5 :]] = False  # erase the right fifth: IoU with the prediction ~0.9
    missed = np.zeros((HEIGHT, WIDTH), dtype=bool)
    missed[32:45, 46:61] = True  # an object the pipeline did not find

    def decide(image_id: int, regions: list[dict[str, Any]]) -> Any:
        if image_id == 1:  # erase part of one mask
            brush = next(r for r in regions if r["type"] == "brushlabels" and r["id"] == "i1-" + _rank(1, 0))
            brush["value"]["rle"] = convert.mask_to_brush(erased)
        if image_id == 2:  # delete one instance: its brush and its box
            gone = "i2-" + _rank(2, 1)
            regions = [r for r in regions if r["id"] not in (gone, gone + "-box")]
        if image_id == 3:  # add the missed object, painted and boxed
            regions.append(convert.brush_result(missed, "cat", id="added"))
            regions.append(convert.rect_result(_tight_box(missed), "cat", id="added-box", width=WIDTH, height=HEIGHT))
        if image_id == 4:
            return "skip"
        if image_id == 5:
            return None  # nobody got to it
        return regions

    act_as_reviewer(conn, report["project_id"], decide)
    pulled = review.pull(run.root, config, connection=conn)
    assert (pulled["annotated"], pulled["skipped"], pulled["unannotated"]) == (4, 1, 1)

    # what the edits imply, built from the masks directly
    expected = {i: [(c, m) for c, m, _ in objects[i]] for i in (1, 2, 3, 6)}
    expected[1][0] = (expected[1][0][0], erased)
    del expected[2][1]
    expected[3].append((1, missed))
    gt = json.loads(run.ground_truth_json.read_text())
    got = _masks_of(gt)
    assert sorted(got) == [1, 2, 3, 6]
    assert all(_same_objects(got[i], expected[i]) for i in expected)

    status = {r["image_id"]: r for r in pq.read_table(run.review_status).to_pylist()}
    assert {i: status[i]["status"] for i in status} == {
        1: "annotated", 2: "annotated", 3: "annotated", 4: "skipped", 5: "unannotated", 6: "annotated"
    }  # fmt: skip
    assert status[4]["n_annotations"] == 1 and status[5]["n_annotations"] == 0
    assert status[3]["n_instances"] == len(expected[3]) and status[3]["lead_time"] == 12.5

    summary = evaluate(run.root, config)
    for tau in TAUS:
        preds = predictions_at(run, tau, set(expected))
        got_tau = summary[f"{tau:g}"]
        for kind in ("segm", "bbox"):
            want = expected_ap(expected, preds, kind)
            assert got_tau[kind]["AP"] == pytest.approx(want["AP"], abs=1e-9), (tau, kind)
            assert got_tau[kind]["AP50"] == pytest.approx(want["AP50"], abs=1e-9), (tau, kind)
            assert got_tau[kind]["AP75"] == pytest.approx(want["AP75"], abs=1e-9), (tau, kind)
        assert got_tau["miou"] == pytest.approx(expected_miou(expected, preds), abs=1e-12)
        assert got_tau["n_images"] == 4
    assert summary[f"{MAIN_TAU:g}"]["segm"]["AP"] < 1.0 and summary[f"{MAIN_TAU:g}"]["miou"] < 1.0


def _rank(image_id: int, k: int) -> str:
    """The region index push gives object k of an image (predictions are listed by score)."""
    objs = synthetic_objects(N_IMAGES)[image_id]
    order = sorted(range(len(objs)), key=lambda j: -objs[j][2])
    return str(order.index(k))


def test_push_twice_adds_no_duplicates_and_a_bigger_sample_adds_only_the_new(tmp_path: Path, conn: Connection) -> None:
    run = make_run(tmp_path / "run-twice", N_IMAGES)
    config = _config(sample_size=3)
    first = review.push(run.root, config, connection=conn)
    second = review.push(run.root, config, connection=conn)
    assert first["imported"] == 3 and second["imported"] == 0 and second["already_present"] == 3
    assert second["project_id"] == first["project_id"] and not second["project_created"]
    bigger = config.replace(review=ReviewConfig(**{**vars(config.review), "sample_size": 5}))
    third = review.push(run.root, bigger, connection=conn)
    assert third["imported"] == 2 and third["tasks"] == 5
    image_ids = [int(t.data["image_id"]) for t in conn.sdk.tasks.list(project=first["project_id"])]
    assert len(image_ids) == len(set(image_ids)) == 5
    tasks = pq.read_table(run.review_tasks).to_pylist()
    assert sorted(r["image_id"] for r in tasks) == sorted(image_ids)
    # the image each task points at is served by Label Studio, byte for byte
    task = next(iter(conn.sdk.tasks.list(project=first["project_id"])))
    assert conn.get_bytes(task.data["image"], "fetch") == (run.root / task.data["file_name"]).read_bytes()


def test_rectangles_and_polygons_are_accepted(tmp_path: Path, conn: Connection) -> None:
    run = make_run(tmp_path / "run-shapes", 2)
    config = _config(sample_size=2)
    report = review.push(run.root, config, connection=conn)
    square = [8.0, 30.0, 20.0, 30.0, 20.0, 42.0, 8.0, 42.0]
    box = [40.0, 2.0, 12.0, 9.0]

    def decide(image_id: int, regions: list[dict[str, Any]]) -> Any:
        if image_id != 1:
            return regions
        return [
            convert.polygon_result(square, "dog", id="poly", width=WIDTH, height=HEIGHT),
            convert.rect_result(box, "hot dog", id="lonely-box", width=WIDTH, height=HEIGHT),
            # a mask plus the reviewer's own box around it (no id link): one object, not two
            convert.brush_result(missed_mask(), "cat", id="paint"),
            convert.rect_result(_tight_box(missed_mask()), "cat", id="drawn", width=WIDTH, height=HEIGHT),
        ]

    act_as_reviewer(conn, report["project_id"], decide)
    review.pull(run.root, config, connection=conn)
    gt = json.loads(run.ground_truth_json.read_text())
    anns = {a["source"]: a for a in gt["annotations"] if a["image_id"] == 1}
    assert sorted(anns) == ["brush", "polygon", "rectangle"]
    assert masks.area(anns["polygon"]["segmentation"]) == 12 * 12  # pixel centres inside the 12 x 12 square
    assert anns["rectangle"]["bbox"] == pytest.approx(box) and anns["rectangle"]["category_id"] == 2
    assert np.array_equal(masks.decode(anns["brush"]["segmentation"]), missed_mask())


def missed_mask() -> np.ndarray:
    m = np.zeros((HEIGHT, WIDTH), dtype=bool)
    m[20:28, 30:50] = True
    return m


# -------------------------------------------------------------- the failures


def _review_files(run: RunDir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.review.glob("*"))} if run.review.exists() else {}


def test_server_down_is_named_and_writes_nothing(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run-down", 2)
    down = connect(f"http://127.0.0.1:{free_port()}", "k", retries=1, backoff=0.01)
    with pytest.raises(ServerUnreachable, match="not reachable"):
        review.push(run.root, _config(), connection=down)
    assert _review_files(run) == {}


def test_wrong_token_is_named_and_leaves_review_as_it_was(tmp_path: Path, conn: Connection, labelstudio: Any) -> None:
    run = make_run(tmp_path / "run-token", 2)
    config = _config(sample_size=2)
    report = review.push(run.root, config, connection=conn)
    act_as_reviewer(conn, report["project_id"], accept)
    review.pull(run.root, config, connection=conn)
    before = _review_files(run)
    wrong = "f" * 40
    with pytest.raises(AuthenticationFailed, match="rejected the API key") as err:
        review.pull(run.root, config, url=labelstudio.url, api_key=wrong)
    assert wrong not in str(err.value)
    assert _review_files(run) == before


def test_deleted_project_is_named_and_leaves_review_as_it_was(tmp_path: Path, conn: Connection) -> None:
    run = make_run(tmp_path / "run-deleted", 2)
    config = _config(sample_size=2)
    report = review.push(run.root, config, connection=conn)
    conn.sdk.projects.delete(report["project_id"])
    before = _review_files(run)
    for step in (review.pull, review.push):
        with pytest.raises(ProjectNotFound, match=rf"project {report['project_id']} .*no longer exists") as err:
            step(run.root, config, connection=conn)
        assert "project.json" in str(err.value)
    assert _review_files(run) == before and not run.ground_truth_json.exists()


def test_a_bad_annotation_fails_the_pull_without_touching_earlier_results(tmp_path: Path, conn: Connection) -> None:
    run = make_run(tmp_path / "run-bad", 2)
    config = _config(sample_size=2)
    report = review.push(run.root, config, connection=conn)
    act_as_reviewer(conn, report["project_id"], accept)
    review.pull(run.root, config, connection=conn)
    before = _review_files(run)

    # a later annotation drawn on an image of another size cannot be turned into a mask
    wrong_size = convert.brush_result(np.ones((HEIGHT + 1, WIDTH), dtype=bool), "cat", id="bad")
    act_as_reviewer(conn, report["project_id"], lambda i, regions: [wrong_size] if i == 1 else None)
    with pytest.raises(review.ReviewError, match=r"drawn on a 64x49 image, but image 1 is 64x48"):
        review.pull(run.root, config, connection=conn)
    assert _review_files(run) == before  # no temporary files left, the old truth intact


class CommitThenFail:
    """A loopback proxy to the real server that forwards the first task import, then answers 502:
    the import was committed, yet the client sees a transient failure and retries it."""

    def __init__(self, target: str) -> None:
        import http.server
        import threading

        import httpx

        self.imports_seen = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                upstream = httpx.request(self.command, target + self.path, headers=headers, content=body, timeout=60)
                status, content = upstream.status_code, upstream.content
                if "/import" in self.path and self.command == "POST":
                    outer.imports_seen += 1
                    if outer.imports_seen == 1:
                        status, content = 502, b'{"detail": "bad gateway"}'
                self.send_response(status)
                self.send_header("Content-Type", upstream.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PATCH = do_DELETE = _forward  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CommitThenFail:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_retried_import_that_was_committed_adds_no_duplicates(tmp_path: Path, labelstudio: Any) -> None:
    run = make_run(tmp_path / "run-retry", 4)
    config = _config(sample_size=4)
    sleeps: list[float] = []
    with CommitThenFail(labelstudio.url) as proxy:
        flaky = connect(proxy.url, labelstudio.api_key, retries=3, backoff=0.2, sleep=sleeps.append)
        report = review.push(run.root, config, connection=flaky, document_root="/")
    assert proxy.imports_seen == 1  # the retry saw the tasks already there and sent nothing
    assert sleeps == [0.2]
    assert report["tasks"] == 4
    direct = connect(labelstudio.url, labelstudio.api_key)
    image_ids = [int(t.data["image_id"]) for t in direct.sdk.tasks.list(project=report["project_id"])]
    assert sorted(image_ids) == [1, 2, 3, 4]


def test_a_label_outside_the_run_is_recorded_not_guessed(tmp_path: Path, conn: Connection) -> None:
    run = make_run(tmp_path / "run-label", 1)
    config = _config(sample_size=1)
    report = review.push(run.root, config, connection=conn)
    zebra = convert.brush_result(missed_mask(), "zebra", id="z1")
    act_as_reviewer(conn, report["project_id"], lambda i, regions: regions + [zebra])
    review.pull(run.root, config, connection=conn)
    (row,) = pq.read_table(run.review_status).to_pylist()
    assert row["status"] == "annotated" and "'zebra' is not a category" in row["notes"]
    gt = json.loads(run.ground_truth_json.read_text())
    assert len(gt["annotations"]) == len(synthetic_objects(1)[1])


def test_a_document_root_the_server_does_not_have_is_caught_before_importing(tmp_path: Path, conn: Connection) -> None:
    run = make_run(tmp_path / "run-root", 2)
    config = _config(sample_size=2)
    with pytest.raises(review.ReviewError, match="document root"):
        # true only if the server's root is not tmp_path: ours and CI's use "/"
        review.push(run.root, config, connection=conn, document_root=tmp_path)
    project_id = json.loads(run.review_project.read_text())["project_id"]
    assert list(conn.sdk.tasks.list(project=project_id)) == []
    assert not run.review_tasks.exists()


def test_cli_push_and_pull(
    tmp_path: Path, labelstudio: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    run = make_run(tmp_path / "run-cli", 3)
    title = f"daamset cli {uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("LABEL_STUDIO_URL", labelstudio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", labelstudio.api_key)
    assert main(["review", "push", str(run.root), "--sample-size", "2", "--project-title", title]) == 0
    assert "2 tasks imported" in capsys.readouterr().out
    assert main(["review", "pull", str(run.root), "--project-title", title]) == 0
    assert "2 not yet annotated of 2 tasks" in capsys.readouterr().out

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-the-key")
    assert main(["review", "pull", str(run.root)]) == 2
    err = capsys.readouterr().err
    assert "rejected the API key" in err and "not-the-key" not in err
