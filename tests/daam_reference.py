"""An independent reference implementation of DAAM Eq. 6, for tests only.

It shares no code with ``pipeline.daam``: forward pre-hooks on every ``attn2``
module take the layer's inputs, diffusers' own explicit path
(``head_to_batch_dim`` + ``get_attention_scores``) gives the attention
probabilities, the layer's grid is read from the input of its parent
``Transformer2DModel`` (4-D), and every head of every step is upsampled
(bicubic) to the latent size before summing, exactly as Eq. 6 is written.
Sums are kept in float64 for the whole batch (no guidance-half selection:
tests pick rows themselves).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


class ReferenceDAAM:
    def __init__(
        self,
        unet: torch.nn.Module,
        *,
        steps: Callable[[int], bool] | None = None,
        layers: Callable[[str, tuple[int, int]], bool] | None = None,
    ) -> None:
        self.unet = unet
        self.keep_step = steps or (lambda step: True)
        self.keep_layer = layers or (lambda name, grid: True)
        self.attn2 = {name: m for name, m in unet.named_modules() if name.endswith("attn2")}
        self.parent = {name: name.split(".transformer_blocks.")[0] for name in self.attn2}
        self.grids: dict[str, tuple[int, int]] = {}
        self.step = -1
        self.latent: tuple[int, int] | None = None
        self.total: torch.Tensor | None = None  # (batch, keys, h, w) float64
        self.layers_used: set[str] = set()
        self._handles: list = []

    def __enter__(self) -> ReferenceDAAM:
        def on_unet(module, args, kwargs):
            sample = args[0] if args else kwargs["sample"]
            self.step += 1
            self.latent = tuple(sample.shape[-2:])

        self._handles.append(self.unet.register_forward_pre_hook(on_unet, with_kwargs=True))
        modules = dict(self.unet.named_modules())
        for parent in set(self.parent.values()):

            def on_parent(module, args, kwargs, parent=parent):
                hidden = args[0] if args else kwargs["hidden_states"]
                self.grids[parent] = tuple(hidden.shape[-2:])

            self._handles.append(modules[parent].register_forward_pre_hook(on_parent, with_kwargs=True))
        for name, attn in self.attn2.items():

            def on_attn(module, args, kwargs, name=name):
                self._record(name, module, args[0] if args else kwargs["hidden_states"], kwargs["encoder_hidden_states"])

            self._handles.append(attn.register_forward_pre_hook(on_attn, with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    @torch.no_grad()
    def _record(self, name: str, attn, hidden: torch.Tensor, context: torch.Tensor) -> None:
        grid = self.grids[self.parent[name]]
        if not self.keep_step(self.step) or not self.keep_layer(name, grid):
            return
        assert attn.group_norm is None and not attn.norm_cross and attn.spatial_norm is None
        batch, n_queries, _ = hidden.shape
        assert n_queries == grid[0] * grid[1]
        query = attn.head_to_batch_dim(attn.to_q(hidden))
        key = attn.head_to_batch_dim(attn.to_k(context))
        probs = attn.get_attention_scores(query, key, None)  # (batch * heads, queries, keys)
        keys = probs.shape[-1]
        probs = probs.view(batch, attn.heads, n_queries, keys).permute(0, 1, 3, 2)
        maps = probs.reshape(batch * attn.heads * keys, 1, *grid).float()
        up = F.interpolate(maps, size=self.latent, mode="bicubic", align_corners=False)
        up = up.view(batch, attn.heads, keys, *self.latent).double().sum(dim=1)
        self.total = up if self.total is None else self.total + up
        self.layers_used.add(name)


def max_normalised(x) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float64)
    return x / x.amax(dim=(-2, -1), keepdim=True)


def assert_maps_agree(maps, reference, tol: float = 1e-4) -> None:
    """Each token map, divided by its maximum, agrees with the reference's to ``tol``."""
    a, b = max_normalised(maps), max_normalised(reference)
    assert a.shape == b.shape, (a.shape, b.shape)
    worst = float((a - b).abs().max())
    assert worst <= tol, f"max difference {worst:.2e} after max-normalisation exceeds {tol}"
