"""pipeline.coco: builders agree with their masks, are deterministic, and copy their inputs."""

from __future__ import annotations

import copy
import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from pipeline import coco, masks


def rle_of(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> dict:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return masks.encode(m)


def small_dataset() -> dict:
    cats = coco.category_list(["dog", "frisbee"])
    images = [coco.image_entry(2, "b.png", 30, 20), coco.image_entry(1, "a.png", 30, 20, extra={"seed": 7})]
    anns = [
        coco.annotation_entry(3, 2, 1, rle_of(20, 30, 0, 5, 0, 5)),
        coco.annotation_entry(1, 1, 1, rle_of(20, 30, 2, 12, 3, 9)),
        coco.annotation_entry(2, 1, 2, rle_of(20, 30, 15, 20, 20, 30), score=0.25),
    ]
    return coco.instances_dataset(images, anns, cats)


def test_category_list_ids_follow_order_and_reject_bad_names():
    cats = coco.category_list(["zebra", "apple", "hot dog"])
    assert [(c["id"], c["name"]) for c in cats] == [(1, "zebra"), (2, "apple"), (3, "hot dog")]
    with pytest.raises(ValueError, match="duplicate"):
        coco.category_list(["a", "a"])
    with pytest.raises(ValueError, match="empty"):
        coco.category_list(["a", " "])
    with pytest.raises(TypeError):
        coco.category_list("dog")


def test_annotation_bbox_and_area_come_from_the_mask():
    rle = rle_of(20, 30, 2, 12, 3, 9)
    ann = coco.annotation_entry(5, 1, 2, rle, score=0.5, extra={"tau": 0.4})
    assert ann["bbox"] == [3.0, 2.0, 6.0, 10.0]
    assert ann["area"] == 60.0
    assert ann["iscrowd"] == 0 and ann["score"] == 0.5 and ann["tau"] == 0.4
    assert "score" not in coco.annotation_entry(5, 1, 2, rle)
    ann["segmentation"]["counts"] = "changed"
    assert rle["counts"] != "changed"  # the entry holds its own copy
    with pytest.raises(ValueError, match="overwrite"):
        coco.annotation_entry(5, 1, 2, rle, extra={"bbox": [0, 0, 1, 1]})


def test_annotation_accepts_bytes_counts():
    m = np.zeros((4, 4), bool)
    m[1:3, 1:3] = True
    raw = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    ann = coco.annotation_entry(1, 1, 1, raw)
    json.dumps(ann)  # JSON-ready: counts became str
    assert ann["area"] == 4.0


def test_instances_dataset_sorted_checked_and_json_deterministic(tmp_path):
    ds = small_dataset()
    assert [i["id"] for i in ds["images"]] == [1, 2]
    assert [a["id"] for a in ds["annotations"]] == [1, 2, 3]
    assert ds["images"][0]["seed"] == 7
    again = small_dataset()
    p1, p2 = coco.save_coco(tmp_path / "a.json", ds), coco.save_coco(tmp_path / "b.json", again)
    assert p1.read_bytes() == p2.read_bytes()
    assert json.loads(p1.read_text()) == ds

    img = [coco.image_entry(1, "a.png", 4, 4)]
    cats = coco.category_list(["x"])
    with pytest.raises(ValueError, match="unknown image_id"):
        coco.instances_dataset(img, [coco.annotation_entry(1, 9, 1, rle_of(4, 4, 0, 1, 0, 1))], cats)
    with pytest.raises(ValueError, match="unknown category_id"):
        coco.instances_dataset(img, [coco.annotation_entry(1, 1, 4, rle_of(4, 4, 0, 1, 0, 1))], cats)
    with pytest.raises(ValueError, match="duplicate image id"):
        coco.instances_dataset(img + img, [], cats)


def test_instances_dataset_does_not_share_caller_objects():
    images = [coco.image_entry(1, "a.png", 4, 4)]
    ds = coco.instances_dataset(images, [], coco.category_list(["x"]))
    ds["images"][0]["file_name"] = "changed"
    assert images[0]["file_name"] == "a.png"


def test_results_from_annotations():
    ds = small_dataset()
    before = copy.deepcopy(ds)
    res = coco.results_from_annotations(ds["annotations"])
    assert [set(r) for r in res] == [{"image_id", "category_id", "segmentation", "bbox", "score"}] * 3
    assert [r["score"] for r in res] == [1.0, 0.25, 1.0]
    assert res[0]["bbox"] == ds["annotations"][0]["bbox"]
    res[0]["segmentation"]["counts"] = "x"
    assert ds == before


def test_captions_dataset():
    images = [coco.image_entry(1, "a.png", 4, 4)]
    caps = [coco.caption_entry(2, 1, "a dog"), coco.caption_entry(1, 1, "a cat")]
    ds = coco.captions_dataset(images, caps)
    assert [c["caption"] for c in ds["annotations"]] == ["a cat", "a dog"]
    assert "categories" not in ds
    with pytest.raises(ValueError, match="unknown image_id"):
        coco.captions_dataset(images, [coco.caption_entry(1, 5, "x")])


def test_load_coco_is_quiet_and_copies(tmp_path, capsys):
    ds = small_dataset()
    before = copy.deepcopy(ds)
    api = coco.load_coco(ds)
    assert sorted(api.getImgIds()) == [1, 2]
    assert api.getAnnIds(imgIds=[1]) == [1, 2]
    api.dataset["annotations"][0]["segmentation"] = "mutated"
    assert ds == before
    path = coco.save_coco(tmp_path / "d.json", ds)
    assert coco.load_coco(path).getCatIds(catNms=["frisbee"]) == [2]
    assert capsys.readouterr().out == ""
    with pytest.raises(FileNotFoundError):
        coco.load_coco(tmp_path / "missing.json")
