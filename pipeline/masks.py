"""Heat maps to binary masks and instances (small functions over numpy arrays).

Glossary of formats used across daamset (as in pycocotools):
- heat map: float32 array (H, W), non-negative DAAM values (bicubic undershoot
  may leave small negatives; they are clamped at 0 before thresholding).
- mask: bool array (H, W), True inside.
- RLE: pycocotools compressed RLE ``{"size": [H, W], "counts": str}``
  (column-major runs; functions here also accept bytes counts and
  uncompressed list counts, and always return str counts).
- bbox: ``[x, y, w, h]`` in pixels, float.
- polygon: flat ``[x1, y1, x2, y2, ...]`` in pixels.
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
import pycocotools.mask as mask_utils

Normalize = Literal["max", "minmax"]

__all__ = [
    "Normalize",
    "normalize_heat",
    "binary_mask",
    "split_instances",
    "encode",
    "decode",
    "to_rle",
    "area",
    "bbox",
    "merge",
    "polygons",
    "instance_score",
    "iou",
]


def normalize_heat(heat: np.ndarray, normalize: Normalize = "max") -> np.ndarray:
    """Scale a heat map to [0, 1].

    ``"max"``: heat / max (Eq. 7 of the DAAM paper thresholds this at tau).
    ``"minmax"``: (heat - min) / (max - min), as the anchor's code does.
    Negative values (bicubic undershoot) are clamped at 0 first. A map that is
    zero everywhere (or flat, for minmax) normalises to zeros.
    """
    heat = np.clip(np.asarray(heat, dtype=np.float32), 0.0, None)
    if normalize == "max":
        top = float(heat.max()) if heat.size else 0.0
        return heat / top if top > 0 else np.zeros_like(heat)
    if normalize == "minmax":
        low, top = (float(heat.min()), float(heat.max())) if heat.size else (0.0, 0.0)
        return (heat - low) / (top - low) if top > low else np.zeros_like(heat)
    raise ValueError(f"normalize must be 'max' or 'minmax', got {normalize!r}")


def binary_mask(heat: np.ndarray, tau: float = 0.4, normalize: Normalize = "max") -> np.ndarray:
    """Eq. 7: True where the normalised heat reaches tau.

    ``"max"`` keeps ``heat >= tau * max(heat)`` (the paper's equation);
    ``"minmax"`` keeps ``(heat - min) / (max - min) > tau`` (the anchor's code).
    An all-zero map gives an empty mask.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1], got {tau}")
    norm = normalize_heat(heat, normalize)
    if not norm.any():
        return np.zeros(norm.shape, dtype=bool)
    return norm >= tau if normalize == "max" else norm > tau


def _as_bool_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    """A 2-D bool view/copy of ``mask`` (any dtype; non-zero is inside)."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {arr.shape}")
    return arr if arr.dtype == bool else arr != 0


def split_instances(mask: np.ndarray, min_area: int = 0) -> list[np.ndarray]:
    """Split a mask into its connected components (8-connectivity).

    Components smaller than ``min_area`` pixels are dropped. The result is
    sorted by descending area, ties broken by the position of each
    component's first pixel in row-major order, so the order (and therefore
    ``instance_index`` in the run's tables) never depends on OpenCV's
    labelling order.
    """
    if min_area < 0:
        raise ValueError(f"min_area must be >= 0, got {min_area}")
    binary = _as_bool_mask(mask)
    if not binary.any():
        return []
    count, labels = cv2.connectedComponents(binary.astype(np.uint8), connectivity=8)
    flat = labels.ravel()
    # first occurrence (row-major) and size of every label; label 0 is background
    ids, first, sizes = np.unique(flat, return_index=True, return_counts=True)
    keep = [(int(s), int(f), int(i)) for i, f, s in zip(ids, first, sizes) if i != 0 and s >= min_area]
    keep.sort(key=lambda t: (-t[0], t[1]))
    return [labels == i for _, _, i in keep]


def encode(mask: np.ndarray) -> dict[str, Any] | list[dict[str, Any]]:
    """COCO compressed RLE of a mask, with ``counts`` as ``str`` (JSON-ready).

    As in pycocotools: a 2-D (H, W) mask gives one RLE dict; a 3-D (H, W, N)
    stack gives a list of N dicts. The input is not modified (a Fortran-order
    uint8 copy is encoded).
    """
    arr = np.asarray(mask)
    if arr.ndim not in (2, 3):
        raise ValueError(f"mask must be (H, W) or (H, W, N), got shape {arr.shape}")
    data = np.asfortranarray(arr != 0, dtype=np.uint8)
    if arr.ndim == 2:
        return _str_counts(mask_utils.encode(data))
    return [_str_counts(r) for r in mask_utils.encode(data)]


def _str_counts(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def to_rle(segmentation: Any, height: int | None = None, width: int | None = None) -> dict[str, Any]:
    """Any COCO segmentation as one compressed RLE (``counts`` as ``str``).

    Accepts a compressed RLE (``counts`` str or bytes), an uncompressed RLE
    (``counts`` a list of ints), or polygons ``[[x1, y1, ...], ...]`` (merged
    into one mask; these need ``height`` and ``width``; polygons of fewer than
    3 points enclose nothing and are skipped). Returns a new dict.
    """
    if isinstance(segmentation, dict):
        if "size" not in segmentation or "counts" not in segmentation:
            raise ValueError(f"RLE must have 'size' and 'counts', got keys {sorted(segmentation)}")
        h, w = (int(v) for v in segmentation["size"])
        if isinstance(segmentation["counts"], list):
            return _str_counts(mask_utils.frPyObjects(dict(segmentation), h, w))
        return _str_counts(segmentation)
    if isinstance(segmentation, list):
        if height is None or width is None:
            raise ValueError("polygon segmentation needs the image height and width")
        polys = [list(map(float, p)) for p in segmentation if len(p) >= 6]
        if not polys:
            return encode(np.zeros((int(height), int(width)), dtype=bool))  # type: ignore[return-value]
        return _str_counts(mask_utils.merge(mask_utils.frPyObjects(polys, int(height), int(width))))
    raise ValueError(f"segmentation must be an RLE dict or a list of polygons, got {type(segmentation).__name__}")


def _c_rles(rles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """RLE dicts in the form pycocotools' C functions take (compressed, fresh dicts)."""
    return [to_rle(r) for r in rles]


def decode(rle: dict[str, Any] | list[dict[str, Any]]) -> np.ndarray:
    """Bool mask from an RLE: (H, W) for one dict, (H, W, N) for a list."""
    if isinstance(rle, list):
        if not rle:
            raise ValueError("decode needs at least one RLE (the size of an empty stack is unknown)")
        return mask_utils.decode(_c_rles(rle)).astype(bool)
    return mask_utils.decode(to_rle(rle)).astype(bool)


def area(rle: dict[str, Any] | list[dict[str, Any]]) -> int | list[int]:
    """Pixel count: an ``int`` for one RLE, a list of ints for a list."""
    if isinstance(rle, list):
        return [int(a) for a in mask_utils.area(_c_rles(rle))] if rle else []
    return int(mask_utils.area(to_rle(rle)))


def bbox(rle: dict[str, Any] | list[dict[str, Any]]) -> list[float] | list[list[float]]:
    """Tight ``[x, y, w, h]`` box (pycocotools' toBbox); ``[0, 0, 0, 0]`` when empty.

    One RLE gives one box; a list gives a list of boxes.
    """
    if isinstance(rle, list):
        return [[float(v) for v in b] for b in mask_utils.toBbox(_c_rles(rle))] if rle else []
    return [float(v) for v in mask_utils.toBbox(to_rle(rle))]


def merge(rles: list[dict[str, Any]], intersect: bool = False) -> dict[str, Any]:
    """Union (or intersection) of RLEs of one size, computed on the RLEs."""
    if not rles:
        raise ValueError("merge needs at least one RLE")
    sizes = {tuple(int(v) for v in r["size"]) for r in rles}
    if len(sizes) != 1:
        raise ValueError(f"cannot merge RLEs of different sizes {sorted(sizes)}")
    return _str_counts(mask_utils.merge(_c_rles(rles), intersect=intersect))


def polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` of a mask's outer contours.

    OpenCV returns integer pixel indices; 0.5 is added so vertices sit at pixel
    centres in COCO's coordinate frame (where pixel (0, 0) spans [0, 1)).
    Contours with fewer than 3 points (single pixels, one-pixel lines) are
    dropped: they enclose no area. Holes are not represented (COCO polygons
    cannot express them); use the RLE when exactness matters.
    """
    binary = _as_bool_mask(mask)
    if not binary.any():
        return []
    contours, _ = cv2.findContours(binary.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out: list[list[float]] = []
    for contour in contours:
        points = contour.reshape(-1, 2)
        if len(points) < 3:
            continue
        out.append([float(v) + 0.5 for v in points.ravel()])
    return out


def instance_score(norm_heat: np.ndarray, mask: np.ndarray) -> float:
    """Mean normalised heat inside the mask (0.0 for an empty mask)."""
    heat = np.asarray(norm_heat)
    binary = _as_bool_mask(mask)
    if heat.shape != binary.shape:
        raise ValueError(f"heat shape {heat.shape} differs from mask shape {binary.shape}")
    return float(heat[binary].mean()) if binary.any() else 0.0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks; 0.0 when both are empty."""
    ma, mb = _as_bool_mask(a, "a"), _as_bool_mask(b, "b")
    if ma.shape != mb.shape:
        raise ValueError(f"mask shapes differ: {ma.shape} vs {mb.shape}")
    union = int(np.count_nonzero(ma | mb))
    return float(np.count_nonzero(ma & mb)) / union if union else 0.0
