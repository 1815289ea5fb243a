"""Label Studio regions <-> masks and COCO boxes, and the labeling config of a run.

Formats (Label Studio's JSON, as its export and API use them):
- brush: ``{"type": "brushlabels", "value": {"format": "rle", "rle": [ints],
  "brushlabels": [label]}, "original_width": W, "original_height": H}``. The
  RLE is Label Studio's own (not COCO's): a bit-packed run-length code of the
  flattened RGBA image, H * W * 4 values. ``label_studio_sdk.converter.brush``
  encodes it (``mask2rle``, which repeats each value into the 4 channels) and
  decodes it (``decode_rle``); the mask is the alpha channel. Encoding 0/255
  and reading alpha >= 128 round-trips a mask exactly, and also reads a brush
  stroke drawn in the browser (whose edges may carry partial alpha) as the
  pixels at least half covered.
- rectangle: ``value = {"x", "y", "width", "height", "rotation"}`` in percent of
  the image size; ``rotation`` is in degrees, clockwise about (x, y).
- polygon: ``value = {"points": [[x, y], ...]}`` in percent.
COCO boxes are ``[x, y, w, h]`` in pixels; COCO polygons flat pixel lists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
from label_studio_sdk.converter import brush

__all__ = [
    "IMAGE_NAME",
    "BRUSH_NAME",
    "BOX_NAME",
    "POLYGON_NAME",
    "mask_to_brush",
    "brush_to_mask",
    "bbox_to_rect",
    "rect_to_bbox",
    "rect_to_polygon",
    "polygon_to_pixels",
    "brush_result",
    "rect_result",
    "polygon_result",
    "labeling_config",
]

# tag names in the labeling config; results name them as from_name / to_name
IMAGE_NAME = "image"
BRUSH_NAME = "mask"
BOX_NAME = "box"
POLYGON_NAME = "polygon"

# a colour per category, cycled (Label Studio otherwise gives every label the same one)
_PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
    "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075",
)  # fmt: skip


def mask_to_brush(mask: np.ndarray) -> list[int]:
    """Label Studio brush RLE of a 2-D mask (nonzero = inside)."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {arr.shape}")
    return [int(v) for v in brush.mask2rle(np.where(arr != 0, 255, 0).astype(np.uint8))]


def brush_to_mask(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """Bool (H, W) mask of a Label Studio brush RLE (alpha >= 128 is inside)."""
    flat = brush.decode_rle(bytes(int(v) for v in rle))
    if flat.size != height * width * 4:
        raise ValueError(
            f"brush RLE holds {flat.size} values, expected {height}x{width}x4 = {height * width * 4}: "
            "the region's original_width/original_height do not match its RLE"
        )
    return flat.reshape(height, width, 4)[:, :, 3] >= 128


def bbox_to_rect(bbox: Sequence[float], width: int, height: int) -> dict[str, float]:
    """A COCO pixel box as a Label Studio rectangle value (percent, no rotation)."""
    x, y, w, h = (float(v) for v in bbox)
    return {
        "x": 100.0 * x / width,
        "y": 100.0 * y / height,
        "width": 100.0 * w / width,
        "height": 100.0 * h / height,
        "rotation": 0.0,
    }


def _rect_corners(value: Mapping[str, Any], width: int, height: int) -> np.ndarray:
    x = float(value["x"]) * width / 100.0
    y = float(value["y"]) * height / 100.0
    w = float(value["width"]) * width / 100.0
    h = float(value["height"]) * height / 100.0
    theta = math.radians(float(value.get("rotation", 0.0) or 0.0))
    c, s = math.cos(theta), math.sin(theta)
    local = np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    return np.stack([x + local[:, 0] * c - local[:, 1] * s, y + local[:, 0] * s + local[:, 1] * c], axis=1)


def rect_to_bbox(value: Mapping[str, Any], width: int, height: int) -> list[float]:
    """COCO ``[x, y, w, h]`` of a rectangle value; a rotated one gives its axis-aligned hull,
    clipped to the image."""
    corners = _rect_corners(value, width, height)
    x0, y0 = np.clip(corners.min(axis=0), 0, [width, height])
    x1, y1 = np.clip(corners.max(axis=0), 0, [width, height])
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def rect_to_polygon(value: Mapping[str, Any], width: int, height: int) -> list[float]:
    """The rectangle as a flat COCO pixel polygon (its four corners)."""
    return [float(v) for v in _rect_corners(value, width, height).ravel()]


def polygon_to_pixels(value: Mapping[str, Any], width: int, height: int) -> list[float]:
    """A polygon value's points as a flat COCO pixel polygon."""
    points = value.get("points") or []
    return [float(v) for px, py in points for v in (float(px) * width / 100.0, float(py) * height / 100.0)]


def _result(
    kind: str, from_name: str, label: str, value: dict[str, Any], *, id: str, width: int, height: int,
    score: float | None,
) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {
        "id": id,
        "type": kind,
        "from_name": from_name,
        "to_name": IMAGE_NAME,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": {**value, kind: [label]},
    }
    if score is not None:
        out["score"] = float(score)
    return out


def brush_result(mask: np.ndarray, label: str, *, id: str, score: float | None = None) -> dict[str, Any]:
    """A brush region (prediction or annotation result) for ``mask``."""
    height, width = np.asarray(mask).shape
    value = {"format": "rle", "rle": mask_to_brush(mask)}
    return _result("brushlabels", BRUSH_NAME, label, value, id=id, width=width, height=height, score=score)


def rect_result(
    bbox: Sequence[float], label: str, *, id: str, width: int, height: int, score: float | None = None
) -> dict[str, Any]:
    """A rectangle region for a COCO pixel box."""
    value = bbox_to_rect(bbox, width, height)
    return _result("rectanglelabels", BOX_NAME, label, value, id=id, width=width, height=height, score=score)


def polygon_result(
    polygon: Sequence[float], label: str, *, id: str, width: int, height: int, score: float | None = None
) -> dict[str, Any]:
    """A polygon region for a flat COCO pixel polygon."""
    pts = [
        [100.0 * float(polygon[i]) / width, 100.0 * float(polygon[i + 1]) / height] for i in range(0, len(polygon), 2)
    ]
    value = {"points": pts, "closed": True}
    return _result("polygonlabels", POLYGON_NAME, label, value, id=id, width=width, height=height, score=score)


def labeling_config(categories: Sequence[Mapping[str, Any]]) -> str:
    """The labeling config XML for a run's COCO categories.

    Brush masks and rectangles (what push predicts), and polygons so that a
    reviewer may outline an object instead of painting it. Labels are the
    category names; pull maps them back to category ids.
    """
    if not categories:
        raise ValueError("a labeling config needs at least one category")
    names = [str(c["name"]) for c in sorted(categories, key=lambda c: c["id"])]
    labels = "\n".join(
        f"    <Label value={quoteattr(name)} background={quoteattr(_PALETTE[i % len(_PALETTE)])}/>"
        for i, name in enumerate(names)
    )

    def block(tag: str, name: str, extra: str = "") -> str:
        return f'  <{tag} name="{name}" toName="{IMAGE_NAME}"{extra}>\n{labels}\n  </{tag}>'

    return "\n".join(
        [
            "<View>",
            f'  <Image name="{IMAGE_NAME}" value="$image" zoom="true" zoomControl="true"/>',
            block("BrushLabels", BRUSH_NAME),
            block("RectangleLabels", BOX_NAME),
            block("PolygonLabels", POLYGON_NAME, ' strokeWidth="2"'),
            "</View>",
        ]
    )
