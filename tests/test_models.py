"""The offline CLIP tokenizer, the embedded default model, load_pipeline, and the published layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.architectures import build_pipeline, configs
from pipeline.clip_tokenizer import clip_tokenizer, clip_vocab_and_merges
from pipeline.daam.processor import cross_attention_layers
from pipeline.models import EMBEDDED_DIR, ModelNotFoundError, embedded_model_path, load_pipeline


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


def test_embedded_model_is_the_shipped_float16_folder():
    folder = embedded_model_path()
    assert folder == EMBEDDED_DIR and folder.is_relative_to(Path(__file__).resolve().parent.parent / "pipeline")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["safety_checker"] == [None, None]
    weights = sorted(folder.rglob("*.safetensors"))
    assert {p.parent.name for p in weights} == {"unet", "vae", "text_encoder"}
    assert sum(p.stat().st_size for p in weights) < 40e6  # small enough to ship in the repository
    from safetensors import safe_open

    for path in weights:
        with safe_open(path, "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}, path
    provenance = json.loads((folder / "training.json").read_text())
    assert provenance["seed"] == 0 and provenance["unet_loss"]["last"]["loss"] < provenance["unet_loss"]["first"]["loss"]


def test_embedded_pipeline_loads_offline_and_generates_deterministically(embedded_pipe, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = embedded_pipe
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert pipe.safety_checker is None and pipe.unet.dtype == torch.float32  # float16 on disk, float32 on the CPU
    assert pipe.tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 64  # small default image

    def draw(p):  # noqa: ANN001, ANN202
        g = torch.Generator().manual_seed(5)
        return p("a yellow sun above a red house", num_inference_steps=4, generator=g, output_type="np").images

    first = draw(pipe)
    assert first.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(first, draw(pipe))
    # the same folder through the local-path route gives the same model and the same picture
    again = load_pipeline(str(embedded_model_path()), device="cpu")
    for (name, a), (_, b) in zip(pipe.unet.state_dict().items(), again.unet.state_dict().items()):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(first, draw(again))


def test_missing_embedded_weights_fail_clearly(tmp_path, monkeypatch):
    import pipeline.models as models

    monkeypatch.setattr(models, "EMBEDDED_DIR", tmp_path / "embedded")
    with pytest.raises(ModelNotFoundError, match="embedded model's weights are missing"):
        load_pipeline("embedded")


def test_load_options():
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
