"""pipeline.metrics: AP, mIoU and overlaps checked against hand-built masks with known answers."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from pipeline import coco, masks, metrics

H, W = 40, 50
# COCOeval's grid: 10 IoU thresholds, 101 recall points
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def dataset(instances: list[tuple[int, int, np.ndarray]], names=("dog", "cat", "bird"), n_images: int = 2) -> dict:
    """GT from (image_id, category_id, mask) triples."""
    images = [coco.image_entry(i, f"{i}.png", W, H) for i in range(1, n_images + 1)]
    anns = [coco.annotation_entry(n + 1, i, c, masks.encode(m)) for n, (i, c, m) in enumerate(instances)]
    return coco.instances_dataset(images, anns, coco.category_list(list(names)))


def result(image_id: int, category_id: int, mask: np.ndarray, score: float = 1.0) -> dict:
    rle = masks.encode(mask)
    return {"image_id": image_id, "category_id": category_id, "segmentation": rle,
            "bbox": masks.bbox(rle), "score": score}


GT_INSTANCES = [
    (1, 1, rect(0, 10, 0, 10)),
    (1, 1, rect(20, 35, 25, 45)),
    (1, 2, rect(12, 30, 2, 20)),
    (2, 1, rect(5, 25, 5, 30)),
]


# --- COCO AP --------------------------------------------------------------------------


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_ap_is_one_when_results_equal_gt(iou_type):
    gt = dataset(GT_INSTANCES)
    out = metrics.coco_ap(gt, coco.results_from_annotations(gt["annotations"]), iou_type)
    assert out["AP"] == pytest.approx(1.0) and out["AP50"] == pytest.approx(1.0)
    assert out["AP75"] == pytest.approx(1.0)
    rows = {r["category"]: r for r in out["per_category"]}
    assert rows["dog"]["AP"] == pytest.approx(1.0) and rows["dog"]["n_gt"] == 3
    assert rows["cat"]["n_pred"] == 1
    # no ground truth for "bird": undefined, reported as None (COCOeval's -1)
    assert rows["bird"]["AP"] is None and rows["bird"]["n_gt"] == 0


def test_deleted_instance_lowers_ap_to_the_recall_it_leaves():
    gt = dataset(GT_INSTANCES[:2], n_images=1)  # one image, two dogs
    res = coco.results_from_annotations(gt["annotations"])[:1]  # one dog found, precision 1
    out = metrics.coco_ap(gt, res, "segm")
    # interpolated precision is 1 up to recall 0.5 and 0 beyond
    expected = float(np.mean(RECALL_POINTS <= 0.5))
    assert out["AP"] == pytest.approx(expected)
    assert out["AP50"] == pytest.approx(expected)


def test_partial_overlap_counts_at_thresholds_up_to_its_iou():
    gt_mask, pred_mask = rect(0, 10, 0, 20), rect(0, 10, 4, 24)
    iou = masks.iou(gt_mask, pred_mask)  # 16/24
    gt = dataset([(1, 1, gt_mask)], n_images=1)
    out = metrics.coco_ap(gt, [result(1, 1, pred_mask)], "segm")
    assert out["AP"] == pytest.approx(float(np.mean(IOU_THRESHOLDS <= iou)))
    assert out["AP50"] == pytest.approx(1.0)
    assert out["AP75"] == pytest.approx(0.0)
    # same geometry in boxes
    assert metrics.coco_ap(gt, [result(1, 1, pred_mask)], "bbox")["AP"] == pytest.approx(out["AP"])


def test_higher_scored_false_positive_halves_ap():
    gt = dataset([(1, 1, rect(0, 10, 0, 10))], n_images=1)
    res = [result(1, 1, rect(30, 40, 30, 40), score=0.9), result(1, 1, rect(0, 10, 0, 10), score=0.5)]
    assert metrics.coco_ap(gt, res)["AP"] == pytest.approx(0.5)
    res[0]["score"] = 0.1  # ranked below the true positive: precision stays 1 up to full recall
    assert metrics.coco_ap(gt, res)["AP"] == pytest.approx(1.0)


def test_empty_results_give_zero_not_a_crash():
    gt = dataset(GT_INSTANCES)
    out = metrics.coco_ap(gt, [], "segm")
    assert out["AP"] == 0.0 and out["AP50"] == 0.0 and out["n_pred"] == 0
    assert metrics.coco_ap(gt, [], "bbox")["AP"] == 0.0


def test_ap_none_without_any_ground_truth():
    gt = dataset([], n_images=1)
    assert metrics.coco_ap(gt, [result(1, 1, rect(0, 5, 0, 5))])["AP"] is None


def test_image_ids_restrict_the_evaluation():
    gt = dataset(GT_INSTANCES)
    res = [r for r in coco.results_from_annotations(gt["annotations"]) if r["image_id"] == 1]
    assert metrics.coco_ap(gt, res)["AP"] < 1.0  # image 2's dog is missed
    only_1 = metrics.coco_ap(gt, res, image_ids=[1])
    assert only_1["AP"] == pytest.approx(1.0) and only_1["n_images"] == 1 and only_1["n_gt"] == 3
    with pytest.raises(ValueError, match="not in the ground truth"):
        metrics.coco_ap(gt, res, image_ids=[99])


def test_ap_does_not_modify_inputs_and_is_silent(capsys):
    gt = dataset(GT_INSTANCES)
    res = coco.results_from_annotations(gt["annotations"])
    gt_before, res_before = copy.deepcopy(gt), copy.deepcopy(res)
    metrics.coco_ap(gt, res, "segm")
    metrics.coco_ap(gt, res, "bbox")
    assert gt == gt_before and res == res_before
    assert capsys.readouterr().out == ""


def test_ap_bbox_from_segmentation_only_results():
    gt = dataset(GT_INSTANCES)
    res = [{k: v for k, v in r.items() if k != "bbox"} for r in coco.results_from_annotations(gt["annotations"])]
    assert metrics.coco_ap(gt, res, "bbox")["AP"] == pytest.approx(1.0)


def test_ap_rejects_bad_input():
    gt = dataset(GT_INSTANCES)
    with pytest.raises(ValueError, match="image_id 7"):
        metrics.coco_ap(gt, [result(7, 1, rect(0, 1, 0, 1))])
    with pytest.raises(ValueError, match="category_id 9"):
        metrics.coco_ap(gt, [result(1, 9, rect(0, 1, 0, 1))])
    with pytest.raises(ValueError, match="iou_type"):
        metrics.coco_ap(gt, [], "keypoints")  # type: ignore[arg-type]
    bad_size = result(1, 1, rect(0, 1, 0, 1))
    bad_size["segmentation"] = masks.encode(np.ones((5, 5), bool))
    with pytest.raises(ValueError, match="size"):
        metrics.coco_ap(gt, [bad_size])


# --- mIoU per noun --------------------------------------------------------------------


def test_miou_unions_per_image_and_category():
    gt = dataset(GT_INSTANCES)
    pred_dog_1 = [rect(0, 12, 0, 12), rect(20, 30, 25, 45)]  # two predicted dog instances in image 1
    pred_cat_1 = [rect(12, 30, 2, 20)]  # exact
    res = [result(1, 1, m) for m in pred_dog_1] + [result(1, 2, m) for m in pred_cat_1]
    res.append(result(2, 3, rect(0, 5, 0, 5)))  # a bird not in image 2's ground truth: ignored
    out = metrics.miou_per_noun(gt, res)

    gt_dog_1 = GT_INSTANCES[0][2] | GT_INSTANCES[1][2]
    iou_dog_1 = masks.iou(gt_dog_1, pred_dog_1[0] | pred_dog_1[1])
    pairs = {(p["image_id"], p["category_id"]): p for p in out["pairs"]}
    assert set(pairs) == {(1, 1), (1, 2), (2, 1)}
    assert pairs[1, 1]["iou"] == pytest.approx(iou_dog_1)
    assert pairs[1, 1]["gt_area"] == gt_dog_1.sum()
    assert pairs[1, 2]["iou"] == pytest.approx(1.0)
    assert pairs[2, 1]["iou"] == 0.0 and pairs[2, 1]["pred_area"] == 0  # no prediction -> 0
    assert out["mIoU"] == pytest.approx((iou_dog_1 + 1.0 + 0.0) / 3)
    rows = {r["category"]: r for r in out["per_category"]}
    assert rows["dog"]["mIoU"] == pytest.approx(iou_dog_1 / 2) and rows["dog"]["n_pairs"] == 2
    assert rows["cat"]["mIoU"] == pytest.approx(1.0)
    assert "bird" not in rows


def test_miou_filters_and_polygon_ground_truth():
    gt = dataset(GT_INSTANCES)
    out = metrics.miou_per_noun(gt, [], image_ids=[2])
    assert out["n_pairs"] == 1 and out["mIoU"] == 0.0
    assert metrics.miou_per_noun(gt, [], category_ids=[2])["n_pairs"] == 1
    assert metrics.miou_per_noun(dataset([]), [])["mIoU"] is None

    poly_gt = copy.deepcopy(dataset([(1, 1, rect(0, 10, 0, 10))], n_images=1))
    poly_gt["annotations"][0]["segmentation"] = masks.polygons(rect(0, 10, 0, 10))
    out = metrics.miou_per_noun(poly_gt, [result(1, 1, rect(0, 10, 0, 10))])
    assert 0.7 < out["mIoU"] < 1.0  # polygon through pixel centres covers slightly less


def test_miou_does_not_modify_inputs():
    gt = dataset(GT_INSTANCES)
    res = coco.results_from_annotations(gt["annotations"])
    before = copy.deepcopy((gt, res))
    assert metrics.miou_per_noun(gt, res)["mIoU"] == pytest.approx(1.0)
    assert (gt, res) == before


# --- head / dependent overlaps --------------------------------------------------------


def test_overlap_stats_known_values():
    head = rect(0, 10, 0, 10)  # 100 px
    dep = rect(5, 10, 0, 20)  # 100 px, 50 of them inside the head
    out = metrics.overlap_stats(head, dep)
    assert out["iou"] == pytest.approx(50 / 150)
    assert out["iod"] == pytest.approx(50 / 100)
    assert out["ioh"] == pytest.approx(50 / 100)
    small = rect(0, 2, 0, 5)  # 10 px, all inside the head
    out = metrics.overlap_stats(head, small)
    assert out["iod"] == 1.0 and out["ioh"] == pytest.approx(0.1) and out["iou"] == pytest.approx(0.1)


def test_overlap_stats_empty_is_nan():
    empty = np.zeros((H, W), bool)
    out = metrics.overlap_stats(rect(0, 5, 0, 5), empty)
    assert math.isnan(out["iod"]) and out["iou"] == 0.0 and out["ioh"] == 0.0
    assert all(math.isnan(v) for v in metrics.overlap_stats(empty, empty).values())
    with pytest.raises(ValueError, match="shape"):
        metrics.overlap_stats(empty, np.zeros((3, 3), bool))


def test_ap_accepts_minimal_hand_made_ground_truth():
    # only what a reviewer's export may carry: no area, bbox or iscrowd; one polygon mask
    square = rect(0, 20, 0, 20)
    gt = {
        "images": [{"id": 1, "width": W, "height": H}],
        "categories": [{"id": 1, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": masks.encode(square)},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": masks.polygons(rect(25, 40, 25, 50))},
        ],
    }
    before = copy.deepcopy(gt)
    res = [result(1, 1, square), result(1, 1, rect(25, 40, 25, 50), score=0.5)]
    out = metrics.coco_ap(gt, res, "segm")
    assert out["AP50"] == pytest.approx(1.0)  # the polygon outline matches its mask at IoU >= 0.5
    assert gt == before


def test_metrics_reject_a_non_instances_dict():
    with pytest.raises(ValueError, match="categories"):
        metrics.coco_ap({"images": [], "annotations": []}, [])
    with pytest.raises(ValueError, match="categories"):
        metrics.miou_per_noun({"images": [], "annotations": []}, [])
