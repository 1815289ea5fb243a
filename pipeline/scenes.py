"""A seeded procedural scene world: captioned pictures with the exact mask of every object.

It is the training data of the embedded model and the ground truth of the
mask-quality benchmark. Every noun has its own appearance (shape and colours
no other noun uses), so that the noun itself carries what is drawn, as nouns do
in real data, and so that the objects of a *generated* picture can be found
again from the picture alone (``segment_by_appearance``).

- Nouns: sun, cloud, tree, house, ball, car, boat, flower (see ``NOUNS``).
- Adjectives that change something visible: ``small`` / ``big`` (size) and a
  colour, where the noun has colour variants (a blue or purple ball, a white or
  cyan flower); nouns with one colour may still be called by it ("a red house").
- Captions with the grammar of real prompts: determiners ("a", "an", "the",
  "one"), numerals ("two small clouds"), relations that the layout respects
  ("above", "below", "next to", "beside"), conjunctions ("a sun, a tree and a
  house"), an optional capital and final period.
- Objects never overlap (one pixel apart at least), so each mask is exactly the
  pixels painted for its object, and the background is one flat colour.

A caption belongs to the held-out ``"test"`` split when the hash of its
canonical form (lower case, no final period, every determiner spelled "a") falls
in the held-out tenth; ``sample_scene(..., split="train")`` never yields one, so
benchmark captions are never seen in training, not even with another article or
a period.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

__all__ = [
    "IMAGE_SIZE",
    "BACKGROUND",
    "NOUNS",
    "NounStyle",
    "SceneObject",
    "Scene",
    "Split",
    "split_of",
    "canonical_caption",
    "sample_scene",
    "scene_batch",
    "heldout_captions",
    "segment_by_appearance",
    "palette",
    "CaptionPhrase",
    "parse_caption",
]

IMAGE_SIZE = 64
BACKGROUND: tuple[int, int, int] = (176, 212, 238)  # light sky blue
Split = Literal["train", "test"]
HELDOUT_PERCENT = 10  # share of canonical captions reserved for the benchmark

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class NounStyle:
    """How a noun looks: its named colour variants, fixed part colours, and size."""

    noun: str
    plural: str
    colours: dict[str, RGB]  # colour adjective -> main colour (variants of the noun)
    parts: dict[str, RGB] = field(default_factory=dict)  # fixed second colours (trunk, roof, wheels)
    size: int = 16  # reference size in pixels (before the size adjective)
    aspect: float = 1.0  # width / height of the bounding box
    countable: bool = True  # may appear with a numeral ("two clouds")


# Every colour below belongs to exactly one noun (or to the background), and any
# two are at least ~70 apart in RGB, so nearest-colour classification of a
# generated picture tells the nouns apart. No noun is mid-grey: a blurred or
# half-trained picture averages to grey, which must not read as an object.
NOUNS: dict[str, NounStyle] = {
    s.noun: s
    for s in [
        NounStyle("sun", "suns", {"yellow": (250, 210, 30)}, size=20, countable=False),
        NounStyle("cloud", "clouds", {"white": (250, 250, 250)}, size=14, aspect=1.6),
        NounStyle("tree", "trees", {"green": (40, 150, 50)}, {"trunk": (120, 72, 30)}, size=22, aspect=0.75),
        NounStyle("house", "houses", {"red": (205, 40, 40)}, {"roof": (35, 35, 120)}, size=19),
        NounStyle("ball", "balls", {"blue": (40, 70, 220), "purple": (150, 50, 200)}, size=14),
        NounStyle("car", "cars", {"orange": (245, 140, 20)}, {"wheel": (15, 15, 15)}, size=13, aspect=1.8),
        NounStyle("boat", "boats", {"teal": (0, 150, 140)}, size=19, aspect=1.1),
        NounStyle("flower", "flowers", {"pink": (245, 130, 200), "cyan": (0, 210, 240)}, {"centre": (150, 20, 90)}, size=15),
    ]
}

SIZE_ADJECTIVES: dict[str, float] = {"small": 0.65, "big": 1.2}
DEFAULT_SCALE = 0.9  # no size adjective
RELATIONS = ("above", "below", "next to", "beside", "and")
NUMERALS = {2: "two", 3: "three"}
MAX_OBJECTS = 4


@dataclass(frozen=True)
class SceneObject:
    """One drawn object. Objects of one noun phrase ("two clouds") share its spans."""

    noun: str  # singular noun, e.g. "cloud"
    colour: str  # the colour variant drawn, e.g. "purple"
    adjectives: tuple[str, ...]  # adjectives of its noun phrase in caption order, e.g. ("small", "purple")
    group: int  # index of its noun phrase in the caption
    noun_span: tuple[int, int]  # [start, end) characters of the noun (plural included) in the caption
    adjective_spans: tuple[tuple[int, int], ...]  # one per adjective
    numeral_span: tuple[int, int] | None  # "two" / "three", else None
    mask: np.ndarray  # bool (H, W), exactly the object's pixels
    bbox: tuple[int, int, int, int]  # [x, y, w, h] of the mask


@dataclass(frozen=True)
class Scene:
    caption: str
    image: np.ndarray  # uint8 (H, W, 3)
    objects: tuple[SceneObject, ...]
    relation: str | None  # between the first two noun phrases, None for a single phrase

    @property
    def split(self) -> Split:
        return split_of(self.caption)

    def noun_mask(self, noun: str) -> np.ndarray:
        """Union of the masks of every object of ``noun`` (empty if there is none)."""
        out = np.zeros(self.image.shape[:2], dtype=bool)
        for obj in self.objects:
            if obj.noun == noun:
                out |= obj.mask
        return out


# ----------------------------------------------------------------------- split


_DETERMINERS = re.compile(r"\b(the|an|one)\b")


def canonical_caption(caption: str) -> str:
    """The form a caption's split is decided on: lower case, no final period, one article."""
    text = " ".join(caption.lower().strip().rstrip(".").split())
    return _DETERMINERS.sub("a", text)


def split_of(caption: str) -> Split:
    """``"test"`` for the held-out tenth of canonical captions, else ``"train"``."""
    digest = hashlib.sha1(canonical_caption(caption).encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:4], "big") % 100 < HELDOUT_PERCENT else "train"


# ------------------------------------------------------------------- rendering


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    # pixel centres, so that shapes are rasterised by point-in-shape tests
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return xs, ys


def _ellipse(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0


def _rect(xs: np.ndarray, ys: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)


def _triangle(xs: np.ndarray, ys: np.ndarray, apex: tuple[float, float], y_base: float, x_left: float, x_right: float) -> np.ndarray:
    """An upward isosceles-like triangle from ``apex`` down to a horizontal base."""
    ax, ay = apex
    t = (ys - ay) / max(y_base - ay, 1e-6)  # 0 at the apex, 1 at the base
    left = ax + t * (x_left - ax)
    right = ax + t * (x_right - ax)
    return (t >= 0) & (t <= 1) & (xs >= left) & (xs < right)


def _draw(noun: str, colour: str, box: tuple[int, int, int, int], xs: np.ndarray, ys: np.ndarray) -> list[tuple[np.ndarray, RGB]]:
    """The object's parts as (mask, colour), painted in order, inside ``box`` = (x, y, w, h)."""
    style = NOUNS[noun]
    main = style.colours[colour]
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    if noun in ("sun", "ball"):
        return [(_ellipse(xs, ys, cx, cy, w / 2, h / 2), main)]
    if noun == "cloud":
        blob = (
            _ellipse(xs, ys, x + 0.3 * w, y + 0.62 * h, 0.3 * w, 0.38 * h)
            | _ellipse(xs, ys, x + 0.55 * w, y + 0.45 * h, 0.3 * w, 0.45 * h)
            | _ellipse(xs, ys, x + 0.75 * w, y + 0.65 * h, 0.25 * w, 0.35 * h)
        )
        return [(blob & _rect(xs, ys, x, y, x + w, y + h), main)]
    if noun == "tree":
        canopy = _triangle(xs, ys, (cx, y), y + 0.75 * h, x, x + w)
        trunk = _rect(xs, ys, cx - 0.12 * w, y + 0.7 * h, cx + 0.12 * w, y + h)
        return [(trunk, style.parts["trunk"]), (canopy, main)]
    if noun == "house":
        body = _rect(xs, ys, x + 0.1 * w, y + 0.45 * h, x + 0.9 * w, y + h)
        roof = _triangle(xs, ys, (cx, y), y + 0.45 * h, x, x + w)
        return [(body, main), (roof, style.parts["roof"])]
    if noun == "car":
        body = _rect(xs, ys, x, y + 0.35 * h, x + w, y + 0.8 * h)
        cabin = _rect(xs, ys, x + 0.25 * w, y, x + 0.75 * w, y + 0.4 * h)
        r = 0.2 * h
        wheels = _ellipse(xs, ys, x + 0.25 * w, y + h - r, r, r) | _ellipse(xs, ys, x + 0.75 * w, y + h - r, r, r)
        return [(body | cabin, main), (wheels, style.parts["wheel"])]
    if noun == "boat":
        t = (ys - (y + 0.68 * h)) / (0.32 * h)  # hull: wide on top, narrower at the keel
        hull = (t >= 0) & (t <= 1) & (xs >= x + 0.2 * w * t) & (xs < x + w - 0.2 * w * t)
        sail = _triangle(xs, ys, (x + 0.55 * w, y), y + 0.62 * h, x + 0.15 * w, x + 0.55 * w)
        mast = _rect(xs, ys, x + 0.5 * w, y, x + 0.62 * w, y + 0.7 * h)
        return [(hull | sail | mast, main)]
    if noun == "flower":
        r = 0.22 * w
        petals = np.zeros_like(xs, dtype=bool)
        for k in range(5):
            angle = -np.pi / 2 + 2 * np.pi * k / 5
            petals |= _ellipse(xs, ys, cx + 0.27 * w * np.cos(angle), cy + 0.27 * h * np.sin(angle), r, r)
        centre = _ellipse(xs, ys, cx, cy, 0.17 * w, 0.17 * h)
        return [(petals | centre, main), (centre, style.parts["centre"])]
    raise KeyError(f"unknown noun {noun!r}; known: {sorted(NOUNS)}")


def _box_size(noun: str, scale: float) -> tuple[int, int]:
    style = NOUNS[noun]
    h = max(5, round(style.size * scale))
    w = max(5, round(h * style.aspect))
    return w, h


# ----------------------------------------------------------------- captions


@dataclass(frozen=True)
class _Phrase:
    noun: str
    count: int
    size_adj: str | None
    colour_adj: str | None
    colour: str  # drawn colour variant
    determiner: str  # "a", "the", "one", or a numeral


def _phrase_text(p: _Phrase) -> tuple[str, dict[str, tuple[int, int]]]:
    """The phrase's words and the spans (relative to its start) of numeral, adjectives and noun."""
    words: list[tuple[str, str]] = []
    if p.count > 1:
        words.append(("numeral", NUMERALS[p.count]))
    if p.size_adj:
        words.append(("size", p.size_adj))
    if p.colour_adj:
        words.append(("colour", p.colour_adj))
    style = NOUNS[p.noun]
    words.append(("noun", style.plural if p.count > 1 else style.noun))
    if p.count == 1:
        det = p.determiner
        if det == "a" and words[0][1][0] in "aeiou":
            det = "an"
        words.insert(0, ("det", det))
    text, spans, pos = [], {}, 0
    for role, word in words:
        spans[role] = (pos, pos + len(word))
        text.append(word)
        pos += len(word) + 1
    return " ".join(text), spans


def _sample_phrases(rng: np.random.Generator) -> tuple[list[_Phrase], str | None]:
    n_groups = int(rng.choice([1, 2, 3], p=[0.25, 0.6, 0.15]))
    nouns = [str(n) for n in rng.choice(sorted(NOUNS), size=n_groups, replace=False)]
    budget = MAX_OBJECTS - n_groups
    phrases = []
    for noun in nouns:
        style = NOUNS[noun]
        count = 1
        if style.countable and budget > 0 and rng.random() < 0.3:
            count = int(rng.integers(2, min(3, budget + 1) + 1))
            budget -= count - 1
        size_adj = str(rng.choice(["small", "big"])) if rng.random() < 0.5 else None
        colour = str(rng.choice(sorted(style.colours)))
        named = rng.random() < (0.7 if len(style.colours) > 1 else 0.3)
        det = str(rng.choice(["a", "the", "one"], p=[0.75, 0.2, 0.05]))
        phrases.append(_Phrase(noun, count, size_adj, colour if named else None, colour, det))
    relation = None
    if n_groups == 2:
        relation = str(rng.choice(RELATIONS, p=[0.25, 0.25, 0.15, 0.1, 0.25]))
    elif n_groups == 3:
        relation = "and"
    return phrases, relation


def _caption(phrases: list[_Phrase], relation: str | None, capital: bool, period: bool) -> tuple[str, list[dict[str, tuple[int, int]]]]:
    texts = [_phrase_text(p) for p in phrases]
    if len(phrases) == 1:
        joiners = [""]
    elif len(phrases) == 2:
        joiners = ["", f" {relation} "]
    else:
        joiners = ["", ", ", " and "]
    caption, spans = "", []
    for joiner, (text, rel) in zip(joiners, texts):
        caption += joiner
        spans.append({k: (a + len(caption), b + len(caption)) for k, (a, b) in rel.items()})
        caption += text
    if capital:
        caption = caption[0].upper() + caption[1:]
    if period:
        caption += "."
    return caption, spans


# ------------------------------------------------------------------- layout


def _place(rng: np.random.Generator, sizes: list[list[tuple[int, int]]], relation: str | None, size: int) -> list[list[tuple[int, int, int, int]]] | None:
    """Boxes for every object of every phrase, disjoint, respecting the relation; None on failure."""
    gap = 1
    for _ in range(200):
        side = rng.random() < 0.5  # for next to: is phrase 0 on the left?
        boxes: list[list[tuple[int, int, int, int]]] = []
        for g, group in enumerate(sizes):
            row = []
            for w, h in group:
                if w > size or h > size:
                    return None
                lo_y, hi_y = 0, size - h
                lo_x, hi_x = 0, size - w
                if relation in ("above", "below") and g < 2:
                    top = (g == 0) == (relation == "above")
                    if top:
                        hi_y = min(hi_y, int(size * 0.55) - h)
                    else:
                        lo_y = max(lo_y, int(size * 0.45))
                if relation in ("next to", "beside") and g < 2:
                    left = (g == 0) == side
                    if left:
                        hi_x = min(hi_x, int(size * 0.55) - w)
                    else:
                        lo_x = max(lo_x, int(size * 0.45))
                if hi_y < lo_y or hi_x < lo_x:
                    break
                row.append((int(rng.integers(lo_x, hi_x + 1)), int(rng.integers(lo_y, hi_y + 1)), w, h))
            boxes.append(row)
        flat = [b for row in boxes for b in row]
        if len(flat) != sum(len(g) for g in sizes):
            continue
        if any(_overlap(a, b, gap) for i, a in enumerate(flat) for b in flat[i + 1 :]):
            continue
        if relation is not None and not _respects(boxes[0], boxes[1], relation, side):
            continue
        return boxes
    return None


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw + gap and bx < ax + aw + gap and ay < by + bh + gap and by < ay + ah + gap


def _respects(first: list, second: list, relation: str, left_first: bool) -> bool:
    """Every box of ``first`` stands in ``relation`` to every box of ``second``."""
    if relation == "and":
        return True
    if relation in ("above", "below"):
        upper, lower = (first, second) if relation == "above" else (second, first)
        return max(y + h for _, y, _, h in upper) <= min(y for _, y, _, _ in lower)
    left, right = (first, second) if left_first else (second, first)
    if max(x + w for x, _, w, _ in left) > min(x for x, _, _, _ in right):
        return False
    # side by side: the two phrases' vertical centres are close
    cy = [np.mean([y + h / 2 for _, y, _, h in grp]) for grp in (first, second)]
    return abs(cy[0] - cy[1]) <= 12


# ------------------------------------------------------------------ sampling


def _rng(seed: int | np.random.Generator | tuple[int, ...]) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def sample_scene(seed: int | tuple[int, ...] | np.random.Generator, *, split: Split | None = "train", size: int = IMAGE_SIZE) -> Scene:
    """One random scene whose caption is in ``split`` (``None``: either split).

    The same ``seed`` (an int, a tuple of ints, or a numpy Generator, which is
    advanced) always gives the same scene.
    """
    rng = _rng(seed)
    xs, ys = _grid(size)
    for _ in range(1000):
        phrases, relation = _sample_phrases(rng)
        capital, period = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        caption, spans = _caption(phrases, relation, capital, period)
        if split is not None and split_of(caption) != split:
            continue
        sizes = []
        for p in phrases:
            scale = SIZE_ADJECTIVES.get(p.size_adj, DEFAULT_SCALE) if p.size_adj else DEFAULT_SCALE
            scale *= float(rng.uniform(0.9, 1.1))
            sizes.append([_box_size(p.noun, scale)] * p.count)
        boxes = _place(rng, sizes, relation, size)
        if boxes is None:
            continue
        return _render(caption, phrases, spans, boxes, relation, xs, ys, size)
    raise RuntimeError("could not lay out a scene in 1000 tries; the object sizes do not fit the image")


def _render(caption, phrases, spans, boxes, relation, xs, ys, size) -> Scene:
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    objects = []
    for g, (p, sp, row) in enumerate(zip(phrases, spans, boxes)):
        adjectives = tuple(a for a in (p.size_adj, p.colour_adj) if a)
        adj_spans = tuple(sp[k] for k in ("size", "colour") if k in sp)
        for box in row:
            mask = np.zeros((size, size), dtype=bool)
            for part, rgb in _draw(p.noun, p.colour, box, xs, ys):
                image[part] = rgb
                mask |= part
            yy, xx = np.nonzero(mask)
            bbox = (int(xx.min()), int(yy.min()), int(xx.max() - xx.min() + 1), int(yy.max() - yy.min() + 1))
            objects.append(
                SceneObject(p.noun, p.colour, adjectives, g, sp["noun"], adj_spans, sp.get("numeral"), mask, bbox)
            )
    return Scene(caption, image, tuple(objects), relation)


def scene_batch(seed: int | tuple[int, ...], n: int, *, split: Split | None = "train", size: int = IMAGE_SIZE) -> list[Scene]:
    """``n`` scenes from one seed (deterministic)."""
    rng = _rng(seed)
    return [sample_scene(rng, split=split, size=size) for _ in range(n)]


def heldout_captions(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct held-out captions (canonical forms distinct too), in sampling order."""
    rng = np.random.default_rng(seed)
    seen, out = set(), []
    for _ in range(200 * n + 1000):
        phrases, relation = _sample_phrases(rng)
        caption, _ = _caption(phrases, relation, bool(rng.random() < 0.5), bool(rng.random() < 0.5))
        key = canonical_caption(caption)
        if split_of(caption) == "test" and key not in seen:
            seen.add(key)
            out.append(caption)
            if len(out) == n:
                return out
    raise RuntimeError(f"found only {len(out)} distinct held-out captions, asked for {n}")


# --------------------------------------------------------------- recognition


def palette() -> tuple[list[str], np.ndarray]:
    """Every colour of the world: owners (noun name or ``"background"``) and RGB rows."""
    owners, colours = ["background"], [BACKGROUND]
    for style in NOUNS.values():
        for rgb in [*style.colours.values(), *style.parts.values()]:
            owners.append(style.noun)
            colours.append(rgb)
    return owners, np.asarray(colours, dtype=np.float32)


def segment_by_appearance(
    image: np.ndarray,
    noun: str,
    *,
    colour: str | None = None,
    max_distance: float = 70.0,
    max_ratio: float = 0.75,
    min_area: int = 6,
) -> np.ndarray:
    """The region of a picture where ``noun`` is drawn, found by its colours.

    Each pixel goes to the nearest colour of the world's palette (background
    included) if it lies within ``max_distance`` (RGB, Euclidean) and clearly
    nearer to it than to any other (distance ratio to the second nearest at
    most ``max_ratio``), so a generated picture whose colours are near the
    world's still segments, while washed-out pixels half-way between two
    colours (a blur between two colours) count as nothing. The
    noun's mask is the union of its colours (``colour`` restricts the main
    colour to one variant; part colours such as a tree's trunk always count),
    without connected components smaller than ``min_area`` pixels (stray
    specks). A picture without the noun gives an empty mask: a miss.
    On a clean render this is exactly the union of the noun's object masks.
    """
    if noun not in NOUNS:
        raise KeyError(f"unknown noun {noun!r}; known: {sorted(NOUNS)}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    style = NOUNS[noun]
    if colour is not None and colour not in style.colours:
        raise KeyError(f"{noun!r} has no colour {colour!r}; it has {sorted(style.colours)}")
    _, colours = palette()
    wanted_rgb = [rgb for name, rgb in style.colours.items() if colour is None or name == colour]
    wanted_rgb += list(style.parts.values())
    wanted = np.array([any(tuple(int(v) for v in c) == tuple(w) for w in wanted_rgb) for c in colours])
    pixels = image.reshape(-1, 3).astype(np.float32)
    dist = np.linalg.norm(pixels[:, None, :] - colours[None, :, :], axis=2)
    order = np.argsort(dist, axis=1)
    nearest = order[:, 0]
    rows = np.arange(len(nearest))
    d1, d2 = dist[rows, nearest], dist[rows, order[:, 1]]
    close = (d1 <= max_distance) & (d1 <= max_ratio * d2)
    mask = (wanted[nearest] & close).reshape(image.shape[:2])
    if min_area > 1 and mask.any():
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        keep = np.zeros(n, dtype=bool)
        keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
        mask = keep[labels]
    return mask


# -------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class CaptionPhrase:
    """A noun phrase of a caption of this world, as ``parse_caption`` reads it."""

    noun: str  # singular
    count: int
    noun_span: tuple[int, int]
    adjectives: tuple[tuple[str, tuple[int, int]], ...]  # (word, span), in caption order
    numeral_span: tuple[int, int] | None


_WORD = re.compile(r"[A-Za-z]+")
_PLURALS = {s.plural: s.noun for s in NOUNS.values()}
_ADJECTIVES = set(SIZE_ADJECTIVES) | {c for s in NOUNS.values() for c in s.colours}
_NUMERAL_VALUES = {v: k for k, v in NUMERALS.items()}


def parse_caption(caption: str) -> list[CaptionPhrase]:
    """The noun phrases of a caption of this world (numeral, adjectives, noun; with spans).

    Words the grammar does not know (determiners, relations, conjunctions) are
    skipped, so any caption ``sample_scene`` or ``heldout_captions`` writes parses.
    """
    phrases, adjectives, numeral = [], [], None
    for m in _WORD.finditer(caption):
        word, span = m.group().lower(), (m.start(), m.end())
        if word in _NUMERAL_VALUES:
            numeral = (word, span)
        elif word in _ADJECTIVES:
            adjectives.append((word, span))
        elif word in NOUNS or word in _PLURALS:
            count = _NUMERAL_VALUES[numeral[0]] if numeral else 1
            phrases.append(
                CaptionPhrase(NOUNS[word].noun if word in NOUNS else _PLURALS[word], count, span, tuple(adjectives),
                              numeral[1] if numeral else None)  # fmt: skip
            )
            adjectives, numeral = [], None
    return phrases
