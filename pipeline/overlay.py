"""Pictures people look at: heat overlays, instance drawings and per-word grids.

Headless (PIL plus matplotlib's colormaps only; no figure or GUI backend).
Images from small models are tiny (64x64), so grids and drawings upscale
small images with nearest-neighbour interpolation (pixels stay sharp and
honest) before text is drawn; heat maps are resized bicubically, as DAAM
upsamples attention.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

import cv2
import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from pipeline.masks import Normalize, normalize_heat

__all__ = ["heat_overlay", "draw_instances", "word_grid", "label_colors", "upscale"]

# distinct, readable colours (matplotlib's tab10 then tab20's lighter halves)
_PALETTE: tuple[tuple[int, int, int], ...] = tuple(
    tuple(int(round(255 * c)) for c in colormaps["tab10"](i)[:3]) for i in range(10)
) + tuple(tuple(int(round(255 * c)) for c in colormaps["tab20"](2 * i + 1)[:3]) for i in range(10))

Color = tuple[int, int, int]


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _rgb(image: Image.Image) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL.Image, got {type(image).__name__}")
    return image.convert("RGB") if image.mode != "RGB" else image.copy()


def upscale(image: Image.Image, min_side: int) -> tuple[Image.Image, int]:
    """Nearest-neighbour upscale by the smallest integer factor reaching ``min_side``.

    Returns the image and the factor (1 when it is already large enough).
    """
    factor = max(1, math.ceil(min_side / max(1, min(image.size))))
    if factor == 1:
        return image.copy(), 1
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST), factor


def _resize_heat(heat: np.ndarray, width: int, height: int) -> np.ndarray:
    arr = np.asarray(heat, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"heat map must be 2-D (H, W), got shape {arr.shape}")
    if arr.shape == (height, width):
        return arr
    # cv2 takes (width, height): the order that broke non-square maps in peer code
    return cv2.resize(arr, (width, height), interpolation=cv2.INTER_CUBIC)


def heat_overlay(
    image: Image.Image,
    heat: np.ndarray,
    alpha: float = 0.5,
    *,
    cmap: str = "jet",
    normalize: Normalize = "max",
) -> Image.Image:
    """The image with a colour-mapped heat map blended over it (same size, RGB).

    The heat map (any (H, W)) is resized bicubically to the image size,
    clamped at 0 and normalised (``normalize_heat``), so each picture uses the
    full colour range. ``alpha`` is the heat's weight: 0 shows the image, 1
    the heat only.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = _rgb(image)
    resized = _resize_heat(heat, base.width, base.height)
    norm = normalize_heat(resized, normalize)
    colour = colormaps[cmap](norm)[..., :3] * 255.0
    out = (1.0 - alpha) * np.asarray(base, dtype=np.float32) + alpha * colour
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def _stable_index(label: str) -> int:
    # md5, not hash(): Python salts str hashes per process
    return int.from_bytes(hashlib.md5(label.encode("utf-8")).digest()[:4], "big") % len(_PALETTE)


def label_colors(labels: Iterable[str]) -> dict[str, Color]:
    """A colour per distinct label: stable across pictures, distinct within one.

    Each label's preferred colour is fixed by its text; when two labels of one
    picture want the same colour, the later one (in sorted order) takes the
    next free palette entry. Past 20 labels colours repeat.
    """
    taken: set[int] = set()
    out: dict[str, Color] = {}
    for label in sorted(set(labels)):
        index = _stable_index(label)
        if len(taken) < len(_PALETTE):
            while index in taken:
                index = (index + 1) % len(_PALETTE)
        taken.add(index)
        out[label] = _PALETTE[index]
    return out


def _text_colour(fill: Color) -> Color:
    luminance = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


def draw_instances(
    image: Image.Image,
    masks: Sequence[np.ndarray],
    boxes: Sequence[Sequence[float]],
    labels: Sequence[str],
    scores: Sequence[float] | None = None,
    *,
    alpha: float = 0.45,
    min_side: int = 256,
) -> Image.Image:
    """Instances drawn over the image: translucent mask fills, box outlines, labels.

    ``masks`` are (H, W) bool arrays at the image's size, ``boxes`` COCO
    ``[x, y, w, h]`` in image pixels; each instance is coloured by its label
    (``label_colors``). Images smaller than ``min_side`` are upscaled (nearest,
    integer factor) first so the text is readable; pass ``min_side=0`` to keep
    the size. Pixels outside every mask, box outline and label keep their value.
    """
    count = len(masks)
    if len(boxes) != count or len(labels) != count or (scores is not None and len(scores) != count):
        raise ValueError(
            f"masks, boxes, labels (and scores) must have one entry per instance: got {count}, "
            f"{len(boxes)}, {len(labels)}" + ("" if scores is None else f", {len(scores)}")
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = _rgb(image)
    big, factor = upscale(base, min_side)
    pixels = np.asarray(big, dtype=np.float32).copy()
    colours = label_colors(labels)
    for i, mask in enumerate(masks):
        m = np.asarray(mask)
        if m.shape != (base.height, base.width):
            raise ValueError(f"mask {i} has shape {m.shape}, the image is {(base.height, base.width)}")
        m = np.repeat(np.repeat(m != 0, factor, axis=0), factor, axis=1)
        colour = np.array(colours[labels[i]], dtype=np.float32)
        pixels[m] = (1.0 - alpha) * pixels[m] + alpha * colour
    out = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")

    draw = ImageDraw.Draw(out)
    font = _font(max(10, min(out.size) // 24))
    width = max(1, factor // 2, min(out.size) // 200)
    for i, box in enumerate(boxes):
        if len(box) != 4:
            raise ValueError(f"box {i} must be [x, y, w, h], got {list(box)}")
        x, y, w, h = (float(v) * factor for v in box)
        if w <= 0 or h <= 0:
            continue  # an empty instance has no box to draw
        colour = colours[labels[i]]
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=width)
        text = labels[i] if scores is None else f"{labels[i]} {float(scores[i]):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        # the label sits on the box's top edge, inside the picture
        tx = min(max(0.0, x), max(0.0, out.width - tw - 4))
        ty = y - th - 4 if y - th - 4 >= 0 else y
        draw.rectangle([tx, ty, tx + tw + 4, ty + th + 4], fill=colour)
        draw.text((tx + 2 - left, ty + 2 - top), text, fill=_text_colour(colour), font=font)
    return out


def word_grid(
    image: Image.Image,
    maps: Mapping[str, np.ndarray],
    title: str | None = None,
    columns: int = 4,
    *,
    alpha: float = 0.5,
    cmap: str = "jet",
    normalize: Normalize = "max",
    min_side: int = 192,
    show_max: bool = True,
    extra_tiles: Sequence[tuple[Image.Image, str]] = (),
) -> Image.Image:
    """The image and each word's heat overlay, captioned, in a grid.

    The first tile is the image itself, then the ``extra_tiles`` (picture,
    caption), e.g. the masks drawn, resized to the tile size, then one tile per entry of ``maps``
    in its order (keys are the captions, e.g. ``"dog"`` or ``"dog#2"`` for a
    second occurrence). Each overlay is normalised on its own, so
    ``show_max`` adds the raw maximum to the caption to keep scales honest.
    """
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    base, _ = upscale(_rgb(image), min_side)
    tiles: list[tuple[Image.Image, str]] = [(base, "image")]
    tiles += [(_rgb(tile).resize(base.size, Image.Resampling.LANCZOS), caption) for tile, caption in extra_tiles]
    for word, heat in maps.items():
        caption = f"{word}  (max {float(np.max(heat)):.3g})" if show_max else str(word)
        tiles.append((heat_overlay(base, heat, alpha, cmap=cmap, normalize=normalize), caption))

    font = _font(max(11, base.width // 14))
    pad = max(4, base.width // 32)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = probe.textbbox((0, 0), "Ag", font=font)[3] + pad
    title_font = _font(max(13, base.width // 11))
    title_h = probe.textbbox((0, 0), "Ag", font=title_font)[3] + 2 * pad if title else 0

    cols = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    cell_w, cell_h = base.width + pad, base.height + line_h + pad
    canvas = Image.new("RGB", (cols * cell_w + pad, rows * cell_h + pad + title_h), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, pad), _fit(draw, title, title_font, canvas.width - 2 * pad), fill="black", font=title_font)
    for n, (tile, caption) in enumerate(tiles):
        x = pad + (n % cols) * cell_w
        y = title_h + pad + (n // cols) * cell_h
        canvas.paste(tile, (x, y))
        text = _fit(draw, caption, font, base.width)
        draw.text((x, y + base.height + pad // 2), text, fill="black", font=font)
    return canvas


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> str:
    """``text``, shortened with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
