"""Training the embedded model: a few CPU steps, the saved pipeline, resume."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

import pipeline.training as T

# small enough for a few steps in seconds; the same code path as the default size
TINY = T.ModelSpec(unet_channels=(32, 32, 64), text_hidden=32, text_layers=1, text_heads=2, attention_heads=2)
ARGS = dict(steps=4, batch_size=4, vae_steps=3, vae_batch_size=4, seed=5, device="cpu", lr=1e-3, warmup=2,
            checkpoint_every=2, log_every=1, spec=TINY, progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[str]]]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("train")
    seen: list[list[str]] = []
    encode = T._encode_text

    def spy(tokenizer, text_encoder, captions, dev):  # noqa: ANN001, ANN202
        seen.append(list(captions))
        return encode(tokenizer, text_encoder, captions, dev)

    T._encode_text = spy
    try:
        model = T.train_embedded(out, **{**ARGS, "caption_dropout": 0.3})
    finally:
        T._encode_text = encode
    return model, seen


def test_training_logs_finite_losses_and_drops_captions(trained: tuple[Path, list[list[str]]]) -> None:
    model, seen = trained
    entries = T.read_loss_log(model.parent)
    assert [(e["phase"], e["step"]) for e in entries] == [("vae", i) for i in range(3)] + [("unet", i) for i in range(4)]
    assert all(math.isfinite(e["loss"]) and e["loss"] > 0 for e in entries)
    captions = [c for batch in seen for c in batch]
    assert len(captions) == 16 and "" in captions and any(captions)  # some dropped, most kept
    assert (model.parent / "checkpoint.pt").exists()


def test_saved_pipeline_reloads_and_generates_deterministically(trained: tuple[Path, list[list[str]]]) -> None:
    model, _ = trained
    pipe = StableDiffusionPipeline.from_pretrained(model)
    assert pipe.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert pipe.vae_scale_factor == 4 and pipe.unet.config.sample_size * 4 == 64
    assert pipe.vae.config.scaling_factor != 0.18215  # measured on scene latents, not SD's
    # the text encoder attends causally, as CLIP's does: a later word does not change an earlier token
    ids = [pipe.tokenizer(p, padding="max_length", return_tensors="pt").input_ids for p in ("a red house", "a red ball")]
    with torch.no_grad():
        h = [pipe.text_encoder(i)[0] for i in ids]
    assert torch.allclose(h[0][0, :3], h[1][0, :3]) and not torch.allclose(h[0][0, 3], h[1][0, 3])

    def draw(seed: int) -> np.ndarray:
        g = torch.Generator().manual_seed(seed)
        return np.asarray(pipe("two small clouds above a house", num_inference_steps=3, generator=g).images[0])

    a, b, c = draw(1), draw(1), draw(2)
    assert a.shape == (64, 64, 3) and (a == b).all() and not (a == c).all()


def test_ship_writes_float16_weights_that_load_as_a_pipeline(trained: tuple[Path, list[list[str]]], tmp_path: Path) -> None:
    model, _ = trained
    dest = tmp_path / "shipped"
    (dest / "stale").mkdir(parents=True)  # an older shipped folder is replaced whole
    assert T.ship_model(model.parent, dest) == dest
    assert not (dest / "stale").exists() and not list(tmp_path.glob(".shipped*"))
    full, half = load_file(model / "unet/diffusion_pytorch_model.safetensors"), load_file(dest / "unet/diffusion_pytorch_model.safetensors")
    assert {t.dtype for t in half.values()} == {torch.float16}
    assert all(torch.equal(full[k].half(), half[k]) for k in full)
    provenance = __import__("json").loads((dest / "training.json").read_text())
    assert provenance["seed"] == 5 and provenance["unet_loss"]["last"]["step"] == 3
    from pipeline.models import load_pipeline

    pipe = load_pipeline(str(dest), device="cpu")
    assert pipe.unet.dtype == torch.float32 and type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"


def test_resume_continues_the_same_trajectory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    straight = T.train_embedded(tmp_path / "straight", **ARGS)

    batch = T._batch

    def interrupt(seed, phase, step, batch_size):  # noqa: ANN001, ANN202
        if phase == "unet" and step == 3:
            raise KeyboardInterrupt
        return batch(seed, phase, step, batch_size)

    monkeypatch.setattr(T, "_batch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        T.train_embedded(tmp_path / "resumed", **ARGS)
    assert not (tmp_path / "resumed" / "model").exists()
    monkeypatch.setattr(T, "_batch", batch)
    resumed = T.train_embedded(tmp_path / "resumed", **ARGS)  # continues from the checkpoint at unet step 2

    for part in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                 "vae/diffusion_pytorch_model.safetensors"):  # fmt: skip
        x, y = load_file(straight / part), load_file(resumed / part)
        assert x.keys() == y.keys()
        assert all(torch.equal(x[k], y[k]) for k in x), part
    def losses(folder: str) -> list[dict]:
        return [{k: v for k, v in e.items() if k != "seconds"} for e in T.read_loss_log(tmp_path / folder)]

    assert losses("straight") == losses("resumed")  # no duplicate lines from the interrupted part
    with pytest.raises(ValueError, match="other arguments"):
        T.train_embedded(tmp_path / "resumed", **{**ARGS, "lr": 2e-3})


def test_worker_processes_and_longer_resume_keep_the_batches(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    inline = T.train_embedded(tmp_path / "inline", **ARGS)
    workers = T.train_embedded(tmp_path / "workers", **{**ARGS, "workers": 2})
    part = "unet/diffusion_pytorch_model.safetensors"
    x, y = load_file(inline / part), load_file(workers / part)
    assert all(torch.equal(x[k], y[k]) for k in x)  # rendering in DataLoader workers changes nothing

    # a finished run extended to more steps continues from its last checkpoint
    T.train_embedded(tmp_path / "inline", **{**ARGS, "steps": 6})
    steps = [e["step"] for e in T.read_loss_log(tmp_path / "inline") if e["phase"] == "unet"]
    assert steps == [0, 1, 2, 3, 4, 5]
