"""A quick look without a dataset run: a few prompts -> images, heat maps, pictures.

``daamset maps "a cat and a dog" --out DIR`` writes, per image, the PNG, its
heat maps (safetensors, loadable with ``HeatMap.load``) and one picture with
every word's map over the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from pipeline.atomic import atomic_path
from pipeline.daam import trace
from pipeline.models import load_pipeline
from pipeline.overlay import word_grid

__all__ = ["write_word_maps"]


def write_word_maps(
    prompts: Sequence[str],
    out: str | Path,
    *,
    model: str = "embedded",
    steps: int = 20,
    seed: int = 0,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
) -> list[Path]:
    """Generate one image per prompt and write image, heat maps and word-map picture."""
    out = Path(out)
    pipe = load_pipeline(model)
    generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(len(prompts))]
    with trace(pipe) as tracer:
        images = pipe(
            list(prompts),
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=generators,
            height=height,
            width=width,
        ).images
    written: list[Path] = []
    for i, (image, heat_map) in enumerate(zip(images, tracer.heat_maps(), strict=True)):
        size = (image.height, image.width)
        maps = {
            w.text if w.occurrence == 0 else f"{w.text} ({w.occurrence + 1})": heat_map.upsampled(
                heat_map.span(w.start, w.end), size=size
            )
            for w in heat_map.words
            if not w.truncated
        }
        targets = (out / f"{i:03d}.png", out / f"{i:03d}.safetensors", out / f"{i:03d}_words.png")
        with atomic_path(targets[0]) as tmp:
            image.save(tmp, format="PNG")
        with atomic_path(targets[1]) as tmp:
            heat_map.save(tmp)
        with atomic_path(targets[2]) as tmp:
            word_grid(image, maps, title=heat_map.prompt).save(tmp, format="PNG")
        written += targets
    return written
