"""Random-weight pipelines with the published layouts of SD 1.5, SD 2.x and SDXL.

Real weights cannot be downloaded here, but the layer layout is what matters to
attention capture: how many cross-attention layers, at which resolutions, with
how many heads, linear or convolutional projections, one or two text encoders,
added conditioning. The configs below are those published with the models
(``unet/config.json``, ``text_encoder*/config.json``, ``vae/config.json``,
``scheduler/scheduler_config.json``), written as dicts. ``width`` divides the
channel counts (U-Net, VAE, text encoders) so that tests and benchmarks run
on a CPU; block types, layers per block, transformer depth per block, head
layout and conditioning stay as published.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

__all__ = ["ARCHITECTURES", "Architecture", "build_pipeline", "configs"]

Architecture = Literal["sd15", "sd2", "sdxl"]
ARCHITECTURES: tuple[str, ...] = ("sd15", "sd2", "sdxl")

_SD_BLOCKS = {
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
_VAE = {  # the same VAE layout in SD 1.x, 2.x and SDXL
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "act_fn": "silu",
}
_CLIP_L = {  # OpenAI CLIP ViT-L/14 text tower (SD 1.x, SDXL's first encoder)
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
_PUBLISHED: dict[str, dict[str, Any]] = {
    "sd15": {  # runwayml/stable-diffusion-v1-5
        "unet": {
            **_SD_BLOCKS,
            "block_out_channels": [320, 640, 1280, 1280],
            "layers_per_block": 2,
            "cross_attention_dim": 768,
            "attention_head_dim": 8,  # diffusers' legacy name: 8 heads at every level
            "sample_size": 64,
            "norm_num_groups": 32,
        },
        "text_encoders": [_CLIP_L],
        "vae": {**_VAE, "scaling_factor": 0.18215},
        "scheduler": {
            "class": "PNDMScheduler",
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "skip_prk_steps": True,
            "set_alpha_to_one": False,
            "steps_offset": 1,
            "prediction_type": "epsilon",
        },
        "pad_tokens": ["<|endoftext|>"],
    },
    "sd2": {  # stabilityai/stable-diffusion-2-1 (768-v); the -base model differs in sample size / prediction
        "unet": {
            **_SD_BLOCKS,
            "block_out_channels": [320, 640, 1280, 1280],
            "layers_per_block": 2,
            "cross_attention_dim": 1024,
            "attention_head_dim": [5, 10, 20, 20],  # heads per level: 64 channels per head
            "use_linear_projection": True,
            "upcast_attention": True,
            "sample_size": 96,
            "norm_num_groups": 32,
        },
        "text_encoders": [  # OpenCLIP ViT-H/14 text tower, last layer dropped
            {
                "hidden_size": 1024,
                "intermediate_size": 4096,
                "num_attention_heads": 16,
                "num_hidden_layers": 23,
                "hidden_act": "gelu",
                "projection_dim": 512,
            }
        ],
        "vae": {**_VAE, "scaling_factor": 0.18215},
        "scheduler": {
            "class": "DDIMScheduler",
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "clip_sample": False,
            "set_alpha_to_one": False,
            "steps_offset": 1,
            "prediction_type": "v_prediction",
        },
        "pad_tokens": ["!"],
    },
    "sdxl": {  # stabilityai/stable-diffusion-xl-base-1.0
        "unet": {
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "block_out_channels": [320, 640, 1280],
            "layers_per_block": 2,
            "transformer_layers_per_block": [1, 2, 10],
            "cross_attention_dim": 2048,  # 768 (CLIP-L) + 1280 (OpenCLIP bigG), concatenated
            "attention_head_dim": [5, 10, 20],
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_embed_type_num_heads": 64,
            "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": 2816,  # 6 * 256 time ids + 1280 pooled text
            "sample_size": 128,
            "norm_num_groups": 32,
        },
        "text_encoders": [
            _CLIP_L,
            {  # OpenCLIP ViT-bigG/14 text tower, with projection
                "hidden_size": 1280,
                "intermediate_size": 5120,
                "num_attention_heads": 20,
                "num_hidden_layers": 32,
                "hidden_act": "gelu",
                "projection_dim": 1280,
            },
        ],
        "vae": {**_VAE, "scaling_factor": 0.13025},
        "scheduler": {
            "class": "EulerDiscreteScheduler",
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "steps_offset": 1,
            "timestep_spacing": "leading",
            "prediction_type": "epsilon",
        },
        "pad_tokens": ["<|endoftext|>", "!"],
    },
}


def _reduce(channels: int, width: int, multiple: int) -> int:
    """``channels / width``, rounded to a positive multiple of ``multiple`` (group norm, heads)."""
    return max(multiple, (channels // width) // multiple * multiple)


def configs(
    arch: Architecture,
    *,
    width: int = 1,
    text_width: int | None = None,
    text_layers: int | None = None,
    prediction_type: str | None = None,
) -> dict[str, Any]:
    """The published configs of ``arch`` with channels divided by ``width`` (1 = as published).

    ``text_width`` (default ``width``) divides the text encoders' widths and
    ``text_layers`` caps their depth. Head counts follow the published rule
    (SD 1.x: 8 heads; SD 2.x / SDXL: 64 channels per head, at least one head).
    """
    if arch not in _PUBLISHED:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {list(ARCHITECTURES)}")
    if width < 1 or (text_width is not None and text_width < 1):
        raise ValueError(f"width must be a positive integer, got {width} / {text_width}")
    out = copy.deepcopy(_PUBLISHED[arch])
    text_width = width if text_width is None else text_width
    unet, groups = out["unet"], out["unet"]["norm_num_groups"]

    texts = []
    for enc in out["text_encoders"]:
        heads = enc["num_attention_heads"]
        enc["hidden_size"] = _reduce(enc["hidden_size"], text_width, heads)
        enc["intermediate_size"] = _reduce(enc["intermediate_size"], text_width, heads)
        enc["projection_dim"] = _reduce(enc["projection_dim"], text_width, 8)
        if text_layers is not None:
            enc["num_hidden_layers"] = min(enc["num_hidden_layers"], text_layers)
        texts.append(enc)

    published = unet["block_out_channels"]
    unet["block_out_channels"] = [_reduce(c, width, groups) for c in published]
    if isinstance(unet["attention_head_dim"], list):  # heads of 64 channels
        unet["attention_head_dim"] = [max(1, c // 64) for c in unet["block_out_channels"]]
    unet["cross_attention_dim"] = sum(enc["hidden_size"] for enc in texts)
    if arch == "sdxl":
        unet["addition_time_embed_dim"] = _reduce(unet["addition_time_embed_dim"], width, 8)
        unet["addition_embed_type_num_heads"] = _reduce(unet["addition_embed_type_num_heads"], width, 8)
        unet["projection_class_embeddings_input_dim"] = 6 * unet["addition_time_embed_dim"] + texts[-1]["projection_dim"]
    out["vae"]["block_out_channels"] = [_reduce(c, width, out["vae"]["norm_num_groups"]) for c in _VAE["block_out_channels"]]
    if prediction_type is not None:
        out["scheduler"]["prediction_type"] = prediction_type
    return out


def build_pipeline(
    arch: Architecture,
    *,
    width: int = 1,
    text_width: int | None = None,
    text_layers: int | None = None,
    prediction_type: str | None = None,
    sample_size: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> DiffusionPipeline:
    """A diffusers pipeline of ``arch`` with random weights (deterministic in ``seed``).

    ``sample_size``: the U-Net's default latent size (pipelines default to
    ``sample_size * 8`` pixels); published values otherwise.
    """
    import diffusers
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from pipeline.clip_tokenizer import MODEL_MAX_LENGTH, VOCAB_SIZE, clip_tokenizer

    cfg = configs(arch, width=width, text_width=text_width, text_layers=text_layers, prediction_type=prediction_type)
    if sample_size is not None:
        cfg["unet"]["sample_size"] = sample_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(in_channels=4, out_channels=4, **cfg["unet"]).eval()
        vae = AutoencoderKL(sample_size=cfg["unet"]["sample_size"] * 8, **cfg["vae"]).eval()
        encoders = []
        for i, enc in enumerate(cfg["text_encoders"]):
            config = CLIPTextConfig(
                vocab_size=VOCAB_SIZE,
                max_position_embeddings=MODEL_MAX_LENGTH,
                bos_token_id=49406,
                eos_token_id=49407,
                pad_token_id=49407,
                **enc,
            )
            # SDXL's second encoder returns the projected pooled embedding as well
            cls = CLIPTextModelWithProjection if arch == "sdxl" and i == 1 else CLIPTextModel
            encoders.append(cls(config).eval())
    sched = dict(cfg["scheduler"])
    scheduler = getattr(diffusers, sched.pop("class"))(**sched)
    tokenizers = [clip_tokenizer(pad_token=pad) for pad in cfg["pad_tokens"]]
    if arch == "sdxl":
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=encoders[0],
            text_encoder_2=encoders[1],
            tokenizer=tokenizers[0],
            tokenizer_2=tokenizers[1],
            unet=unet,
            scheduler=scheduler,
        )
    else:
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=encoders[0],
            tokenizer=tokenizers[0],
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
