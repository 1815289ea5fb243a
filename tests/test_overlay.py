"""pipeline.overlay: sizes, where colour changes and where it does not, stable colours."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline import overlay


def grey(width: int, height: int, value: int = 128) -> Image.Image:
    return Image.new("RGB", (width, height), (value, value, value))


def test_heat_overlay_size_alpha_and_orientation():
    image = grey(60, 30)  # non-square: (width, height) vs (height, width) matters
    heat = np.zeros((6, 12), np.float32)
    heat[0:2, 0:3] = 1.0  # hot in the top-left corner
    out = overlay.heat_overlay(image, heat, alpha=0.5)
    assert out.size == image.size and out.mode == "RGB"
    px = np.asarray(out, dtype=np.int16)
    # jet at 1.0 is dark red: the hot corner is much redder than the cold far corner
    assert px[2, 2, 0] > px[2, 2, 2] + 40
    assert px[27, 57, 2] > px[27, 57, 0] + 40
    np.testing.assert_array_equal(np.asarray(overlay.heat_overlay(image, heat, alpha=0.0)), np.asarray(image))
    with pytest.raises(ValueError, match="alpha"):
        overlay.heat_overlay(image, heat, alpha=2.0)
    with pytest.raises(ValueError, match="2-D"):
        overlay.heat_overlay(image, np.zeros((2, 3, 4)))


def test_heat_overlay_leaves_input_image_alone():
    image = grey(8, 8)
    before = np.asarray(image).copy()
    overlay.heat_overlay(image, np.ones((8, 8)), alpha=1.0)
    np.testing.assert_array_equal(np.asarray(image), before)


def test_draw_instances_changes_only_the_masked_region_and_outlines():
    image = grey(200, 120)
    mask = np.zeros((120, 200), bool)
    mask[60:100, 100:180] = True
    box = [100.0, 60.0, 80.0, 40.0]
    out = overlay.draw_instances(image, [mask], [box], ["dog"], [0.8], min_side=0)
    assert out.size == image.size
    px, base = np.asarray(out, np.int16), np.asarray(image, np.int16)
    changed = np.abs(px - base).sum(axis=2) > 0
    assert changed[70:95, 110:170].all()  # inside the mask (away from the outline)
    label_band = np.zeros_like(mask)
    label_band[30:60, 100:200] = True  # the label sits on the box's top edge, above it
    assert changed[label_band].any()
    # the outline runs inside the box, which equals the mask's bounds here
    assert not changed[~mask & ~label_band].any()
    colour = np.array(overlay.label_colors(["dog"])["dog"])
    inside = px[80, 140]
    # the fill pulls the grey towards the label's colour
    assert np.abs(inside - colour).sum() < np.abs(base[80, 140] - colour).sum()


def test_draw_instances_upscales_small_images_and_checks_lengths():
    image = grey(64, 48)
    mask = np.zeros((48, 64), bool)
    mask[10:20, 10:30] = True
    out = overlay.draw_instances(image, [mask], [[10, 10, 20, 10]], ["cat"], min_side=256)
    factor = int(np.ceil(256 / 48))
    assert out.size == (64 * factor, 48 * factor)
    # the mask lands at the scaled place
    px = np.asarray(out, np.int16)
    assert np.abs(px[15 * factor, 20 * factor] - 128).sum() > 0
    assert (px[40 * factor, 50 * factor] == 128).all()
    with pytest.raises(ValueError, match="one entry per instance"):
        overlay.draw_instances(image, [mask], [], ["cat"])
    with pytest.raises(ValueError, match="shape"):
        overlay.draw_instances(image, [np.zeros((5, 5), bool)], [[0, 0, 1, 1]], ["cat"])


def test_label_colours_stable_and_distinct():
    labels = ["dog", "cat", "frisbee", "person", "bicycle", "tree"]
    a = overlay.label_colors(labels)
    b = overlay.label_colors(list(reversed(labels)) + ["dog"])
    assert a == b
    assert len(set(a.values())) == len(labels)
    # a label keeps its colour when other labels come and go (unless they collide with it first)
    assert overlay.label_colors(["dog"])["dog"] == overlay.label_colors(["dog", "zebra"])["dog"]


def test_word_grid_layout_and_tiles():
    image = Image.fromarray(np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (64, 1, 3)))
    maps = {"dog": np.eye(8, dtype=np.float32), "park": np.ones((8, 8), np.float32), "a": np.zeros((8, 8))}
    grid = overlay.word_grid(image, maps, title="a dog in a park", columns=2, min_side=192)
    factor = int(np.ceil(192 / 64))
    tile = 64 * factor
    assert grid.mode == "RGB"
    assert grid.width >= 2 * tile and grid.width < 3 * tile  # two columns
    assert grid.height >= 2 * tile  # four tiles (image + 3 words) in two rows
    no_title = overlay.word_grid(image, maps, columns=2, min_side=192)
    assert no_title.height < grid.height
    wide = overlay.word_grid(image, maps, columns=10, min_side=192)
    assert wide.width >= 4 * tile and wide.height < 2 * tile


def test_word_grid_first_tile_is_the_upscaled_image():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    grid = np.asarray(overlay.word_grid(image, {"x": np.ones((4, 4))}, columns=2, min_side=96))
    big = np.asarray(image.resize((96, 96), Image.Resampling.NEAREST))
    # find the image tile: it is pasted whole somewhere near the top-left
    found = any(
        np.array_equal(grid[y : y + 96, x : x + 96], big) for y in range(0, 20) for x in range(0, 20)
    )
    assert found
