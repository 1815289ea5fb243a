"""Hooking and aggregation behaviour of trace(): outputs untouched, clean exit, flat memory, windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.daam import trace
from pipeline.daam.processor import RecordingProcessor


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _instrumentation(pipe) -> tuple:
    """Everything trace touches, by identity."""
    return (
        tuple(pipe.unet.attn_processors.items()),
        "encode_prompt" in vars(pipe),
        len(pipe.unet._forward_pre_hooks),
    )


def test_images_bit_identical_with_and_without_trace(embedded_pipe):
    kwargs = dict(num_images_per_prompt=2, num_inference_steps=3, height=64, width=96, output_type="np")
    prompts = ["a red teapot", "a cat on a mat"]
    plain = embedded_pipe(prompts, generator=_gen(7), **kwargs).images
    with trace(embedded_pipe, per_step=True) as tracer:
        traced = embedded_pipe(prompts, generator=_gen(7), **kwargs).images
    assert np.array_equal(plain, traced)
    assert len(tracer.heat_maps()) == 4


def test_only_cross_attention_processors_are_replaced_and_restored(embedded_pipe):
    before = _instrumentation(embedded_pipe)
    with trace(embedded_pipe) as tracer:
        inside = embedded_pipe.unet.attn_processors
        wrapped = {k for k, v in inside.items() if isinstance(v, RecordingProcessor)}
        assert wrapped == {f"{name}.processor" for name in tracer.layers}
        assert wrapped and all(k.endswith("attn2.processor") for k in wrapped)
        # self-attention keeps its processor object
        assert all(inside[k] is v for k, v in before[0] if k not in wrapped)
    assert _instrumentation(embedded_pipe) == before


def test_everything_restored_when_the_pipeline_raises(embedded_pipe):
    before = _instrumentation(embedded_pipe)

    def fail(pipe, step, timestep, kwargs):
        if step == 1:
            raise RuntimeError("boom at step 1")
        return kwargs

    with pytest.raises(RuntimeError, match="boom"):
        with trace(embedded_pipe):
            embedded_pipe("a teapot", num_inference_steps=3, callback_on_step_end=fail, output_type="latent")
    assert _instrumentation(embedded_pipe) == before
    # and the pipeline still produces the untraced result
    a = embedded_pipe("a teapot", num_inference_steps=2, generator=_gen(), output_type="latent").images
    b = embedded_pipe("a teapot", num_inference_steps=2, generator=_gen(), output_type="latent").images
    assert torch.equal(a, b)


def _state_after(pipe, steps: int, **trace_kwargs) -> tuple[int, list]:
    with trace(pipe, **trace_kwargs) as tracer:
        pipe(["a teapot", "a cup"], num_inference_steps=steps, generator=_gen(), output_type="latent")
    return tracer.state_nbytes(), tracer.heat_maps()


def test_tracer_memory_is_flat_in_steps(embedded_pipe):
    small, _ = _state_after(embedded_pipe, 2)
    large, maps = _state_after(embedded_pipe, 6)
    assert small > 0 and small == large
    assert maps[0].params["steps"] == 6 and maps[0].params["steps_used"] == [0, 6]
    # per-step maps are the one thing that grows, by one float16 map per token per step
    small_ps, _ = _state_after(embedded_pipe, 2, per_step=True)
    large_ps, maps_ps = _state_after(embedded_pipe, 6, per_step=True)
    h, w = maps_ps[0].latent_size
    tokens = sum(m.maps.shape[0] for m in maps_ps)
    assert large_ps - small_ps == 4 * tokens * h * w * 2


def test_per_step_maps_sum_to_the_total(embedded_pipe):
    with trace(embedded_pipe, per_step=True) as tracer:
        embedded_pipe(["a red teapot", "a dog"], num_inference_steps=4, generator=_gen(), output_type="latent")
    for hm in tracer.heat_maps():
        assert hm.step_maps.dtype == np.float16
        assert hm.step_maps.shape == (4, *hm.maps.shape)
        assert hm.step_indices == (0, 1, 2, 3)
        total = hm.step_maps.astype(np.float32).sum(axis=0)
        np.testing.assert_allclose(total, hm.maps, rtol=5e-3, atol=5e-3 * float(hm.maps.max()))


def test_per_step_respects_the_window(embedded_pipe):
    with trace(embedded_pipe, per_step=True, last_steps=2) as tracer:
        embedded_pipe("a red teapot", num_inference_steps=5, generator=_gen(), output_type="latent")
    (hm,) = tracer.heat_maps()
    assert hm.step_indices == (3, 4) and hm.step_maps.shape[0] == 2
    assert hm.params["steps_used"] == [3, 5]


def test_several_calls_in_one_trace(embedded_pipe):
    with trace(embedded_pipe) as tracer:
        embedded_pipe("a teapot", num_inference_steps=2, generator=_gen(), output_type="latent")
        embedded_pipe(["a cat", "a dog"], num_inference_steps=3, guidance_scale=1.0, generator=_gen(), output_type="latent")
    maps = tracer.heat_maps()
    assert [m.prompt for m in maps] == ["a teapot", "a cat", "a dog"]
    assert [m.params["call"] for m in maps] == [0, 1, 1]
    assert [m.params["steps"] for m in maps] == [2, 3, 3]
    assert [m.params["guidance"] for m in maps] == [True, False, False]


def test_maps_differ_between_words(embedded_pipe):
    with trace(embedded_pipe) as tracer:
        embedded_pipe("a red teapot on a wooden table", num_inference_steps=3, generator=_gen(), output_type="latent")
    (hm,) = tracer.heat_maps()
    assert hm.maps.dtype == np.float32 and np.all(np.isfinite(hm.maps))
    assert not np.allclose(hm.word("teapot"), hm.word("table"))


def test_bad_arguments_fail_clearly(embedded_pipe):
    with pytest.raises(ValueError, match="match no cross-attention layer"):
        with trace(embedded_pipe, layers=["no_such_block"]):
            pass
    with pytest.raises(ValueError, match="at most one"):
        with trace(embedded_pipe, first_steps=2, last_steps=2):
            pass
    with pytest.raises(ValueError, match="step_range"):
        with trace(embedded_pipe, step_range=(3, 1)):
            pass
    with trace(embedded_pipe, resolutions=[3]) as tracer:
        embedded_pipe("a teapot", num_inference_steps=2, output_type="latent")
    with pytest.raises(ValueError, match="no cross-attention was recorded"):
        tracer.heat_maps()
    with pytest.raises(TypeError, match="U-Net"):
        with trace(object()):
            pass


def test_prompt_embeds_without_text_is_a_clear_error(embedded_pipe):
    embeds, _ = embedded_pipe.encode_prompt("a teapot", "cpu", 1, False)
    with trace(embedded_pipe) as tracer:
        embedded_pipe(prompt_embeds=embeds, guidance_scale=1.0, num_inference_steps=2, output_type="latent")
    with pytest.raises(ValueError, match="prompt text"):
        tracer.heat_maps()


def test_wrapper_exposes_the_original_signature(embedded_pipe):
    # diffusers filters cross_attention_kwargs by the processor's signature: it must see the original's
    import inspect

    with trace(embedded_pipe) as tracer:
        attn = embedded_pipe.unet.get_submodule(tracer.layers[0])
        assert isinstance(attn.processor, RecordingProcessor)
        assert inspect.signature(attn.processor.__call__) == inspect.signature(attn.processor.original)


def test_half_precision_model_accumulates_in_float32():
    from pipeline.models import load_pipeline

    pipe = load_pipeline("embedded", dtype="bfloat16", device="cpu")
    with trace(pipe) as tracer:
        pipe("a red teapot", num_inference_steps=2, generator=_gen(), output_type="latent")
    assert all(t.dtype == torch.float32 for r in tracer.records for t in r.sums.values())
    (hm,) = tracer.heat_maps()
    assert hm.maps.dtype == np.float32 and np.all(np.isfinite(hm.maps)) and hm.params["dtype"] == "bfloat16"
    # attention rows sum to 1 over the 77 keys: each map at a layer's own grid sums to heads x steps x positions
    record = tracer.records[0]
    for layer, acc in record.sums.items():
        heads = pipe.unet.get_submodule(layer).heads
        np.testing.assert_allclose(acc.sum(dim=-1).numpy(), heads * 2, rtol=1e-3)


def test_any_original_processor_is_kept_for_the_output(embedded_pipe):
    # the explicit (non-fused) processor: trace wraps whatever is installed, outputs stay bit-identical
    from diffusers.models.attention_processor import AttnProcessor

    saved = dict(embedded_pipe.unet.attn_processors)
    embedded_pipe.unet.set_attn_processor(AttnProcessor())
    try:
        plain = embedded_pipe("a teapot", num_inference_steps=2, generator=_gen(3), output_type="latent").images
        with trace(embedded_pipe) as tracer:
            traced = embedded_pipe("a teapot", num_inference_steps=2, generator=_gen(3), output_type="latent").images
        assert torch.equal(plain, traced)
        assert all(isinstance(p, AttnProcessor) for p in embedded_pipe.unet.attn_processors.values())
        assert tracer.heat_maps()[0].tokens == ("a", "teapot")
    finally:
        embedded_pipe.unet.set_attn_processor(dict(saved))
