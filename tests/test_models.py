"""The offline CLIP tokenizer, the embedded default model, load_pipeline, and the published layouts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from pipeline.architectures import build_pipeline, configs
from pipeline.clip_tokenizer import clip_tokenizer, clip_vocab_and_merges
from pipeline.daam.processor import cross_attention_layers
from pipeline.models import EMBEDDED_VERSION, ModelNotFoundError, build_embedded_model, embedded_model_path, load_pipeline


def test_clip_tokenizer_matches_openai_clip():
    tok = clip_tokenizer()
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tok) == 49408 and tok.model_max_length == 77
    vocab, merges = clip_vocab_and_merges()
    assert len(vocab) == 49408 and len(merges) == 48894
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    # distinct words get distinct ids (the transformers 5 vocab_file= trap maps all to one id)
    ids = tok("teapot kettle giraffe", add_special_tokens=False)["input_ids"]
    assert len(set(ids)) == 3


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_embedded_model_is_built_once_atomically_and_deterministically(daamset_cache, tmp_path):
    folder = embedded_model_path()
    assert folder == daamset_cache / f"embedded-{EMBEDDED_VERSION}"
    assert (folder / "model_index.json").exists()
    assert embedded_model_path() == folder  # cached: no rebuild
    assert not [p for p in daamset_cache.iterdir() if p.name.startswith(".")]  # no temp dir left
    rebuilt = tmp_path / "again"
    build_embedded_model(rebuilt)
    weights = {k: v for k, v in _digest(folder).items() if k.endswith(".safetensors")}
    assert weights and weights == {k: v for k, v in _digest(rebuilt).items() if k.endswith(".safetensors")}
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["safety_checker"] == [None, None]


def test_embedded_pipeline_loads_like_a_real_model(embedded_pipe):
    pipe = embedded_pipe
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert pipe.safety_checker is None
    assert pipe.tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 64  # small default image
    out = pipe("a teapot", num_inference_steps=2, output_type="np")
    assert out.images.shape == (1, 64, 64, 3)
    # the same folder through the local-path route gives the same model
    again = load_pipeline(str(embedded_model_path()), device="cpu")
    for (name, a), (_, b) in zip(pipe.unet.state_dict().items(), again.unet.state_dict().items()):
        assert torch.equal(a, b), name


def test_load_options(daamset_cache):
    pipe = load_pipeline("embedded", dtype="bfloat16", device="cpu", scheduler="EulerDiscreteScheduler")
    assert pipe.unet.dtype == torch.bfloat16
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe.scheduler.config.beta_end == pytest.approx(0.012)  # built from the model's own config
    with pytest.raises(ValueError, match="NoSuchScheduler"):
        load_pipeline("embedded", device="cpu", scheduler="NoSuchScheduler")
    with pytest.raises(ValueError, match="dtype"):
        load_pipeline("embedded", dtype="float8")


def test_missing_models_fail_with_their_name(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="no-such-folder"):
        load_pipeline(str(tmp_path / "no-such-folder"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never reach for the network in tests
    with pytest.raises(ModelNotFoundError, match="someone/not-a-cached-model"):
        load_pipeline("someone/not-a-cached-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="empty"):
        load_pipeline(str(tmp_path / "empty"))


def test_published_layouts_at_full_width():
    sd15, sd2, sdxl = configs("sd15"), configs("sd2"), configs("sdxl")
    assert sd15["unet"]["block_out_channels"] == [320, 640, 1280, 1280]
    assert sd15["unet"]["cross_attention_dim"] == 768 and sd15["unet"]["attention_head_dim"] == 8
    assert sd2["unet"]["cross_attention_dim"] == 1024 and sd2["unet"]["use_linear_projection"]
    assert sd2["unet"]["attention_head_dim"] == [5, 10, 20, 20]  # 64 channels per head
    assert sd2["scheduler"]["prediction_type"] == "v_prediction"
    assert sdxl["unet"]["cross_attention_dim"] == 2048
    assert sdxl["unet"]["projection_class_embeddings_input_dim"] == 2816
    assert sdxl["unet"]["transformer_layers_per_block"] == [1, 2, 10]
    with pytest.raises(ValueError, match="unknown architecture"):
        configs("sd3")


@pytest.mark.parametrize(
    ("arch", "kwargs", "n_cross"),
    [
        ("sd15", {"width": 10, "text_layers": 1}, 16),
        ("sd2", {"width": 10, "text_layers": 1}, 16),
        ("sdxl", {"width": 10, "text_width": 8, "text_layers": 2}, 70),
    ],
)
def test_reduced_pipelines_keep_the_layer_layout(arch, kwargs, n_cross):
    pipe = build_pipeline(arch, sample_size=8, **kwargs)
    layers = cross_attention_layers(pipe.unet)
    assert len(layers) == n_cross and all(name.endswith("attn2") for name in layers)
    assert len(pipe.unet.config.block_out_channels) == len(configs(arch)["unet"]["block_out_channels"])
    cross_dims = {pipe.unet.get_submodule(n).to_k.in_features for n in layers}
    assert cross_dims == {pipe.unet.config.cross_attention_dim}
    if arch == "sdxl":
        assert pipe.text_encoder_2 is not None and pipe.unet.config.addition_embed_type == "text_time"
        assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    latents = pipe("a teapot", num_inference_steps=1, output_type="latent").images
    assert latents.shape == (1, 4, 8, 8)
    # deterministic in the seed
    again = build_pipeline(arch, sample_size=8, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(pipe.unet.parameters(), again.unet.parameters()))


def test_local_folder_of_another_layout_loads_through_the_same_path(tmp_path):
    # SDXL has no safety checker: load_pipeline must not pass one
    build_pipeline("sdxl", width=10, text_width=8, text_layers=2, sample_size=8).save_pretrained(tmp_path / "sdxl")
    pipe = load_pipeline(str(tmp_path / "sdxl"), device="cpu")
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert pipe.tokenizer_2("a photo of a cat")["input_ids"][:7] == [49406, 320, 1125, 539, 320, 2368, 49407]
