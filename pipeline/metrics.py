"""Evaluation maths: COCO AP (via COCOeval), the DAAM paper's mIoU per noun, map overlaps.

Inputs are COCO dicts (ground truth) and COCO results lists (predictions), as
built by ``pipeline.coco``. Nothing here changes the caller's data: COCOeval
and ``loadRes`` rewrite annotations in place, so they only ever see copies.

Conventions for undefined values (documented once, here):
- ``coco_ap``: COCOeval marks a category without ground truth in the
  evaluated images with -1; we report ``None`` for it, and its AP is left out
  of the overall mean (as COCOeval does). The overall AP is ``None`` only when
  the evaluated images hold no ground truth at all. Empty results give 0.0.
- ``miou_per_noun``: an (image, category) ground-truth pair with no
  prediction has IoU 0; predictions of categories absent from an image's
  ground truth are not counted (the paper scores the nouns that are present).
- ``overlap_stats``: a ratio whose denominator is empty is ``nan``.
"""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipeline import masks
from pipeline.coco import load_coco

__all__ = ["coco_ap", "miou_per_noun", "overlap_stats"]

IouType = Literal["segm", "bbox"]


def _check_gt(gt: Mapping[str, Any]) -> None:
    if not isinstance(gt, Mapping):
        raise TypeError(f"ground truth must be a COCO dict, got {type(gt).__name__}")
    missing = [k for k in ("images", "annotations", "categories") if k not in gt]
    if missing:
        raise ValueError(f"ground truth lacks {missing}: not a COCO instances dataset")


def _subset(ids: Iterable[int] | None, available: Iterable[int], what: str) -> list[int]:
    """The requested ids (all available when None), checked to exist."""
    avail = sorted({int(i) for i in available})
    if ids is None:
        return avail
    wanted = sorted({int(i) for i in ids})
    unknown = sorted(set(wanted) - set(avail))
    if unknown:
        raise ValueError(f"{what} ids not in the ground truth: {unknown[:10]}")
    return wanted


def _ann_rle(ann: Mapping[str, Any], img: Mapping[str, Any]) -> dict[str, Any]:
    rle = masks.to_rle(ann["segmentation"], img["height"], img["width"])
    if list(rle["size"]) != [img["height"], img["width"]]:
        raise ValueError(
            f"annotation {ann.get('id')} of image {img['id']}: mask size {rle['size']} "
            f"differs from the image's {img['height']}x{img['width']}"
        )
    return rle


def _prepared_results(
    results: Sequence[Mapping[str, Any]], gt: COCO, iou_type: IouType
) -> list[dict[str, Any]]:
    """Copies of the results with what COCOeval reads (id, area, bbox, iscrowd), checked."""
    out = []
    for n, res in enumerate(results):
        for key in ("image_id", "category_id", "score"):
            if key not in res:
                raise ValueError(f"result {n} has no {key!r}")
        image_id, cat_id = int(res["image_id"]), int(res["category_id"])
        if image_id not in gt.imgs:
            raise ValueError(f"result {n} refers to image_id {image_id}, which is not in the ground truth")
        if cat_id not in gt.cats:
            raise ValueError(f"result {n} refers to category_id {cat_id}, which is not in the ground truth")
        row: dict[str, Any] = {
            "id": n + 1,
            "image_id": image_id,
            "category_id": cat_id,
            "score": float(res["score"]),
            "iscrowd": 0,
        }
        if iou_type == "segm":
            if "segmentation" not in res:
                raise ValueError(f"result {n} has no 'segmentation' (needed for segm AP)")
            row["segmentation"] = _ann_rle(res, gt.imgs[image_id])
            row["area"] = float(masks.area(row["segmentation"]))
            row["bbox"] = masks.bbox(row["segmentation"])
        else:
            if "bbox" in res:
                row["bbox"] = [float(v) for v in res["bbox"]]
            elif "segmentation" in res:
                row["bbox"] = masks.bbox(_ann_rle(res, gt.imgs[image_id]))
            else:
                raise ValueError(f"result {n} has neither 'bbox' nor 'segmentation'")
            row["area"] = row["bbox"][2] * row["bbox"][3]
        out.append(row)
    return out


def _complete_gt(gt: COCO) -> None:
    """Fill the fields COCOeval needs but hand-made ground truth may lack (on our copy)."""
    for ann in gt.dataset.get("annotations", []):
        ann.setdefault("iscrowd", 0)
        if "area" not in ann or "bbox" not in ann:
            rle = _ann_rle(ann, gt.imgs[ann["image_id"]])
            ann.setdefault("area", float(masks.area(rle)))
            ann.setdefault("bbox", masks.bbox(rle))


def _mean_valid(values: np.ndarray) -> float | None:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def coco_ap(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    iou_type: IouType = "segm",
    *,
    image_ids: Iterable[int] | None = None,
    category_ids: Iterable[int] | None = None,
) -> dict[str, Any]:
    """COCO average precision of ``results`` against ``gt`` (COCOeval, stdout silenced).

    Returns ``AP`` (IoU 0.50:0.95), ``AP50``, ``AP75``, ``AR100`` (all areas,
    100 detections per image and category), counts, and ``per_category``: one
    row per evaluated category, in id order, with ``category_id``,
    ``category``, ``AP``, ``AP50``, ``AP75`` (``None`` where the category has
    no ground truth), ``n_gt`` and ``n_pred``. ``image_ids`` / ``category_ids``
    restrict the evaluation; results on other images or categories are ignored.
    """
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    _check_gt(gt)
    coco_gt = load_coco(gt)
    _complete_gt(coco_gt)
    img_ids = _subset(image_ids, coco_gt.imgs, "image")
    cat_ids = _subset(category_ids, coco_gt.cats, "category")
    dt_rows = _prepared_results(results, coco_gt, iou_type)
    # built directly rather than with loadRes, which edits the results it is given
    # and fails on an empty list
    coco_dt = load_coco(
        {
            "images": coco_gt.dataset["images"],
            "categories": coco_gt.dataset["categories"],
            "annotations": dt_rows,
        }
    )

    evaluator = COCOeval(coco_gt, coco_dt, iou_type)
    evaluator.params.imgIds = img_ids
    evaluator.params.catIds = cat_ids
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()

    # precision: [iou thresholds T, recall points R, categories K, areas A, max dets M]
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    recall = evaluator.eval["recall"][:, :, 0, -1]
    thresholds = evaluator.params.iouThrs
    t50 = int(np.argmin(np.abs(thresholds - 0.5)))
    t75 = int(np.argmin(np.abs(thresholds - 0.75)))

    img_set, cat_set = set(img_ids), set(cat_ids)
    n_gt: dict[int, int] = defaultdict(int)
    for ann in coco_gt.dataset.get("annotations", []):
        if ann["image_id"] in img_set and ann["category_id"] in cat_set and not ann.get("iscrowd", 0):
            n_gt[ann["category_id"]] += 1
    n_pred: dict[int, int] = defaultdict(int)
    for row in dt_rows:
        if row["image_id"] in img_set and row["category_id"] in cat_set:
            n_pred[row["category_id"]] += 1

    per_category = []
    for k, cat_id in enumerate(evaluator.params.catIds):
        per_category.append(
            {
                "category_id": int(cat_id),
                "category": coco_gt.cats[cat_id].get("name", str(cat_id)),
                "AP": _mean_valid(precision[:, :, k]),
                "AP50": _mean_valid(precision[t50, :, k]),
                "AP75": _mean_valid(precision[t75, :, k]),
                "n_gt": n_gt[cat_id],
                "n_pred": n_pred[cat_id],
            }
        )
    return {
        "iou_type": iou_type,
        "AP": _mean_valid(precision),
        "AP50": _mean_valid(precision[t50]),
        "AP75": _mean_valid(precision[t75]),
        "AR100": _mean_valid(recall),
        "n_images": len(img_ids),
        "n_gt": sum(n_gt.values()),
        "n_pred": sum(n_pred.values()),
        "per_category": per_category,
    }


def miou_per_noun(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    *,
    image_ids: Iterable[int] | None = None,
    category_ids: Iterable[int] | None = None,
) -> dict[str, Any]:
    """mIoU as in the DAAM paper: one IoU per (image, category) present in the ground truth.

    For each pair, the union of the ground-truth masks of that category in
    that image is compared with the union of the predicted masks (all
    predictions count, whatever their score; no prediction means IoU 0).
    Returns ``mIoU`` (mean over pairs; ``None`` without pairs),
    ``per_category`` (rows with ``category_id``, ``category``, ``mIoU``,
    ``n_pairs``, in id order, categories with pairs only) and ``pairs`` (rows
    with ``image_id``, ``category_id``, ``category``, ``iou``, ``gt_area``,
    ``pred_area``, sorted by image then category).
    """
    _check_gt(gt)
    images = {int(img["id"]): img for img in gt["images"]}
    cats = {int(c["id"]): c for c in gt["categories"]}
    img_set = set(_subset(image_ids, images, "image"))
    cat_set = set(_subset(category_ids, cats, "category"))

    gt_rles: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for ann in gt["annotations"]:
        key = (int(ann["image_id"]), int(ann["category_id"]))
        if key[0] in img_set and key[1] in cat_set and not ann.get("iscrowd", 0):
            gt_rles[key].append(_ann_rle(ann, images[key[0]]))
    pred_rles: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for n, res in enumerate(results):
        key = (int(res["image_id"]), int(res["category_id"]))
        if key not in gt_rles:
            continue  # not a noun present in this image's ground truth
        if "segmentation" not in res:
            raise ValueError(f"result {n} has no 'segmentation' (mIoU compares masks)")
        pred_rles[key].append(_ann_rle(res, images[key[0]]))

    pairs = []
    for key in sorted(gt_rles):
        g = masks.merge(gt_rles[key])
        gt_area = int(masks.area(g))
        if key in pred_rles:
            p = masks.merge(pred_rles[key])
            inter = int(masks.area(masks.merge([g, p], intersect=True)))
            union = int(masks.area(masks.merge([g, p])))
            pred_area = int(masks.area(p))
        else:
            inter, union, pred_area = 0, gt_area, 0
        pairs.append(
            {
                "image_id": key[0],
                "category_id": key[1],
                "category": cats[key[1]].get("name", str(key[1])),
                "iou": inter / union if union else 0.0,
                "gt_area": gt_area,
                "pred_area": pred_area,
            }
        )

    by_cat: dict[int, list[float]] = defaultdict(list)
    for row in pairs:
        by_cat[row["category_id"]].append(row["iou"])
    per_category = [
        {
            "category_id": cat_id,
            "category": cats[cat_id].get("name", str(cat_id)),
            "mIoU": float(np.mean(values)),
            "n_pairs": len(values),
        }
        for cat_id, values in sorted(by_cat.items())
    ]
    return {
        "mIoU": float(np.mean([r["iou"] for r in pairs])) if pairs else None,
        "n_pairs": len(pairs),
        "per_category": per_category,
        "pairs": pairs,
    }


def overlap_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Overlap of a head map ``a`` and a dependent map ``b`` (binary masks).

    ``iou`` = |A&B| / |A|B|, ``iod`` = |A&B| / |B| (share of the dependent
    covered), ``ioh`` = |A&B| / |A| (share of the head covered), as in the
    DAAM paper's syntactic analyses. An empty denominator gives ``nan``, so
    averages can skip it with ``np.nanmean``.
    """
    ma, mb = np.asarray(a), np.asarray(b)
    if ma.shape != mb.shape or ma.ndim != 2:
        raise ValueError(f"masks must be 2-D and of one shape, got {ma.shape} and {mb.shape}")
    ma, mb = ma != 0, mb != 0
    inter = float(np.count_nonzero(ma & mb))
    union = float(np.count_nonzero(ma | mb))
    size_a, size_b = float(np.count_nonzero(ma)), float(np.count_nonzero(mb))

    def ratio(den: float) -> float:
        return inter / den if den else float("nan")

    return {"iou": ratio(union), "iod": ratio(size_b), "ioh": ratio(size_a)}
