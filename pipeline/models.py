"""Load a text-to-image pipeline: the embedded default model, a local folder or a hub id.

Every model goes through one code path, ``DiffusionPipeline.from_pretrained(folder
or id)``. The embedded default model is a small Stable Diffusion pipeline that
the project trains itself on its procedural scene world (``daamset
train-embedded``, pipeline.training) and ships as an ordinary diffusers folder
(``pipeline/assets/embedded``), so it is loaded exactly as a real model would be
and everything runs on a machine without a GPU or network access. It draws
64x64 scenes of suns, clouds, trees, houses, balls, cars, boats and flowers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

__all__ = [
    "EMBEDDED",
    "EMBEDDED_DIR",
    "ModelNotFoundError",
    "embedded_model_path",
    "load_pipeline",
    "resolve_device",
    "resolve_dtype",
]

EMBEDDED = "embedded"
# The shipped weights of the embedded model (float16 safetensors, ~20 MB): a
# StableDiffusionPipeline trained on the procedural scene world
# (pipeline.scenes) by ``daamset train-embedded``; see pipeline.training.
EMBEDDED_DIR = Path(__file__).resolve().parent / "assets" / "embedded"

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ModelNotFoundError(FileNotFoundError):
    """The requested model is neither a local folder nor available in the local hub cache."""


def embedded_model_path() -> Path:
    """The folder of the embedded default model (shipped with the package)."""
    if not (EMBEDDED_DIR / "model_index.json").exists():
        raise ModelNotFoundError(
            f"the embedded model's weights are missing from {EMBEDDED_DIR} (a partial checkout or install?); "
            "reinstall daamset, or rebuild them with `daamset train-embedded --out DIR --ship` "
        )
    return EMBEDDED_DIR


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
