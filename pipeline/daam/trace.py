"""``trace(pipe)``: the one entry point. Records cross-attention while the pipeline runs.

    with trace(pipe) as tracer:
        out = pipe(["a cat on a mat", "a red teapot"], num_images_per_prompt=2)
    maps = tracer.heat_maps()      # one HeatMap per image, in output order

Inside the ``with`` block the pipeline is instrumented in three places, all
undone on exit (also when the pipeline raises):
- the processors of the U-Net's cross-attention layers (``processor.py``);
- ``pipe.encode_prompt``, to learn each call's prompts, images per prompt and
  whether the batch carries classifier-free guidance;
- a forward pre-hook on the U-Net, which counts denoising steps and reads the
  latent size (so non-square latents and each layer's grid are exact).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch

from pipeline.daam.attention import cross_attention_probs, layer_grid
from pipeline.daam.heatmap import HeatMap
from pipeline.daam.processor import cross_attention_modules, recording_processors
from pipeline.daam.store import CallRecord, StepWindow
from pipeline.daam.tokens import align_prompt

__all__ = ["Tracer", "trace"]

log = logging.getLogger(__name__)

AGGREGATION = "Eq. 6: sum over steps, heads and layers of bicubic-upsampled attention; multi-token words: mean"


class Tracer:
    """Holds what ``trace`` records; ask it for ``heat_maps()`` during or after the block."""

    def __init__(
        self,
        pipe: Any,
        *,
        resolutions: Sequence[int] | None = None,
        layers: Sequence[str] | None = None,
        window: StepWindow = StepWindow(),
        per_step: bool = False,
    ) -> None:
        unet = getattr(pipe, "unet", None)
        if unet is None or not hasattr(unet, "set_attn_processor"):
            raise TypeError(f"trace needs a pipeline with a diffusers U-Net (pipe.unet); got {type(pipe).__name__}")
        tokenizer = getattr(pipe, "tokenizer", None) or getattr(pipe, "tokenizer_2", None)
        if tokenizer is None:
            raise TypeError(f"trace needs the pipeline's tokenizer to align words; {type(pipe).__name__} has none")
        self.pipe = pipe
        self.unet = unet
        # SDXL has two tokenizers with the same BPE; the first one aligns tokens for both
        self.tokenizer = tokenizer
        modules = cross_attention_modules(unet)
        all_layers = list(modules)
        if not all_layers:
            raise ValueError(f"{type(unet).__name__} has no cross-attention layers to trace")
        if layers:
            unmatched = [s for s in layers if not any(s in name for name in all_layers)]
            if unmatched:
                raise ValueError(f"layers {unmatched} match no cross-attention layer; the layers are {all_layers}")
            all_layers = [name for name in all_layers if any(s in name for s in layers)]
        self.layers: list[str] = all_layers
        self.modules = {name: modules[name] for name in all_layers}
        self.resolutions: frozenset[int] | None = frozenset(int(r) for r in resolutions) if resolutions else None
        self.window = window
        self.per_step = bool(per_step)
        self.records: list[CallRecord] = []

    # --- hooks ------------------------------------------------------------------------------
    @property
    def _current(self) -> CallRecord | None:
        return self.records[-1] if self.records else None

    def _on_encode_prompt(self, arguments: dict[str, Any]) -> None:
        """A pipeline call starts: learn its prompts and batch layout."""
        prompt = arguments.get("prompt")
        per_prompt = int(arguments.get("num_images_per_prompt") or 1)
        guidance = bool(arguments.get("do_classifier_free_guidance", False))
        if prompt is None:
            embeds = arguments.get("prompt_embeds")
            if embeds is None:
                raise ValueError("trace: the pipeline was called with neither prompt nor prompt_embeds")
            alignments, n_prompts = None, int(embeds.shape[0])
        else:
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            alignments, n_prompts = [align_prompt(self.tokenizer, p) for p in prompts], len(prompts)
        self.records.append(
            CallRecord(
                alignments=alignments,
                n_images=n_prompts * per_prompt,
                images_per_prompt=per_prompt,
                guidance=guidance,
                per_step=self.per_step,
            )
        )

    def _on_unet_call(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A denoising step starts: count it and read the latent size."""
        record = self._current
        if record is None:
            return
        sample = args[0] if args else kwargs.get("sample")
        if record.step < 0:
            # set_timesteps has run by the first U-Net call of a call: its length is the step count
            timesteps = getattr(self.pipe.scheduler, "timesteps", None)
            record.total_steps = len(timesteps) if timesteps is not None else None
        record.begin_step((int(sample.shape[-2]), int(sample.shape[-1])))

    def record(
        self,
        layer: str,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        temb: torch.Tensor | None,
    ) -> None:
        """Called by the recording processors with a cross-attention layer's inputs."""
        record = self._current
        if record is None or record.step < 0 or record.latent_size is None:
            return  # the U-Net ran outside a pipeline call (no prompts known): nothing to attribute
        if not self.window.contains(record.step, record.total_steps):
            return
        if hidden_states.ndim == 4:
            grid = (int(hidden_states.shape[-2]), int(hidden_states.shape[-1]))
        else:
            grid = layer_grid(int(hidden_states.shape[1]), record.latent_size)
        if self.resolutions is not None and grid[0] not in self.resolutions:
            return
        batch = int(hidden_states.shape[0])
        rows = record.batch_rows(batch)

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return t[rows] if t is not None and t.ndim > 0 and t.shape[0] == batch else t

        with torch.no_grad():
            probs = cross_attention_probs(
                attn, hidden_states[rows], encoder_hidden_states[rows], pick(attention_mask), pick(temb)
            )
        record.add(layer, probs, grid)

    # --- results ------------------------------------------------------------------------------
    def state_nbytes(self) -> int:
        """Bytes of tensors the tracer holds (flat in the number of steps unless per_step=True)."""
        return sum(r.nbytes() for r in self.records)

    def heat_maps(self) -> list[HeatMap]:
        """One ``HeatMap`` per generated image, in the pipelines' output order, over all calls."""
        out: list[HeatMap] = []
        image_scale = int(getattr(self.pipe, "vae_scale_factor", 8))
        for call, record in enumerate(self.records):
            if record.step < 0:
                continue  # encode_prompt ran but the U-Net never did
            record.flush_step()
            if record.total_steps is not None and record.step + 1 != record.total_steps:
                log.warning(
                    "call %d ran %d U-Net steps but the scheduler listed %d", call, record.step + 1, record.total_steps
                )
            try:
                maps = record.latent_maps().cpu()
            except ValueError as err:
                raise ValueError(
                    f"{err} (layers={self.layers}, resolutions={sorted(self.resolutions or [])}, window={self.window})"
                ) from None
            h, w = record.latent_size  # type: ignore[misc]
            params = {
                "model": str(getattr(self.pipe, "name_or_path", "") or ""),
                "pipeline": type(self.pipe).__name__,
                "scheduler": type(self.pipe.scheduler).__name__,
                "dtype": str(self.unet.dtype).removeprefix("torch."),
                "steps": record.step + 1,
                "guidance": record.guidance,
                "guidance_scale": _maybe_float(getattr(self.pipe, "_guidance_scale", None)),
                "images_per_prompt": record.images_per_prompt,
                "latent_size": [h, w],
                "layers": sorted(record.sums, key=self.layers.index),
                "layer_grids": {k: list(v) for k, v in record.grids.items()},
                "steps_used": [record.first_step, (record.last_step or 0) + 1] if record.first_step is not None else [],
                "aggregation": AGGREGATION,
            }
            for i in range(record.n_images):
                alignment = record.alignment(i)
                first, n_kept = record.token_rows(i)
                step_maps = None
                if self.per_step:
                    step_maps = (
                        torch.stack(record.step_maps[i]).cpu().numpy()
                        if record.step_maps
                        else torch.zeros((0, n_kept, h, w), dtype=torch.float16).numpy()
                    )
                out.append(
                    HeatMap(
                        prompt=alignment.prompt,
                        token_spans=alignment.spans,
                        maps=maps[i, first : first + n_kept].numpy().copy(),
                        image_size=(h * image_scale, w * image_scale),
                        params={**params, "call": call, "index_in_prompt": i % record.images_per_prompt},
                        step_maps=step_maps,
                        step_indices=tuple(record.step_indices),
                    )
                )
        return out


def _maybe_float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@contextmanager
def _patched_method(obj: Any, name: str, before: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """Call ``before(bound arguments)`` ahead of ``obj.name(...)``; undo on exit."""
    had_own = name in vars(obj)
    own = vars(obj).get(name)
    original = getattr(obj, name)
    signature = inspect.signature(original)

    def patched(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        before(dict(bound.arguments))
        return original(*args, **kwargs)

    setattr(obj, name, patched)
    try:
        yield
    finally:
        if had_own:
            setattr(obj, name, own)
        else:
            delattr(obj, name)


@contextmanager
def trace(
    pipe: Any,
    *,
    resolutions: Sequence[int] | None = None,
    layers: Sequence[str] | None = None,
    first_steps: int | None = None,
    last_steps: int | None = None,
    step_range: Sequence[int] | None = None,
    per_step: bool = False,
) -> Iterator[Tracer]:
    """Record DAAM heat maps of every image the pipeline generates inside the block.

    ``resolutions``: keep only layers whose grid height is listed (e.g. ``[8, 16]``);
    ``layers``: keep only layers whose name contains one of these substrings;
    ``first_steps`` / ``last_steps`` / ``step_range=(start, stop)``: a window of
    denoising steps (0-based U-Net calls); ``per_step``: also keep each step's
    per-token map (float16, latent resolution). Default: every layer, every step.
    """
    window = StepWindow(first_steps, last_steps, tuple(step_range) if step_range is not None else None)
    tracer = Tracer(pipe, resolutions=resolutions, layers=layers, window=window, per_step=per_step)
    with ExitStack() as stack:
        stack.enter_context(recording_processors(tracer.modules, tracer))
        stack.enter_context(_patched_method(pipe, "encode_prompt", tracer._on_encode_prompt))
        handle = tracer.unet.register_forward_pre_hook(tracer._on_unet_call, with_kwargs=True)
        stack.callback(handle.remove)
        try:
            yield tracer
        finally:
            for record in tracer.records:
                record.flush_step()
