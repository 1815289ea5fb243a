"""Stage 5, review: send a sample of a run to Label Studio, read the verified annotations back.

``push`` reads coco/instances.json (images, categories) and
coco/predictions.json (the masks and boxes at the run's main tau, with scores)
and, on the server named by ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``:

- creates (or finds) the run's project, titled ``review.project_title`` or
  ``"daamset <run folder name>"``, whose labeling config holds the run's
  categories as brush, rectangle and polygon labels; its id is kept in
  ``review/project.json`` (no key there);
- registers a local-files storage at the run folder, so that the server serves
  the run's images (never synced: tasks are imported one per sampled image);
- imports a sample of images (``review.sample_size``, stratified by category
  when ``review.stratify``, drawn with ``review.seed``) as tasks keyed by image
  id, each with one prediction: a brush mask and a rectangle per instance.
  Pushing again imports only images not yet in the project;
- writes ``review/tasks.parquet`` (image id -> task id).

The image URL is ``/data/local-files/?d=<path below the document root>``; the
document root is ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` (as the server
has it; ``daamset labelstudio start`` prints it), default ``/``. Push fetches
one image back through the server to prove the URL works.

``pull`` exports every task of the project and writes, atomically and only
when everything was read:

- ``review/ground_truth.json``: COCO with instances.json's image and category
  ids, holding the images whose task has a finished annotation (a ground-truth
  flagged one first, else the latest). Each region becomes an instance: brush
  masks decoded exactly, polygons rasterised, rectangles kept as box-only
  objects (their rectangle is the mask) unless they belong to a mask region
  (same region id plus ``-box``, as push makes them, or a mask of the same
  label whose box overlaps it with IoU >= 0.5). Each instance records its
  annotator, time and source region;
  A finished annotation without regions says the image holds none of the
  categories: the image is in the ground truth, with no objects;
- ``review/status.parquet``: one row per task: ``annotated``, ``skipped``
  (every annotation cancelled) or ``unannotated`` (drafts do not count), with
  annotator, time, instance count and notes (e.g. regions dropped and why).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import masks
from pipeline.atomic import atomic_path, write_json, write_parquet
from pipeline.coco import annotation_entry, instances_dataset
from pipeline.config import RunConfig
from pipeline.contracts import REVIEW_STATUS, REVIEW_TASKS, RunDir
from pipeline.labelstudio import convert
from pipeline.labelstudio.client import Connection, LabelStudioError, NotFound, ProjectNotFound, connect

__all__ = [
    "ReviewError",
    "push",
    "pull",
    "sample_images",
    "project_title",
]

log = logging.getLogger(__name__)



BOX_SUFFIX = "-box"  # a rectangle with id "<brush id>-box" belongs to that brush region
IMPORT_BATCH = 50  # tasks per import request (brush RLEs make tasks large)


class ReviewError(RuntimeError):
    """The run folder and the Label Studio project do not fit together; the message says how."""


def project_title(run: RunDir, config: RunConfig) -> str:
    return config.review.project_title or f"daamset {run.root.name}"


def _load_json(path: Path, hint: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {hint}")
    with path.open(encoding="utf-8") as f:
        return json.load(f)


# ------------------------------------------------------------------ sampling


def sample_images(dataset: Mapping[str, Any], sample_size: int, *, stratify: bool = True, seed: int = 0) -> list[int]:
    """Image ids to review, sorted; the same inputs always give the same sample.

    Stratified: categories take turns (in id order, images without any
    instance forming one more stratum), each drawing its next image from its
    own seeded shuffle and skipping images already taken, so rare categories
    are represented as well as the sample size allows. Otherwise a seeded
    uniform sample. A sample size at or above the image count takes them all.
    """
    image_ids = sorted(int(img["id"]) for img in dataset.get("images", []))
    if sample_size >= len(image_ids):
        return image_ids
    rng = np.random.default_rng(seed)
    if not stratify:
        return sorted(int(i) for i in rng.choice(image_ids, size=sample_size, replace=False))
    strata: dict[int, set[int]] = defaultdict(set)
    for ann in dataset.get("annotations", []):
        strata[int(ann["category_id"])].add(int(ann["image_id"]))
    with_objects = set().union(*strata.values()) if strata else set()
    queues = [list(rng.permutation(sorted(strata[c]))) for c in sorted(strata)]
    empty = [i for i in image_ids if i not in with_objects]
    if empty:
        queues.append(list(rng.permutation(empty)))
    chosen: set[int] = set()
    while len(chosen) < sample_size:
        for queue in queues:
            while queue and int(queue[0]) in chosen:
                queue.pop(0)
            if queue and len(chosen) < sample_size:
                chosen.add(int(queue.pop(0)))
    return sorted(chosen)


# ---------------------------------------------------------------- the project


def _project_record(run: RunDir) -> dict[str, Any] | None:
    path = run.review_project
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _get_project(conn: Connection, run: RunDir, project_id: int) -> Any:
    try:
        return conn.call(f"get project {project_id}", conn.sdk.projects.get, project_id)
    except NotFound:
        raise ProjectNotFound(
            f"Label Studio project {project_id} recorded in {run.review_project} no longer exists on "
            f"{conn.url} (deleted?). Remove {run.review_project} and push again to create a new project."
        ) from None


def _find_or_create_project(
    conn: Connection, run: RunDir, config: RunConfig, categories: Sequence[Mapping[str, Any]]
) -> tuple[int, bool]:
    """The run's project id, and whether it was created now."""
    title = project_title(run, config)
    record = _project_record(run)
    if record and record.get("url") == conn.url:
        project = _get_project(conn, run, int(record["project_id"]))
        return int(project.id), False
    label_config = convert.labeling_config(categories)
    found = conn.call("list projects", lambda: [p for p in conn.sdk.projects.list(title=title) if p.title == title])
    if len(found) > 1:
        raise ReviewError(
            f"{len(found)} projects titled {title!r} on {conn.url} (ids {[p.id for p in found]}); "
            "set review.project_title to a unique title or delete the extra projects"
        )
    if found:
        project_id, created = int(found[0].id), False
        log.info("using existing project %s %r", project_id, title)
    else:
        project = conn.call(
            "create project",
            conn.sdk.projects.create,
            title=title,
            label_config=label_config,
            description=f"daamset review of {run.root}",
        )
        project_id, created = int(project.id), True
        log.info("created project %s %r", project_id, title)
    write_json(run.review_project, {"project_id": project_id, "title": title, "url": conn.url}, indent=2)
    return project_id, created


def _ensure_storage(conn: Connection, project_id: int, run: RunDir) -> int:
    """A local-files storage at the run folder (needed before the server serves its files)."""
    path = str(run.root)
    storages = conn.call("list storages", conn.sdk.import_storage.local.list, project=project_id)
    for storage in storages:
        if str(storage.path).rstrip("/") == path:
            return int(storage.id)
    try:
        storage = conn.call(
            "create local-files storage",
            conn.sdk.import_storage.local.create,
            project=project_id,
            path=path,
            title=f"daamset run {run.root.name}",
            regex_filter=r"^$",  # a sync imports nothing: tasks come from push
            use_blob_urls=False,
        )
    except LabelStudioError as err:
        raise ReviewError(
            f"the server cannot serve images from {path}: {err}. The run folder must lie below the "
            "server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
            "(`daamset labelstudio start --document-root DIR` sets both)."
        ) from None
    return int(storage.id)


def _document_root(document_root: str | os.PathLike[str] | None) -> Path:
    root = document_root or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT") or "/"
    return Path(root).resolve()


def _image_url(run: RunDir, file_name: str, root: Path) -> str:
    path = (run.root / file_name).resolve()
    try:
        relative = path.relative_to(root)
    except ValueError:
        raise ReviewError(
            f"image {path} is not below the document root {root}; set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT "
            "to the server's document root (a parent of the run folder)"
        ) from None
    return f"/data/local-files/?d={relative.as_posix()}"


def _list_tasks(conn: Connection, project_id: int) -> dict[int, int]:
    """image id -> task id of the project's tasks (tasks without an image id are not ours); no retries."""
    out: dict[int, int] = {}
    for task in conn.sdk.tasks.list(project=project_id, fields="task_only", page_size=500):
        data = task.data or {}
        if "image_id" in data:
            out.setdefault(int(data["image_id"]), int(task.id))
    return out


def _existing_tasks(conn: Connection, project_id: int) -> dict[int, int]:
    return conn.call("list tasks", _list_tasks, conn, project_id)


def _importer(conn: Connection, project_id: int, tasks: list[dict[str, Any]]) -> Any:
    """An import call that is safe to retry: an import is not idempotent, and a request that
    failed in transit (a dropped connection, a 502 from a proxy) may still have been committed,
    so a retry first drops the tasks whose image id the project already holds."""
    attempts = 0

    def run() -> None:
        nonlocal attempts
        attempts += 1
        todo = tasks
        if attempts > 1:
            present = _list_tasks(conn, project_id)
            todo = [t for t in tasks if int(t["data"]["image_id"]) not in present]
        if todo:
            conn.sdk.projects.import_tasks(project_id, request=todo, return_task_ids=True)

    return run


# ---------------------------------------------------------------------- push


def _prediction(
    image: Mapping[str, Any], results: Sequence[Mapping[str, Any]], names: Mapping[int, str], tau: float
) -> dict[str, Any]:
    """One Label Studio prediction: a brush and a rectangle per predicted instance."""
    regions = []
    height, width = int(image["height"]), int(image["width"])
    for n, res in enumerate(sorted(results, key=lambda r: -float(r.get("score", 0.0)))):
        label = names[int(res["category_id"])]
        mask = masks.decode(masks.to_rle(res["segmentation"], height, width))
        score = float(res.get("score", 1.0))
        region_id = f"i{int(image['id'])}-{n}"
        regions.append(convert.brush_result(mask, label, id=region_id, score=score))
        box = res.get("bbox") or masks.bbox(masks.encode(mask))
        regions.append(
            convert.rect_result(box, label, id=region_id + BOX_SUFFIX, width=width, height=height, score=score)
        )
    scores = [float(r.get("score", 1.0)) for r in results]
    return {
        "model_version": f"daamset tau={tau:g}",
        "score": float(np.mean(scores)) if scores else 0.0,
        "result": regions,
    }


def push(
    run_dir: str | os.PathLike[str],
    config: RunConfig,
    *,
    url: str | None = None,
    api_key: str | None = None,
    connection: Connection | None = None,
    document_root: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Send a sample of the run's images, with the pipeline's masks and boxes, to Label Studio.

    Returns a report: project id and URL, sampled / imported / already present
    counts, task count and seconds taken.
    """
    t0 = time.monotonic()
    run = RunDir(Path(run_dir).resolve())
    dataset = _load_json(run.instances_json, "run the dataset (`daamset run`) first")
    predictions = _load_json(run.predictions_json, "run the dataset (`daamset run`) first")
    if not dataset.get("categories"):
        raise ReviewError(f"{run.instances_json} has no categories: nothing to review")
    images = {int(img["id"]): img for img in dataset["images"]}
    names = {int(c["id"]): str(c["name"]) for c in dataset["categories"]}
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for res in predictions:
        by_image[int(res["image_id"])].append(res)

    conn = connection or connect(url, api_key)
    conn.check()
    root = _document_root(document_root)
    sample = sample_images(dataset, config.review.sample_size, stratify=config.review.stratify, seed=config.review.seed)
    urls = {image_id: _image_url(run, images[image_id]["file_name"], root) for image_id in sample}

    project_id, created = _find_or_create_project(conn, run, config, dataset["categories"])
    _ensure_storage(conn, project_id, run)
    if sample:  # prove the server can serve the images before importing tasks that point at them
        try:
            conn.get_bytes(urls[sample[0]], f"fetch image {sample[0]} through local-files serving")
        except NotFound:
            raise ReviewError(
                f"the server cannot serve {run.root / images[sample[0]]['file_name']} at {urls[sample[0]]}: "
                f"the document root assumed here ({root}) differs from the server's; set "
                "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT to the server's value"
            ) from None

    existing = _existing_tasks(conn, project_id)
    todo = [i for i in sample if i not in existing]
    tau = config.annotate.tau
    for start in range(0, len(todo), IMPORT_BATCH):
        batch = todo[start : start + IMPORT_BATCH]
        tasks = [
            {
                "data": {
                    "image": urls[i],
                    "image_id": i,
                    "file_name": images[i]["file_name"],
                    **({"prompt": images[i]["prompt"]} if "prompt" in images[i] else {}),
                },
                "predictions": [_prediction(images[i], by_image.get(i, []), names, tau)],
            }
            for i in batch
        ]
        conn.call("import tasks", _importer(conn, project_id, tasks))
        log.info("imported %d/%d tasks", min(start + IMPORT_BATCH, len(todo)), len(todo))

    all_tasks = _existing_tasks(conn, project_id)
    write_parquet(
        run.review_tasks,
        [{"image_id": i, "task_id": t, "project_id": project_id} for i, t in sorted(all_tasks.items())],
        REVIEW_TASKS,
    )
    return {
        "project_id": project_id,
        "project_created": created,
        "project_url": f"{conn.url}/projects/{project_id}/data",
        "sampled": len(sample),
        "imported": len(todo),
        "already_present": len(sample) - len(todo),
        "tasks": len(all_tasks),
        "seconds": time.monotonic() - t0,
    }


# ---------------------------------------------------------------------- pull


def _label(region: Mapping[str, Any]) -> str | None:
    value = region.get("value") or {}
    labels = value.get(region.get("type", "")) or []
    return str(labels[0]) if labels else None


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _regions_to_instances(
    task_id: int, image: Mapping[str, Any], regions: Sequence[Mapping[str, Any]], cat_ids: Mapping[str, int]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Instances (category_id, rle, bbox override, source, region id) of one annotation, and notes."""
    height, width = int(image["height"]), int(image["width"])
    notes: list[str] = []
    shaped: list[dict[str, Any]] = []  # brush and polygon instances
    rects: list[tuple[Mapping[str, Any], str]] = []
    for region in regions:
        kind = str(region.get("type", "")).lower()
        if kind not in ("brushlabels", "polygonlabels", "rectanglelabels"):
            continue  # e.g. a relation or a per-region comment: not an object
        label = _label(region)
        if label not in cat_ids:
            notes.append(f"region {region.get('id')}: label {label!r} is not a category of the run")
            continue
        rw, rh = int(region.get("original_width") or width), int(region.get("original_height") or height)
        if (rw, rh) != (width, height):
            raise ReviewError(
                f"task {task_id}: region {region.get('id')} was drawn on a {rw}x{rh} image, "
                f"but image {image['id']} is {width}x{height}"
            )
        value = region.get("value") or {}
        if kind == "rectanglelabels":
            rects.append((region, label))
            continue
        if kind == "brushlabels":
            if value.get("format", "rle") != "rle" or "rle" not in value:
                notes.append(f"region {region.get('id')}: brush without an RLE")
                continue
            rle = masks.encode(convert.brush_to_mask(value["rle"], height, width))
        else:
            polygon = convert.polygon_to_pixels(value, width, height)
            if len(polygon) < 6:
                notes.append(f"region {region.get('id')}: polygon with fewer than 3 points")
                continue
            rle = masks.to_rle([polygon], height, width)
        if masks.area(rle) == 0:
            notes.append(f"region {region.get('id')}: empty mask")
            continue
        shaped.append(
            {"category_id": cat_ids[label], "rle": rle, "bbox": None, "source": kind[: -len("labels")],
             "region_id": str(region.get("id"))}
        )  # fmt: skip

    by_id = {s["region_id"]: s for s in shaped}
    paired: set[str] = set()
    for region, label in rects:
        rid = str(region.get("id"))
        box = convert.rect_to_bbox(region["value"], width, height)
        owner = by_id.get(rid[: -len(BOX_SUFFIX)]) if rid.endswith(BOX_SUFFIX) else None
        if owner is None:
            candidates = [
                (_box_iou(box, masks.bbox(s["rle"])), s["region_id"])
                for s in shaped
                if s["category_id"] == cat_ids[label] and s["region_id"] not in paired
            ]
            best = max(candidates, default=(0.0, ""))
            owner = by_id.get(best[1]) if best[0] >= 0.5 else None
        if owner is not None:
            paired.add(owner["region_id"])
            continue
        if box[2] <= 0 or box[3] <= 0:
            notes.append(f"region {rid}: empty rectangle")
            continue
        rle = masks.to_rle([convert.rect_to_polygon(region["value"], width, height)], height, width)
        shaped.append({"category_id": cat_ids[label], "rle": rle, "bbox": box, "source": "rectangle", "region_id": rid})
    return shaped, notes


def _choose_annotation(annotations: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The finished annotation that stands for the task: ground truth first, then the latest."""
    finished = [a for a in annotations if not a.get("was_cancelled")]
    if not finished:
        return None
    return max(
        finished, key=lambda a: (bool(a.get("ground_truth")), str(a.get("updated_at") or a.get("created_at") or ""))
    )


def _annotator_names(conn: Connection) -> dict[int, str]:
    try:
        users = conn.call("list users", lambda: list(conn.sdk.users.list()))
    except LabelStudioError as err:  # e.g. 403 for a non-admin key: fall back to user ids
        log.warning("cannot list users (%s); annotators are recorded by id", err)
        return {}
    return {int(u.id): str(getattr(u, "email", None) or getattr(u, "username", None) or u.id) for u in users}


def pull(
    run_dir: str | os.PathLike[str],
    config: RunConfig,
    *,
    url: str | None = None,
    api_key: str | None = None,
    connection: Connection | None = None,
) -> dict[str, Any]:
    """Read the project's finished annotations into review/ground_truth.json and review/status.parquet.

    Returns a report: counts of tasks by status, instances by source, and seconds.
    Writes nothing unless the whole export was read and converted.
    """
    t0 = time.monotonic()
    run = RunDir(Path(run_dir).resolve())
    record = _project_record(run)
    if record is None:
        raise FileNotFoundError(f"{run.review_project} not found: push the run first (`daamset review push {run.root}`)")
    dataset = _load_json(run.instances_json, "the run folder is incomplete")
    images = {int(img["id"]): img for img in dataset["images"]}
    cat_ids = {str(c["name"]): int(c["id"]) for c in dataset["categories"]}

    conn = connection or connect(url, api_key)
    if record.get("url") != conn.url:
        raise ReviewError(
            f"{run.review_project} names project {record['project_id']} on {record.get('url')}, but the "
            f"connection is to {conn.url}: set LABEL_STUDIO_URL to the server the run was pushed to"
        )
    conn.check()
    project_id = int(record["project_id"])
    _get_project(conn, run, project_id)
    exported = conn.call(
        "export annotations",
        lambda: json.loads(
            b"".join(conn.sdk.projects.exports.download_sync(project_id, export_type="JSON", download_all_tasks=True))
        ),
    )
    annotators = _annotator_names(conn)

    gt_images: list[dict[str, Any]] = []
    gt_annotations: list[dict[str, Any]] = []
    status_rows: list[dict[str, Any]] = []
    sources: dict[str, int] = defaultdict(int)
    ignored = 0
    for task in sorted(exported, key=lambda t: int((t.get("data") or {}).get("image_id", 0))):
        data = task.get("data") or {}
        if "image_id" not in data:
            ignored += 1  # a task added by hand, not pushed from this run
            continue
        image_id = int(data["image_id"])
        if image_id not in images:
            raise ReviewError(
                f"task {task['id']} names image {image_id}, which is not in {run.instances_json}: "
                "was the project pushed from another run?"
            )
        annotations = task.get("annotations") or []
        chosen = _choose_annotation(annotations)
        row: dict[str, Any] = {
            "image_id": image_id,
            "task_id": int(task["id"]),
            "n_annotations": len(annotations),
            "n_instances": 0,
        }
        if chosen is None:
            row["status"] = "skipped" if annotations else "unannotated"
            status_rows.append(row)
            continue
        instances, notes = _regions_to_instances(int(task["id"]), images[image_id], chosen.get("result") or [], cat_ids)
        who = chosen.get("completed_by")
        who_id = who.get("id") if isinstance(who, dict) else who
        annotator = annotators.get(int(who_id), str(who_id)) if who_id is not None else None
        when = chosen.get("updated_at") or chosen.get("created_at")
        gt_images.append(dict(images[image_id]))
        for inst in instances:
            entry = annotation_entry(
                len(gt_annotations) + 1,
                image_id,
                inst["category_id"],
                inst["rle"],
                extra={
                    "annotator": annotator,
                    "annotated_at": when,
                    "source": inst["source"],
                    "ls_task_id": int(task["id"]),
                    "ls_annotation_id": int(chosen["id"]),
                    "ls_region_id": inst["region_id"],
                },
            )
            if inst["bbox"] is not None:  # a box-only object: its rectangle is exact, not its rasterisation
                entry["bbox"] = [float(v) for v in inst["bbox"]]
            gt_annotations.append(entry)
            sources[inst["source"]] += 1
        row.update(
            status="annotated",
            annotation_id=int(chosen["id"]),
            annotator=annotator,
            annotated_at=when,
            lead_time=chosen.get("lead_time"),
            n_instances=len(instances),
            notes="; ".join(notes) or None,
        )
        status_rows.append(row)

    ground_truth = instances_dataset(
        gt_images,
        gt_annotations,
        dataset["categories"],
        info={
            "description": f"daamset reviewed ground truth of {run.root.name}",
            "label_studio_project": project_id,
            "label_studio_url": conn.url,
            "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    status_table = pa.Table.from_pylist(status_rows, schema=REVIEW_STATUS)
    # both files appear together, or neither: rename only after both are written
    with ExitStack() as stack:
        gt_tmp = stack.enter_context(atomic_path(run.ground_truth_json))
        status_tmp = stack.enter_context(atomic_path(run.review_status))
        gt_tmp.write_text(json.dumps(ground_truth, ensure_ascii=False), encoding="utf-8")
        pq.write_table(status_table, status_tmp)

    counts = defaultdict(int)
    for row in status_rows:
        counts[row["status"]] += 1
    return {
        "project_id": project_id,
        "tasks": len(status_rows),
        "annotated": counts["annotated"],
        "skipped": counts["skipped"],
        "unannotated": counts["unannotated"],
        "ignored_tasks": ignored,
        "instances": len(gt_annotations),
        "instances_by_source": dict(sources),
        "ground_truth": str(run.ground_truth_json),
        "status": str(run.review_status),
        "seconds": time.monotonic() - t0,
    }
