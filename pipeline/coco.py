"""Small builders for COCO dictionaries (instances, results, captions) and a quiet loader.

Formats follow https://cocodataset.org/#format-data; masks are compressed RLE
(see ``pipeline.masks``). Every builder returns new dicts and never keeps or
changes the caller's objects, so a dataset can be built, evaluated (COCOeval
rewrites annotations in place) and written without surprises. Lists come out
sorted by id, so the same inputs always give the same JSON bytes.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO

from pipeline import __version__
from pipeline import masks
from pipeline.atomic import write_json

__all__ = [
    "category_list",
    "image_entry",
    "annotation_entry",
    "caption_entry",
    "instances_dataset",
    "captions_dataset",
    "results_from_annotations",
    "load_coco",
    "save_coco",
]

_IMAGE_KEYS = ("id", "file_name", "width", "height")
_ANNOTATION_KEYS = ("id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd", "score")


def _default_info() -> dict[str, Any]:
    # no creation date: it would make two runs' files differ for no reason
    return {"description": "daamset", "version": __version__}


def category_list(
    names: Sequence[str], *, supercategories: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """COCO categories with ids 1.. in the given order.

    ``supercategories`` maps a name to its supercategory (default ``"object"``).
    Names must be non-empty and unique: a category is looked up by name later.
    """
    if isinstance(names, str):
        raise TypeError("names must be a sequence of names, not one string")
    seen: set[str] = set()
    out = []
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"category name at position {i} is empty or not a string: {name!r}")
        if name in seen:
            raise ValueError(f"duplicate category name {name!r}")
        seen.add(name)
        sup = (supercategories or {}).get(name, "object")
        out.append({"id": i + 1, "name": name, "supercategory": sup})
    return out


def _merge_extra(entry: dict[str, Any], extra: Mapping[str, Any] | None, reserved: Iterable[str]) -> dict[str, Any]:
    if extra:
        clash = sorted(set(extra) & set(reserved))
        if clash:
            raise ValueError(f"extra keys {clash} would overwrite the entry's own fields")
        entry.update(copy.deepcopy(dict(extra)))
    return entry


def image_entry(
    image_id: int,
    file_name: str,
    width: int,
    height: int,
    *,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A COCO image record; ``extra`` adds fields (e.g. ``prompt``, ``seed``)."""
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"image {image_id}: width and height must be positive, got {width}x{height}")
    entry = {"id": int(image_id), "file_name": str(file_name), "width": int(width), "height": int(height)}
    return _merge_extra(entry, extra, _IMAGE_KEYS)


def annotation_entry(
    id: int,
    image_id: int,
    category_id: int,
    rle: Mapping[str, Any],
    *,
    score: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A COCO instance annotation whose ``bbox`` and ``area`` come from ``rle``.

    Computing both from the mask (pycocotools' toBbox/area) means they can
    never disagree with it. ``score`` is set only when given (predictions);
    ``iscrowd`` is always 0: every instance is a single object.
    """
    segmentation = masks.to_rle(dict(rle))
    entry: dict[str, Any] = {
        "id": int(id),
        "image_id": int(image_id),
        "category_id": int(category_id),
        "segmentation": segmentation,
        "area": float(masks.area(segmentation)),
        "bbox": masks.bbox(segmentation),
        "iscrowd": 0,
    }
    if score is not None:
        entry["score"] = float(score)
    return _merge_extra(entry, extra, _ANNOTATION_KEYS)


def caption_entry(id: int, image_id: int, caption: str) -> dict[str, Any]:
    """A COCO caption annotation."""
    return {"id": int(id), "image_id": int(image_id), "caption": str(caption)}


def _sorted_unique(items: Iterable[Mapping[str, Any]], what: str) -> list[dict[str, Any]]:
    rows = [copy.deepcopy(dict(x)) for x in items]
    for row in rows:
        if "id" not in row:
            raise ValueError(f"a {what} entry has no 'id': {sorted(row)}")
    rows.sort(key=lambda r: r["id"])
    for a, b in zip(rows, rows[1:]):
        if a["id"] == b["id"]:
            raise ValueError(f"duplicate {what} id {a['id']}")
    return rows


def _check_refs(annotations: list[dict[str, Any]], image_ids: set[int], category_ids: set[int] | None) -> None:
    for ann in annotations:
        if ann.get("image_id") not in image_ids:
            raise ValueError(f"annotation {ann['id']} refers to unknown image_id {ann.get('image_id')!r}")
        if category_ids is not None and ann.get("category_id") not in category_ids:
            raise ValueError(f"annotation {ann['id']} refers to unknown category_id {ann.get('category_id')!r}")


def instances_dataset(
    images: Iterable[Mapping[str, Any]],
    annotations: Iterable[Mapping[str, Any]],
    categories: Iterable[Mapping[str, Any]],
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A COCO instances dataset: copies of the inputs, sorted by id and checked.

    Raises ``ValueError`` on duplicate ids and on annotations that name an
    image or category not in the dataset.
    """
    imgs = _sorted_unique(images, "image")
    cats = _sorted_unique(categories, "category")
    anns = _sorted_unique(annotations, "annotation")
    _check_refs(anns, {i["id"] for i in imgs}, {c["id"] for c in cats})
    return {
        "info": dict(info) if info is not None else _default_info(),
        "licenses": [],
        "images": imgs,
        "annotations": anns,
        "categories": cats,
    }


def captions_dataset(
    images: Iterable[Mapping[str, Any]],
    captions: Iterable[Mapping[str, Any]],
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A COCO captions dataset (annotations are ``caption_entry`` records)."""
    imgs = _sorted_unique(images, "image")
    anns = _sorted_unique(captions, "caption")
    _check_refs(anns, {i["id"] for i in imgs}, None)
    return {
        "info": dict(info) if info is not None else _default_info(),
        "licenses": [],
        "images": imgs,
        "annotations": anns,
    }


def results_from_annotations(
    annotations: Iterable[Mapping[str, Any]], *, default_score: float = 1.0
) -> list[dict[str, Any]]:
    """COCO results (image_id, category_id, segmentation, bbox, score), in annotation-id order.

    Annotations without a ``score`` (e.g. ground truth used as a prediction)
    get ``default_score``. The inputs are not modified.
    """
    anns = sorted(annotations, key=lambda a: (a.get("id", 0), a["image_id"]))
    out = []
    for ann in anns:
        row: dict[str, Any] = {"image_id": int(ann["image_id"]), "category_id": int(ann["category_id"])}
        if "segmentation" in ann:
            row["segmentation"] = copy.deepcopy(ann["segmentation"])
        if "bbox" in ann:
            row["bbox"] = [float(v) for v in ann["bbox"]]
        elif isinstance(ann.get("segmentation"), dict):
            row["bbox"] = masks.bbox(ann["segmentation"])
        row["score"] = float(ann.get("score", default_score))
        out.append(row)
    return out


def load_coco(source: str | os.PathLike[str] | Mapping[str, Any]) -> COCO:
    """A ``pycocotools.coco.COCO`` over a file or dict, without its progress prints.

    A dict is deep-copied first: COCO and COCOeval rewrite annotations in
    place, and the caller's data must stay as it was.
    """
    if isinstance(source, Mapping):
        dataset = copy.deepcopy(dict(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"COCO file not found: {path}")
        with path.open(encoding="utf-8") as f:
            dataset = json.load(f)
        if not isinstance(dataset, dict):
            raise ValueError(f"{path}: a COCO dataset is a JSON object, got {type(dataset).__name__}")
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def save_coco(path: str | os.PathLike[str], dataset: Mapping[str, Any] | list[Any]) -> Path:
    """Write a COCO dataset (or results list) as JSON, atomically."""
    return write_json(path, dataset)
