"""DAAM: diffusion attentive attribution maps, recorded while a diffusers pipeline generates.

    from pipeline.daam import trace
    with trace(pipe) as tracer:
        out = pipe(prompts, num_images_per_prompt=2)
    maps = tracer.heat_maps()            # one HeatMap per image, in output order
    maps[0].word("teapot")               # Eq. 6 at latent resolution
    maps[0].mask("teapot", tau=0.4)      # Eq. 7 at image size

Modules: ``attention`` (maths), ``store`` (streaming aggregation), ``processor``
(swapping cross-attention processors), ``tokens`` (words <-> tokens),
``heatmap`` (the value type and its files), ``trace`` (the entry point).
"""

from pipeline.daam.heatmap import HeatMap
from pipeline.daam.tokens import (
    HeatMapLookupError,
    PromptTruncatedWarning,
    TruncatedWordError,
    UnknownWordError,
    Word,
)
from pipeline.daam.trace import Tracer, trace

__all__ = [
    "HeatMap",
    "HeatMapLookupError",
    "PromptTruncatedWarning",
    "Tracer",
    "TruncatedWordError",
    "UnknownWordError",
    "Word",
    "trace",
]
