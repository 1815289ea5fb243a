"""Brush RLE, rectangles, polygons and the labeling config (no server needed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from pipeline import masks
from pipeline.labelstudio import convert


def _cases() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    empty = np.zeros((37, 53), dtype=bool)
    full = np.ones((20, 31), dtype=bool)
    pixel = np.zeros((16, 24), dtype=bool)
    pixel[15, 23] = True  # the very last pixel
    noise = rng.random((64, 96)) < 0.5  # every run length 1..: the encoder's worst case
    long_runs = np.zeros((300, 400), dtype=bool)
    long_runs[10:290, 5:395] = True  # runs longer than 2**16 values once repeated into RGBA
    return [empty, full, pixel, noise, long_runs]


@pytest.mark.parametrize("mask", _cases(), ids=["empty", "full", "last-pixel", "noise", "long-runs"])
def test_brush_round_trip_is_exact(mask: np.ndarray) -> None:
    rle = convert.mask_to_brush(mask)
    assert all(isinstance(v, int) and 0 <= v < 256 for v in rle)
    back = convert.brush_to_mask(rle, *mask.shape)
    assert back.dtype == bool and back.shape == mask.shape
    assert np.array_equal(back, mask)


def test_brush_rle_is_label_studios_format() -> None:
    # the SDK's own decoder reads our RLE as an RGBA image whose alpha is the mask
    from label_studio_sdk.converter.brush import decode_from_annotation

    mask = np.zeros((10, 14), dtype=bool)
    mask[2:5, 3:9] = True
    result = convert.brush_result(mask, "cat", id="r1")
    flat = dict(result, rle=result["value"]["rle"], brushlabels=["cat"])
    layers = decode_from_annotation("mask", [flat])
    (layer,) = layers.values()
    assert np.array_equal(layer == 255, mask)


def test_brush_size_mismatch_names_the_cause() -> None:
    rle = convert.mask_to_brush(np.ones((4, 6), dtype=bool))
    with pytest.raises(ValueError, match="original_width/original_height"):
        convert.brush_to_mask(rle, 6, 4 + 1)


def test_rectangles_round_trip_in_percent() -> None:
    bbox = [3.0, 5.0, 17.0, 9.0]
    value = convert.bbox_to_rect(bbox, 64, 48)
    assert value["x"] == pytest.approx(100 * 3 / 64) and value["height"] == pytest.approx(100 * 9 / 48)
    assert convert.rect_to_bbox(value, 64, 48) == pytest.approx(bbox)


def test_rotated_rectangle_gives_its_hull() -> None:
    # a 10 x 4 pixel box rotated 90 degrees clockwise about its top-left corner (20, 10)
    value = {"x": 20 / 64 * 100, "y": 10 / 48 * 100, "width": 10 / 64 * 100, "height": 4 / 48 * 100, "rotation": 90}
    assert convert.rect_to_bbox(value, 64, 48) == pytest.approx([16.0, 10.0, 4.0, 10.0])
    poly = convert.rect_to_polygon(value, 64, 48)
    mask = masks.decode(masks.to_rle([poly], 48, 64))
    assert masks.bbox(masks.encode(mask)) == pytest.approx([16.0, 10.0, 4.0, 10.0])


def test_polygon_points_to_pixels() -> None:
    polygon = [10.0, 8.0, 30.0, 8.0, 30.0, 20.0, 10.0, 20.0]
    result = convert.polygon_result(polygon, "dog", id="p", width=64, height=48)
    assert result["value"]["polygonlabels"] == ["dog"]
    assert convert.polygon_to_pixels(result["value"], 64, 48) == pytest.approx(polygon)


def test_labeling_config_lists_every_category_in_each_tool() -> None:
    cats = [{"id": 2, "name": 'hot "dog" & <bun>'}, {"id": 1, "name": "cat"}]
    root = ET.fromstring(convert.labeling_config(cats))
    assert root.find("Image").get("value") == "$image"
    for tag, name in (("BrushLabels", "mask"), ("RectangleLabels", "box"), ("PolygonLabels", "polygon")):
        block = root.find(tag)
        assert block.get("name") == name and block.get("toName") == "image"
        assert [lab.get("value") for lab in block.findall("Label")] == ["cat", 'hot "dog" & <bun>']
    with pytest.raises(ValueError, match="at least one category"):
        convert.labeling_config([])
