"""trace() agrees with an independent implementation of Eq. 6 (tests/daam_reference.py).

Each case runs one generation with both instruments attached: trace's
processors and the reference's hooks see the same forward passes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from daam_reference import ReferenceDAAM, assert_maps_agree

from pipeline.architectures import build_pipeline
from pipeline.daam import trace


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run_both(pipe, prompts, *, trace_kwargs=None, ref_kwargs=None, **call_kwargs):
    """Generate once under trace and the reference; return (heat maps, reference sums, n_images, guidance)."""
    with ReferenceDAAM(pipe.unet, **(ref_kwargs or {})) as ref, trace(pipe, **(trace_kwargs or {})) as tracer:
        pipe(prompts, generator=_generator(), output_type="latent", **call_kwargs)
    n_images = (1 if isinstance(prompts, str) else len(prompts)) * call_kwargs.get("num_images_per_prompt", 1)
    return tracer.heat_maps(), ref, n_images


def check_against_reference(maps, ref, n_images: int, guidance: bool) -> None:
    total = ref.total
    assert total.shape[0] == n_images * (2 if guidance else 1)
    cond = total[n_images:] if guidance else total
    assert len(maps) == n_images
    for i, hm in enumerate(maps):
        n = hm.maps.shape[0]
        assert n > 0
        assert hm.latent_size == tuple(cond.shape[-2:])
        assert_maps_agree(hm.maps, cond[i, 1 : 1 + n])


def test_embedded_square_with_guidance(embedded_pipe):
    maps, ref, n = run_both(embedded_pipe, "a red teapot on a wooden table", num_inference_steps=3)
    check_against_reference(maps, ref, n, guidance=True)
    # every cross-attention layer counts by default, the lowest resolution (mid block) too
    assert set(maps[0].params["layers"]) == ref.layers_used
    assert min(g[0] for g in maps[0].params["layer_grids"].values()) == min(g[0] for g in ref.grids.values())


def test_embedded_non_square_two_prompts_two_images(embedded_pipe):
    prompts = ["a cat sleeping on a sofa", "two dogs running on the beach at sunset"]
    maps, ref, n = run_both(
        embedded_pipe, prompts, num_images_per_prompt=2, height=64, width=96, num_inference_steps=3
    )
    assert n == 4
    check_against_reference(maps, ref, n, guidance=True)
    assert maps[0].latent_size == (16, 24) and maps[0].image_size == (64, 96)
    assert [m.prompt for m in maps] == [prompts[0], prompts[0], prompts[1], prompts[1]]
    assert [m.params["index_in_prompt"] for m in maps] == [0, 1, 0, 1]
    # two images of the same prompt start from different noise: their maps differ
    assert not np.allclose(maps[0].maps, maps[1].maps)


def test_embedded_guidance_off(embedded_pipe):
    prompts = ["a cat sleeping on a sofa", "a bowl of fruit"]
    maps, ref, n = run_both(
        embedded_pipe, prompts, num_images_per_prompt=2, guidance_scale=1.0, height=96, width=64, num_inference_steps=3
    )
    check_against_reference(maps, ref, n, guidance=False)
    assert maps[0].params["guidance"] is False


@pytest.fixture(scope="module")
def sd15_small():
    # the SD 1.5 layout (4 levels, 16 cross-attention layers, 8 heads) with channels / 5
    return build_pipeline("sd15", width=5, text_layers=1, sample_size=16)


def test_sd15_layout_non_square(sd15_small):
    # a 16 x 12 latent: the levels are 16x12, 8x6, 4x3 and 2x2 (ceil), never a square root
    maps, ref, n = run_both(sd15_small, ["a photo of a teapot", "a dog"], height=128, width=96, num_inference_steps=2)
    check_against_reference(maps, ref, n, guidance=True)
    grids = {tuple(g) for g in maps[0].params["layer_grids"].values()}
    assert grids == {(16, 12), (8, 6), (4, 3), (2, 2)}
    assert len(maps[0].params["layers"]) == 16


def test_sd15_layout_guidance_off_images_per_prompt(sd15_small):
    maps, ref, n = run_both(
        sd15_small, "a teapot and a cup", num_images_per_prompt=2, guidance_scale=1.0, num_inference_steps=2
    )
    check_against_reference(maps, ref, n, guidance=False)


def test_sd2_v_prediction_layout():
    pipe = build_pipeline("sd2", width=5, text_layers=1, sample_size=16)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.unet.config.use_linear_projection
    maps, ref, n = run_both(pipe, "a photo of a teapot", num_inference_steps=2)
    check_against_reference(maps, ref, n, guidance=True)


def test_sdxl_layout():
    # two text encoders, added conditioning, 1/2/10 transformer layers per block: 70 cross-attention layers
    pipe = build_pipeline("sdxl", width=10, text_width=8, text_layers=2, sample_size=16)
    maps, ref, n = run_both(pipe, ["a photo of a teapot", "a cat"], num_inference_steps=2)
    check_against_reference(maps, ref, n, guidance=True)
    assert len(maps[0].params["layers"]) == 70


def test_step_window_and_layer_filters_match_reference(embedded_pipe):
    steps = 4
    cases = [
        ({"first_steps": 1}, {"steps": lambda s: s < 1}),
        ({"last_steps": 2}, {"steps": lambda s: s >= steps - 2}),
        ({"step_range": (1, 3)}, {"steps": lambda s: 1 <= s < 3}),
        ({"resolutions": [8]}, {"layers": lambda name, grid: grid[0] == 8}),
        ({"layers": ["down_blocks"]}, {"layers": lambda name, grid: name.startswith("down_blocks")}),
    ]
    for trace_kwargs, ref_kwargs in cases:
        maps, ref, n = run_both(
            embedded_pipe, "a teapot", trace_kwargs=trace_kwargs, ref_kwargs=ref_kwargs, num_inference_steps=steps
        )
        check_against_reference(maps, ref, n, guidance=True)
        assert set(maps[0].params["layers"]) == ref.layers_used, trace_kwargs
