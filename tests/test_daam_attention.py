"""The maths helpers: attention probabilities a layer's output is made of, grids, upsampling."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention

from pipeline.daam.attention import cross_attention_probs, layer_grid, upsample_bicubic


def output_from_probs(attn: Attention, probs: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Rebuild the layer's output from the probabilities: to_out(probs @ V), heads merged."""
    if attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    value = attn.to_v(context)
    batch, keys, inner = value.shape
    value = value.view(batch, keys, attn.heads, inner // attn.heads).transpose(1, 2)
    mixed = (probs @ value).transpose(1, 2).reshape(batch, -1, inner)
    return attn.to_out[1](attn.to_out[0](mixed))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"norm_num_groups": 4},  # group norm on the queries' input
        {"cross_attention_norm": "layer_norm"},  # norm_cross on the encoder states
    ],
)
@pytest.mark.parametrize("masked", [False, True])
def test_probabilities_are_those_the_output_is_made_of(options, masked):
    torch.manual_seed(0)
    attn = Attention(query_dim=16, cross_attention_dim=12, heads=2, dim_head=8, **options).eval()
    hidden, context = torch.randn(3, 20, 16), torch.randn(3, 7, 12)
    mask = None
    if masked:  # additive bias (batch, 1, keys), as the U-Net passes encoder_attention_mask
        mask = torch.zeros(3, 1, 7)
        mask[:, :, 5:] = -10000.0
    with torch.no_grad():
        probs = cross_attention_probs(attn, hidden, context, mask)
        expected = attn(hidden, encoder_hidden_states=context, attention_mask=mask)
        rebuilt = output_from_probs(attn, probs, context)
    assert probs.shape == (3, 2, 20, 7) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 2, 20))
    torch.testing.assert_close(rebuilt, expected, rtol=1e-5, atol=1e-5)
    if masked:
        assert float(probs[..., 5:].max()) < 1e-6


def test_half_precision_inputs_give_float32_probabilities():
    attn = Attention(query_dim=16, cross_attention_dim=12, heads=2, dim_head=8).to(torch.bfloat16)
    probs = cross_attention_probs(attn, torch.randn(1, 4, 16, dtype=torch.bfloat16), torch.randn(1, 7, 12, dtype=torch.bfloat16))
    assert probs.dtype == torch.float32


@pytest.mark.parametrize(
    ("latent", "expected"),
    [
        ((64, 64), [(64, 64), (32, 32), (16, 16), (8, 8)]),
        ((16, 24), [(16, 24), (8, 12), (4, 6), (2, 3)]),
        ((16, 12), [(16, 12), (8, 6), (4, 3), (2, 2)]),  # odd sides round up, like a stride-2 conv
        ((12, 20), [(12, 20), (6, 10), (3, 5), (2, 3)]),
    ],
)
def test_layer_grid_follows_the_unet_levels(latent, expected):
    for grid in expected:
        assert layer_grid(grid[0] * grid[1], latent) == grid
    with pytest.raises(ValueError, match="no U-Net level"):
        layer_grid(7, latent)


def test_upsample_is_bicubic_and_identity_at_the_same_size():
    maps = torch.rand(3, 4, 6)
    same = upsample_bicubic(maps, (4, 6))
    assert torch.equal(same, maps)
    up = upsample_bicubic(maps, (8, 12))
    ref = torch.nn.functional.interpolate(maps[:, None], size=(8, 12), mode="bicubic", align_corners=False)[:, 0]
    torch.testing.assert_close(up, ref)
    # interpolation is linear: upsampling a sum is the sum of the upsampled maps (Eq. 6 streaming)
    torch.testing.assert_close(upsample_bicubic(maps.sum(0), (8, 12)), up.sum(0), rtol=1e-5, atol=1e-5)
