"""pipeline.masks: thresholds (Eq. 7 and the anchor's min-max), instances, RLE, polygons."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from pipeline import masks


def rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


# --- thresholds -------------------------------------------------------------------


def test_binary_mask_max_is_eq7():
    rng = np.random.default_rng(0)
    heat = rng.random((17, 23)).astype(np.float32) * 3.0
    for tau in (0.0, 0.3, 0.4, 0.5, 1.0):
        expected = heat >= tau * heat.max()
        np.testing.assert_array_equal(masks.binary_mask(heat, tau, "max"), expected)


def test_binary_mask_minmax_is_anchor_variant():
    rng = np.random.default_rng(1)
    # a flat map (min/max ~0.7): Eq. 7 keeps everything, min-max still separates
    heat = (0.7 + 0.3 * rng.random((20, 20))).astype(np.float32)
    lo, hi = heat.min(), heat.max()
    expected = (heat - lo) / (hi - lo) > 0.4
    np.testing.assert_array_equal(masks.binary_mask(heat, 0.4, "minmax"), expected)
    assert masks.binary_mask(heat, 0.4, "max").all()
    assert 0 < expected.sum() < expected.size


def test_binary_mask_clamps_undershoot_and_handles_zero():
    heat = np.array([[-0.5, 0.0], [0.2, 1.0]], dtype=np.float32)
    # after clamping, min is 0, so the negative pixel is treated as 0 (not the minimum)
    np.testing.assert_array_equal(masks.binary_mask(heat, 0.1, "minmax"), [[False, False], [True, True]])
    assert not masks.binary_mask(np.zeros((4, 4)), 0.4).any()
    with pytest.raises(ValueError, match="tau"):
        masks.binary_mask(heat, 1.5)


# --- instances ----------------------------------------------------------------------


def test_split_instances_areas_order_and_8_connectivity():
    m = np.zeros((12, 12), dtype=bool)
    m[0:2, 0:2] = True  # area 4, first
    m[5:8, 5:8] = True  # area 9
    m[8, 8] = True  # touches (7, 7) diagonally: same component under 8-connectivity -> 10
    m[0:2, 10:12] = True  # area 4, later in row-major order than the first square
    parts = masks.split_instances(m)
    assert [int(p.sum()) for p in parts] == [10, 4, 4]
    assert parts[1][0, 0] and parts[2][0, 10]  # equal areas ordered by position
    np.testing.assert_array_equal(np.logical_or.reduce(parts), m)
    assert not (parts[0] & parts[1]).any()
    assert [int(p.sum()) for p in masks.split_instances(m, min_area=5)] == [10]
    assert masks.split_instances(np.zeros((5, 5), bool)) == []


def test_instance_score_is_mean_inside():
    heat = np.arange(16, dtype=np.float32).reshape(4, 4) / 15.0
    m = rect(4, 4, 1, 3, 1, 3)
    assert masks.instance_score(heat, m) == pytest.approx(heat[1:3, 1:3].mean())
    assert masks.instance_score(heat, np.zeros((4, 4), bool)) == 0.0
    with pytest.raises(ValueError, match="shape"):
        masks.instance_score(heat, np.zeros((3, 4), bool))


def test_iou_known_values():
    a = rect(10, 10, 0, 4, 0, 4)  # 16 px
    b = rect(10, 10, 2, 6, 2, 6)  # 16 px, overlap 4
    assert masks.iou(a, b) == pytest.approx(4 / 28)
    assert masks.iou(a, a) == 1.0
    assert masks.iou(a, ~a) == 0.0
    assert masks.iou(np.zeros((3, 3)), np.zeros((3, 3))) == 0.0


# --- RLE ------------------------------------------------------------------------------


def test_encode_roundtrip_str_counts_and_non_square():
    m = rect(7, 13, 1, 5, 2, 11)
    m[6, 0] = True
    rle = masks.encode(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [7, 13]
    np.testing.assert_array_equal(masks.decode(rle), m)
    # agrees with pycocotools on the same mask
    ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    assert rle["counts"] == ref["counts"].decode()
    assert masks.area(rle) == int(m.sum())
    assert masks.bbox(rle) == [0.0, 1.0, 11.0, 6.0]


def test_encode_batch_like_pycocotools_and_does_not_modify_input():
    stack = np.zeros((6, 8, 3), dtype=bool)
    stack[0:2, 0:2, 0] = True
    stack[3:6, 1:8, 1] = True
    before = stack.copy()
    rles = masks.encode(stack)
    assert isinstance(rles, list) and len(rles) == 3
    np.testing.assert_array_equal(stack, before)
    np.testing.assert_array_equal(masks.decode(rles), stack)
    assert masks.area(rles) == [4, 21, 0]
    assert masks.bbox(rles) == [[0.0, 0.0, 2.0, 2.0], [1.0, 3.0, 7.0, 3.0], [0.0, 0.0, 0.0, 0.0]]


def test_to_rle_accepts_bytes_uncompressed_and_polygons():
    m = rect(5, 6, 1, 3, 2, 5)
    compressed = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    assert isinstance(compressed["counts"], bytes)
    assert isinstance(masks.to_rle(compressed)["counts"], str)
    # uncompressed: column-major runs, zeros first
    column_major = m.ravel(order="F")
    runs, current, n = [], False, 0
    for v in column_major:
        if v != current:
            runs.append(n)
            current, n = v, 0
        n += 1
    runs.append(n)
    unc = {"size": [5, 6], "counts": runs}
    np.testing.assert_array_equal(masks.decode(unc), m)
    assert unc["counts"] == runs  # caller's dict untouched
    poly = [[2.0, 1.0, 5.0, 1.0, 5.0, 3.0, 2.0, 3.0]]
    assert masks.area(masks.to_rle(poly, 5, 6)) > 0
    with pytest.raises(ValueError, match="height and width"):
        masks.to_rle(poly)


def test_merge_union_and_intersection():
    a, b = rect(8, 8, 0, 4, 0, 4), rect(8, 8, 2, 6, 2, 6)
    ra, rb = masks.encode(a), masks.encode(b)
    np.testing.assert_array_equal(masks.decode(masks.merge([ra, rb])), a | b)
    np.testing.assert_array_equal(masks.decode(masks.merge([ra, rb], intersect=True)), a & b)
    with pytest.raises(ValueError, match="sizes"):
        masks.merge([ra, masks.encode(rect(8, 9, 0, 1, 0, 1))])


# --- polygons -------------------------------------------------------------------------


def test_polygons_rasterise_back_close_to_the_mask():
    m = rect(40, 60, 10, 30, 5, 45)
    polys = masks.polygons(m)
    assert len(polys) == 1 and len(polys[0]) >= 6 and len(polys[0]) % 2 == 0
    back = masks.decode(masks.to_rle(polys, 40, 60))
    assert masks.iou(back, m) > 0.9
    assert back.sum() <= m.sum()  # the outline runs through pixel centres, inside the mask


def test_polygons_one_per_component_and_degenerates_dropped():
    m = rect(30, 30, 2, 10, 2, 10) | rect(30, 30, 15, 25, 15, 28)
    m[0, 29] = True  # single pixel: a degenerate contour
    m[28, 0:6] = True  # one-pixel line: 2 points
    polys = masks.polygons(m)
    assert len(polys) == 2
    assert all(len(p) >= 6 for p in polys)
    assert masks.polygons(np.zeros((4, 4), bool)) == []
