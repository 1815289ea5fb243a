"""``HeatMap``: the DAAM maps of one generated image, per token, with lookups by word or span.

A value type: it holds numpy arrays and metadata, nothing of the model. Maps
are kept at latent resolution (Eq. 6 summed over steps, layers and heads);
``upsampled`` and ``mask`` bring them to image size. Saved as safetensors
(float16 arrays, JSON metadata in the header), never pickled.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from pipeline.atomic import atomic_path
from pipeline.daam.attention import upsample_bicubic
from pipeline.daam.tokens import TokenAlignment, TruncatedWordError, UnknownWordError, Word, split_words
from pipeline.masks import Normalize, binary_mask

__all__ = ["HeatMap", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_META_KEY = "daamset.heatmap"


@dataclass(frozen=True, eq=False)
class HeatMap:
    """DAAM heat maps of one image.

    ``maps[j]`` is token j's map (float32, latent resolution); tokens exclude
    BOS/EOS/padding and stop at the text encoder's limit. A word made of
    several tokens gets the **mean** of its tokens' maps. ``params`` holds the
    generation parameters and which layers/steps were summed.
    """

    prompt: str
    token_spans: tuple[tuple[int, int], ...]  # character span of every token the prompt needed
    maps: np.ndarray  # (n_kept_tokens, h, w) float32
    image_size: tuple[int, int]  # (H, W) of the generated image
    params: dict[str, Any] = field(default_factory=dict)
    step_maps: np.ndarray | None = None  # (steps, n_kept_tokens, h, w) float16, per_step=True only
    step_indices: tuple[int, ...] = ()  # the denoising step of each row of step_maps

    def __post_init__(self) -> None:
        if self.maps.ndim != 3:
            raise ValueError(f"maps must be (tokens, h, w), got shape {self.maps.shape}")
        if self.maps.shape[0] > len(self.token_spans):
            raise ValueError(f"{self.maps.shape[0]} maps for {len(self.token_spans)} tokens")

    # --- tokens and words -------------------------------------------------------------
    @functools.cached_property
    def _alignment(self) -> TokenAlignment:
        return TokenAlignment(self.prompt, tuple(self.token_spans), int(self.maps.shape[0]))

    @property
    def tokens(self) -> tuple[str, ...]:
        """The tokens that reached the text encoder, each as the piece of the prompt it covers."""
        return self._alignment.tokens

    @property
    def n_prompt_tokens(self) -> int:
        """Tokens the prompt needed (may exceed the limit)."""
        return len(self.token_spans)

    @property
    def truncated(self) -> bool:
        return self._alignment.truncated

    @functools.cached_property
    def words(self) -> tuple[Word, ...]:
        return tuple(self._alignment.words())

    @property
    def missing_words(self) -> tuple[Word, ...]:
        """Words past the text encoder's token limit (no maps)."""
        return tuple(w for w in self.words if w.truncated)

    @property
    def latent_size(self) -> tuple[int, int]:
        return int(self.maps.shape[1]), int(self.maps.shape[2])

    def token_map(self, index: int) -> np.ndarray:
        """The map of token ``index`` (float32, latent resolution)."""
        return self.maps[index]

    def _tokens_map(self, tokens: tuple[int, ...], what: str) -> np.ndarray:
        if not tokens:
            raise UnknownWordError(f"{what} covers no token of {self.prompt!r}")
        if any(t >= self.maps.shape[0] for t in tokens):
            raise TruncatedWordError(
                f"{what} lies past the text encoder's limit of {self.maps.shape[0]} tokens "
                f"(the prompt needs {self.n_prompt_tokens}); it has no heat map"
            )
        return self.maps[list(tokens)].mean(axis=0)

    def word(self, word: str, occurrence: int = 0) -> np.ndarray:
        """DAAM map of ``word`` (case-insensitive) at latent resolution, float32.

        ``occurrence`` picks among repeats (0 = first). A word of several tokens
        gets the mean of their maps; a phrase ("hot dog") the mean over all its
        words' tokens.
        """
        return self._tokens_map(self._find(word, occurrence), f"word {word!r} (occurrence {occurrence})")

    def span(self, start: int, end: int) -> np.ndarray:
        """Mean map of the tokens overlapping characters [start, end) of the prompt."""
        tokens = self._alignment.span_tokens(start, end)
        if not tokens:
            raise UnknownWordError(f"no token overlaps characters [{start}, {end}) of {self.prompt!r}")
        return self._tokens_map(tokens, f"span [{start}, {end}) {self.prompt[start:end]!r}")

    def _find(self, query: str, occurrence: int) -> tuple[int, ...]:
        pieces = [p.lower() for p, _, _ in split_words(query)]
        words = self.words
        if not pieces:
            raise UnknownWordError(f"{query!r} contains no word")
        matches = [
            words[i : i + len(pieces)]
            for i in range(len(words) - len(pieces) + 1)
            if [w.text.lower() for w in words[i : i + len(pieces)]] == pieces
        ]
        if not matches:
            raise UnknownWordError(
                f"{query!r} is not a word of the prompt {self.prompt!r}; its words are "
                f"{[w.text for w in words]}"
            )
        if not 0 <= occurrence < len(matches):
            raise UnknownWordError(f"{query!r} occurs {len(matches)} time(s) in {self.prompt!r}; no occurrence {occurrence}")
        return tuple(t for w in matches[occurrence] for t in w.tokens)

    # --- image-size maps and masks --------------------------------------------------------
    def upsampled(
        self, word: str | np.ndarray, size: tuple[int, int] | None = None, occurrence: int = 0
    ) -> np.ndarray:
        """Bicubic upsampling of a word's map (or of a given latent map) to ``size`` = (H, W).

        ``size`` defaults to the image size. Bicubic can undershoot below 0.
        """
        heat = self.word(word, occurrence) if isinstance(word, str) else np.asarray(word, dtype=np.float32)
        size = tuple(size) if size is not None else self.image_size
        return upsample_bicubic(torch.from_numpy(np.ascontiguousarray(heat)), size).numpy()

    def mask(
        self,
        word: str | np.ndarray,
        tau: float = 0.4,
        normalize: Normalize = "max",
        size: tuple[int, int] | None = None,
        occurrence: int = 0,
    ) -> np.ndarray:
        """Binary mask (Eq. 7) of a word at ``size`` (default: the image size), bool (H, W)."""
        return binary_mask(self.upsampled(word, size, occurrence), tau=tau, normalize=normalize)

    def with_params(self, **params: Any) -> HeatMap:
        """A copy with extra generation parameters (e.g. the seed) recorded."""
        return dataclasses.replace(self, params={**self.params, **params})

    # --- files ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a safetensors file: float16 maps (+ step maps) and JSON metadata. Atomic."""
        tensors = {"maps": np.ascontiguousarray(self.maps, dtype=np.float16)}
        if self.step_maps is not None:
            tensors["step_maps"] = np.ascontiguousarray(self.step_maps, dtype=np.float16)
        meta = {
            "format_version": FORMAT_VERSION,
            "prompt": self.prompt,
            "tokens": list(self.tokens),
            "token_spans": [list(s) for s in self.token_spans],
            "n_prompt_tokens": self.n_prompt_tokens,
            "truncated": self.truncated,
            "image_size": list(self.image_size),
            "latent_size": list(self.latent_size),
            "step_indices": list(self.step_indices),
            "params": self.params,
        }
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta, ensure_ascii=False)})
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HeatMap:
        """Read a file written by ``save`` (maps come back as float32 of the stored float16)."""
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
            if _META_KEY not in header:
                raise ValueError(f"{path}: not a daamset heat map file (no {_META_KEY!r} metadata)")
            meta = json.loads(header[_META_KEY])
            if meta.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"{path}: heat map format {meta.get('format_version')}, expected {FORMAT_VERSION}")
            maps = f.get_tensor("maps").astype(np.float32)
            step_maps = f.get_tensor("step_maps") if "step_maps" in f.keys() else None
        return cls(
            prompt=meta["prompt"],
            token_spans=tuple(tuple(s) for s in meta["token_spans"]),
            maps=maps,
            image_size=tuple(meta["image_size"]),
            params=meta["params"],
            step_maps=step_maps,
            step_indices=tuple(meta["step_indices"]),
        )
