"""Streaming aggregation of cross-attention for one pipeline call.

Per layer, a running float32 sum over steps and heads at the layer's own
(h_i, w_i) grid, one row per generated image. Bicubic interpolation is linear,
so upsampling each layer's sum once at the end equals Eq. 6's sum of per-step
upsampled maps; the state is the same size after 2 steps or 2000.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pipeline.daam.attention import layer_grid, upsample_bicubic
from pipeline.daam.tokens import TokenAlignment

__all__ = ["StepWindow", "CallRecord"]


@dataclass(frozen=True)
class StepWindow:
    """Which denoising steps count: the first n, the last n, a [start, stop) range, or all."""

    first: int | None = None
    last: int | None = None
    range: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("first", "last", "range") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of first_steps, last_steps, step_range (got {given})")
        for key in ("first", "last"):
            v = getattr(self, key)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{key}_steps must be a positive integer, got {v!r}")
        if self.range is not None:
            start, stop = self.range
            if not (0 <= start < stop):
                raise ValueError(f"step_range must be [start, stop) with 0 <= start < stop, got {self.range!r}")

    def contains(self, step: int, total: int | None) -> bool:
        if self.first is not None:
            return step < self.first
        if self.last is not None:
            if total is None:
                raise RuntimeError(
                    "last_steps needs the number of denoising steps, but the pipeline's scheduler.set_timesteps "
                    "was not seen; use first_steps or step_range instead"
                )
            return step >= total - self.last
        if self.range is not None:
            return self.range[0] <= step < self.range[1]
        return True


@dataclass
class CallRecord:
    """Everything recorded during one pipeline call (one ``encode_prompt``)."""

    alignments: list[TokenAlignment] | None  # one per prompt; None when only prompt_embeds were given
    n_images: int  # images generated (prompts x images per prompt)
    images_per_prompt: int
    guidance: bool  # classifier-free guidance batch: [uncond..., cond...]
    total_steps: int | None = None
    step: int = -1  # index of the U-Net call in progress
    latent_size: tuple[int, int] | None = None
    sums: dict[str, torch.Tensor] = field(default_factory=dict)  # layer -> (n_images, h_i*w_i, keys)
    grids: dict[str, tuple[int, int]] = field(default_factory=dict)
    first_step: int | None = None  # first and last step that was recorded (the window is contiguous)
    last_step: int | None = None
    per_step: bool = False
    step_acc: torch.Tensor | None = None  # this step's maps at latent size (n_images, keys, h, w)
    step_maps: list[list[torch.Tensor]] = field(default_factory=list)  # per image, per step (kept, h, w) f16
    step_indices: list[int] = field(default_factory=list)

    def batch_rows(self, batch: int) -> slice:
        """The rows of a U-Net batch that carry the prompts (the conditional half under guidance)."""
        expected = self.n_images * (2 if self.guidance else 1)
        if batch != expected:
            raise RuntimeError(
                f"cross-attention batch of {batch}, expected {expected} ({self.n_images} images"
                f"{', x2 for guidance' if self.guidance else ''}); this pipeline batches differently"
            )
        return slice(self.n_images, 2 * self.n_images) if self.guidance else slice(0, self.n_images)

    def begin_step(self, latent_size: tuple[int, int]) -> None:
        self.flush_step()
        self.step += 1
        self.latent_size = latent_size

    def add(self, layer: str, probs: torch.Tensor, grid: tuple[int, int] | None) -> None:
        """Add one layer's attention probabilities (n_images, heads, queries, keys), summed over heads."""
        assert self.latent_size is not None  # set by begin_step
        per_image = probs.sum(dim=1)
        if grid is None:
            grid = layer_grid(per_image.shape[1], self.latent_size)
        self.grids[layer] = grid
        if layer in self.sums:
            self.sums[layer] += per_image
        else:
            self.sums[layer] = per_image.clone()
        self.first_step = self.step if self.first_step is None else self.first_step
        self.last_step = self.step
        if self.per_step:
            up = _to_latent(per_image, grid, self.latent_size)
            self.step_acc = up if self.step_acc is None else self.step_acc + up

    def flush_step(self) -> None:
        """Move this step's per-step maps (if any) to float16 storage, prompt tokens only."""
        if self.step_acc is None:
            return
        if not self.step_maps:
            self.step_maps = [[] for _ in range(self.n_images)]
        for i in range(self.n_images):
            first, n_kept = self.token_rows(i)
            self.step_maps[i].append(self.step_acc[i, first : first + n_kept].to(torch.float16))
        self.step_indices.append(self.step)
        self.step_acc = None

    def alignment(self, image: int) -> TokenAlignment:
        if self.alignments is None:
            raise ValueError("heat maps need the prompt text; call the pipeline with prompt=..., not prompt_embeds")
        return self.alignments[image // self.images_per_prompt]

    def token_rows(self, image: int) -> tuple[int, int]:
        """(first key position, number of kept prompt tokens) of an image's prompt."""
        a = self.alignment(image)
        return a.first_position, a.n_kept

    def latent_maps(self) -> torch.Tensor:
        """Eq. 6 at latent size: (n_images, keys, h, w), each layer's sum upsampled once."""
        assert self.latent_size is not None
        total = None
        for layer, acc in self.sums.items():
            up = _to_latent(acc, self.grids[layer], self.latent_size)
            total = up if total is None else total + up
        if total is None:
            raise ValueError("no cross-attention was recorded (no step in the window, or no layer matched)")
        return total

    def nbytes(self) -> int:
        """Bytes of tensors held (the step-independent sums, plus per-step maps when kept)."""
        n = sum(t.numel() * t.element_size() for t in self.sums.values())
        if self.step_acc is not None:
            n += self.step_acc.numel() * self.step_acc.element_size()
        n += sum(t.numel() * t.element_size() for image in self.step_maps for t in image)
        return n


def _to_latent(per_image: torch.Tensor, grid: tuple[int, int], latent_size: tuple[int, int]) -> torch.Tensor:
    """(n, h_i*w_i, keys) -> (n, keys, h, w) bicubic at latent size."""
    n, _, keys = per_image.shape
    maps = per_image.transpose(1, 2).reshape(n, keys, *grid)
    return upsample_bicubic(maps, latent_size)
