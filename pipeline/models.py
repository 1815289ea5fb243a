"""Load a text-to-image pipeline: the embedded default model, a local folder or a hub id.

Every model goes through one code path, ``DiffusionPipeline.from_pretrained(folder
or id)``. The embedded default model is a small Stable Diffusion pipeline built
offline on first use (random weights from a fixed seed, the real CLIP tokenizer)
and cached as an ordinary diffusers folder, so it is loaded exactly as a real
model would be. It draws noise; it exists so that everything runs on a machine
without a GPU or network access.

To replace the embedded model (e.g. with a trained one), change
``build_embedded_model`` and bump ``EMBEDDED_VERSION`` so caches are rebuilt.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

__all__ = [
    "EMBEDDED",
    "EMBEDDED_VERSION",
    "ModelNotFoundError",
    "build_embedded_model",
    "cache_root",
    "embedded_model_path",
    "load_pipeline",
    "resolve_device",
    "resolve_dtype",
]

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
# Part of the cache folder name: bump it whenever build_embedded_model changes.
EMBEDDED_VERSION = "v1"
_EMBEDDED_SEED = 0

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ModelNotFoundError(FileNotFoundError):
    """The requested model is neither a local folder nor available in the local hub cache."""


def cache_root() -> Path:
    """Where daamset caches built models: ``$DAAMSET_CACHE`` or ``~/.cache/daamset``."""
    env = os.environ.get("DAAMSET_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "daamset"


def build_embedded_model(folder: Path) -> None:
    """Write the embedded default model to ``folder`` as a diffusers pipeline folder.

    A tiny Stable Diffusion 1.x layout: a 2-level U-Net (cross-attention at the
    latent resolution and at half of it, mid block included), a 3-level VAE
    (latents are 1/4 of the image side), a 2-layer CLIP text encoder over the
    full CLIP vocabulary, DDIM. Weights are random from a fixed seed, so every
    build is identical. Default image size 64x64 (16x16 latents), fast on CPU.
    """
    # imported here: diffusers/transformers are slow to import and only needed to build
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from pipeline.clip_tokenizer import MODEL_MAX_LENGTH, VOCAB_SIZE, clip_tokenizer

    text_width = 32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_EMBEDDED_SEED)
        unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=text_width,
            attention_head_dim=2,  # diffusers' legacy name: the number of heads
            norm_num_groups=16,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(16, 32, 32),
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=16,
            sample_size=64,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=VOCAB_SIZE,
                hidden_size=text_width,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=MODEL_MAX_LENGTH,
                projection_dim=text_width,
                bos_token_id=49406,
                eos_token_id=49407,
                pad_token_id=49407,
            )
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder.eval(),
        tokenizer=clip_tokenizer(),
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)


def embedded_model_path() -> Path:
    """The folder of the embedded default model, built (atomically) on first use."""
    root = cache_root()
    folder = root / f"embedded-{EMBEDDED_VERSION}"
    if (folder / "model_index.json").exists():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        log.info("building the embedded default model in %s", folder)
        build_embedded_model(tmp)
        try:
            os.rename(tmp, folder)
        except OSError as err:
            # another process finished first: its folder is identical, keep it
            if not (folder / "model_index.json").exists():
                raise ModelNotFoundError(
                    f"{folder} exists but holds no model_index.json (not written by daamset?); remove it to rebuild"
                ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: the first CUDA device when there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _looks_like_path(model: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else (``./x``, ``/a/b``, ``a/b/c``) is a path."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model


def _pipeline_kwargs(source: str, local_only: bool, revision: str | None) -> dict[str, Any]:
    """Extra ``from_pretrained`` arguments: drop the safety checker where the pipeline has one."""
    from diffusers import DiffusionPipeline

    index = DiffusionPipeline.load_config(source, local_files_only=local_only, revision=revision)
    if "safety_checker" in index:
        return {"safety_checker": None, "requires_safety_checker": False}
    return {}


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def load_pipeline(
    model: str = EMBEDDED,
    *,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "auto",
    scheduler: str | None = None,
    revision: str | None = None,
    variant: str | None = None,
) -> DiffusionPipeline:
    """Load a diffusers text-to-image pipeline.

    ``model``: ``"embedded"``, a local pipeline folder, or a hub id that is in
    the local Hugging Face cache (downloads are attempted only when
    ``HF_HUB_OFFLINE`` is not set). ``scheduler``: a diffusers scheduler class
    name (e.g. ``"DPMSolverMultistepScheduler"``) built from the model's own
    scheduler config. The safety checker is never loaded.
    """
    import diffusers
    from diffusers import DiffusionPipeline

    torch_dtype = resolve_dtype(dtype)
    target = resolve_device(device)
    scheduler_cls = None
    if scheduler is not None:
        scheduler_cls = getattr(diffusers, scheduler, None)
        if scheduler_cls is None or not hasattr(scheduler_cls, "from_config") or "Scheduler" not in scheduler:
            raise ValueError(f"unknown diffusers scheduler {scheduler!r} (e.g. 'DPMSolverMultistepScheduler')")
    kind = "local folder"
    if model == EMBEDDED:
        source, local_only = str(embedded_model_path()), True
    elif Path(model).expanduser().is_dir():
        source, local_only = str(Path(model).expanduser()), True
    elif Path(model).expanduser().exists():
        raise ModelNotFoundError(f"model {model!r} is a file, expected a diffusers pipeline folder")
    elif _looks_like_path(model):
        raise ModelNotFoundError(f"model {model!r}: no such local folder")
    else:
        source, kind, local_only = model, "hub id", False

    # diffusers renamed torch_dtype to dtype (0.36+); use whichever this version knows
    dtype_key = "dtype" if hasattr(diffusers.pipelines.pipeline_utils, "_resolve_dtype") else "torch_dtype"
    base: dict[str, Any] = {dtype_key: torch_dtype, "revision": revision, "variant": variant}
    # the local cache first; the hub only for hub ids, and only when downloads are allowed
    attempts = [True] if local_only or _hub_offline() else [True, False]
    for attempt, files_only in enumerate(attempts, start=1):
        try:
            kwargs = {**base, **_pipeline_kwargs(source, files_only, revision)}
            pipe = DiffusionPipeline.from_pretrained(source, local_files_only=files_only, **kwargs)
            break
        except (OSError, ValueError) as err:
            if attempt < len(attempts):
                continue
            hint = (
                "; it is not in the local Hugging Face cache and could not be downloaded (HF_HUB_OFFLINE, or no"
                " network): download it on a connected machine (huggingface-cli download ...) or pass a local folder"
                if kind == "hub id"
                else "; expected a diffusers pipeline folder (with model_index.json)"
            )
            reason = str(err).strip().rstrip(".")
            raise ModelNotFoundError(f"could not load model {model!r} ({kind} {source}): {reason}{hint}") from err

    if scheduler_cls is not None:
        pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(target)
