"""Hooking: swap the processors of cross-attention layers for recording wrappers, and back.

The wrapper calls the layer's original processor unchanged, so the model's
output (fused ``scaled_dot_product_attention`` included) is exactly what it
would be without tracing; the attention probabilities are recomputed on the
side from the same inputs (``attention.cross_attention_probs``) and handed to
a recorder.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch

__all__ = ["Recorder", "RecordingProcessor", "cross_attention_layers", "cross_attention_modules", "recording_processors"]


class Recorder(Protocol):
    def record(
        self,
        layer: str,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        temb: torch.Tensor | None,
    ) -> None: ...


class RecordingProcessor:
    """Runs the original processor, then lets ``recorder`` look at the layer's inputs."""

    def __init__(self, original: Callable[..., torch.Tensor], layer: str, recorder: Recorder) -> None:
        self.original = original
        self.layer = layer
        self.recorder = recorder
        # diffusers' Attention.forward keeps only the keyword arguments named in
        # inspect.signature(processor.__call__); expose the original's signature
        # so exactly the same arguments reach the original through us.
        try:
            signature = inspect.signature(original)
        except (TypeError, ValueError):  # a builtin without a signature: keep ours
            return

        def _signature_only(*args: Any, **kwargs: Any) -> torch.Tensor:
            return self(*args, **kwargs)

        _signature_only.__signature__ = signature  # type: ignore[attr-defined]
        self.__dict__["__call__"] = _signature_only

    def __call__(self, attn: Any, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.original(attn, hidden_states, *args, **kwargs)
        encoder_hidden_states = kwargs.get("encoder_hidden_states", args[0] if len(args) > 0 else None)
        attention_mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        temb = kwargs.get("temb", args[2] if len(args) > 2 else None)
        if encoder_hidden_states is not None:
            self.recorder.record(self.layer, attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        return out


def cross_attention_modules(model: torch.nn.Module) -> dict[str, Any]:
    """The cross-attention layers (``attn2`` in SD U-Nets) by name, in module order."""
    return {
        name: module
        for name, module in model.named_modules()
        if hasattr(module, "set_processor") and getattr(module, "is_cross_attention", False)
    }


def cross_attention_layers(model: torch.nn.Module) -> list[str]:
    """Names of the cross-attention layers, in module order."""
    return list(cross_attention_modules(model))


@contextmanager
def recording_processors(modules: dict[str, Any], recorder: Recorder) -> Iterator[None]:
    """Wrap the processors of ``modules`` (name -> Attention); restore the originals on exit, even on error.

    Processors are swapped per layer with ``Attention.set_processor``, the call
    ``set_attn_processor`` makes for each layer: ``set_attn_processor`` itself
    walks every module of the model twice per swap, which costs more than the
    whole recording on small models.
    """
    originals = {name: module.processor for name, module in modules.items()}
    try:
        for name, module in modules.items():
            module.set_processor(RecordingProcessor(originals[name], name, recorder))
        yield
    finally:
        for name, module in modules.items():
            module.set_processor(originals[name])
