"""The maths of DAAM: attention probabilities of one cross-attention layer, grids, upsampling.

Nothing here hooks into a model; these functions take a diffusers ``Attention``
module and the tensors its processor received, and recompute what the
processor computed, for recording only.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["cross_attention_probs", "layer_grid", "upsample_bicubic"]


def cross_attention_probs(
    attn: Any,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    temb: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(Q K^T * scale) of a diffusers ``Attention`` layer, shape (batch, heads, queries, keys), float32.

    Applies the same input transforms as diffusers' ``AttnProcessor2_0`` before
    the product (spatial norm, 4-D -> sequence, group norm, ``norm_cross`` on
    the encoder states, per-head ``norm_q``/``norm_k``, the attention mask), so
    the probabilities are those the layer's output was computed from. The
    product and softmax run in float32 whatever the model's dtype.
    """
    if getattr(attn, "spatial_norm", None) is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    if hidden_states.ndim == 4:
        batch, channels, height, width = hidden_states.shape
        hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
    batch = hidden_states.shape[0]
    n_keys = encoder_hidden_states.shape[1]

    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    if attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    if getattr(attn, "fused_projections", False) and hasattr(attn, "to_kv"):
        key = attn.to_kv(encoder_hidden_states).chunk(2, dim=-1)[0]
    else:
        key = attn.to_k(encoder_hidden_states)

    head_dim = key.shape[-1] // attn.heads
    query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
    key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
    if getattr(attn, "norm_q", None) is not None:
        query = attn.norm_q(query)
    if getattr(attn, "norm_k", None) is not None:
        key = attn.norm_k(key)

    scale = float(getattr(attn, "scale", 1.0 / math.sqrt(head_dim)))
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
    if attention_mask is not None:
        mask = attn.prepare_attention_mask(attention_mask, n_keys, batch)
        mask = mask.view(batch, attn.heads, -1, mask.shape[-1])
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.float()
    return scores.softmax(dim=-1)


def layer_grid(n_queries: int, latent_size: tuple[int, int]) -> tuple[int, int]:
    """The (h_i, w_i) grid of a layer with ``n_queries`` positions in a U-Net over ``latent_size``.

    Each U-Net level halves the grid with a stride-2 convolution (padding 1),
    i.e. h -> ceil(h / 2): the grid is (ceil(h / 2^k), ceil(w / 2^k)) for the
    level k whose product matches. Never a square root: latents need not be square.
    """
    height, width = latent_size
    h, w = height, width
    while True:
        if h * w == n_queries:
            return h, w
        if h * w < n_queries or (h == 1 and w == 1):
            raise ValueError(
                f"a cross-attention layer has {n_queries} query positions, which is no U-Net level "
                f"of a {height}x{width} latent"
            )
        h, w = -(-h // 2), -(-w // 2)


def upsample_bicubic(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic interpolation of (..., h, w) maps to ``size`` = (H, W), float32 (identity when sizes match)."""
    maps = maps.float()
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    out = F.interpolate(flat, size=tuple(size), mode="bicubic", align_corners=False)
    return out.reshape(*lead, *size)
