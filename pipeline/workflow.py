"""The dataset run: a plan of stage tasks, executed in a plain loop or on Dask.

The plan is a list of ``Task`` records (rechunker's idea: a small, printable
vocabulary). ``execute_inline`` defines what running the plan means (each task
after its dependencies, in order); ``execute_dask`` must agree with it and only
adds parallelism: one future per task, dependencies passed as futures, the
``GPU`` resource asked for by generation when the cluster has it.

extract runs first in this process (it decides how many partitions there are);
then generate -> annotate per partition, pipelined on the cluster; then export.
With ``inline`` as ``cluster.scheduler`` no Dask cluster is started at all.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml
from dask.base import tokenize
from tqdm.auto import tqdm

from pipeline.atomic import write_text
from pipeline.cluster import INLINE, dask_client, gpu_resource_available
from pipeline.config import ConfigError, RunConfig, config_from_dict, config_to_dict
from pipeline.contracts import RunDir
from stages import annotate, export, extract, generate

__all__ = ["Task", "plan_partitions", "execute_inline", "execute_dask", "run_dataset", "format_summary"]

log = logging.getLogger(__name__)

# Sections that change what a run writes. cluster, review and evaluate do not,
# so a run may be resumed on another cluster or reviewed with other settings.
_OUTPUT_SECTIONS = ("corpus", "model", "generation", "heatmap", "extract", "annotate", "export")


@dataclass(frozen=True)
class Task:
    """One unit of work: ``func(*args)`` after the tasks named in ``depends_on``."""

    key: str
    stage: str
    func: Callable[..., Any]
    args: tuple[Any, ...]
    depends_on: tuple[str, ...] = ()
    resources: Mapping[str, float] | None = field(default=None, hash=False)


def plan_partitions(run: RunDir, config: RunConfig, n_prompts: int, *, gpu: bool = False) -> list[Task]:
    """generate -> annotate tasks, one pair per partition of prompts."""
    n_partitions = math.ceil(n_prompts / config.cluster.partition_size)
    token = tokenize(str(run.root.resolve()), config_to_dict(config))[:10]
    tasks: list[Task] = []
    for p in range(n_partitions):
        gen_key = f"generate-{p:05d}-{token}"
        tasks.append(
            Task(gen_key, "generate", generate.run_partition, (run, config, p), resources={"GPU": 1} if gpu else None)
        )
        tasks.append(
            Task(f"annotate-{p:05d}-{token}", "annotate", annotate.run_partition, (run, config, p), (gen_key,))
        )
    return tasks


def _progress_bars(tasks: Sequence[Task]) -> dict[str, tqdm]:
    stages = dict.fromkeys(t.stage for t in tasks)
    return {
        s: tqdm(total=sum(t.stage == s for t in tasks), desc=f"{s:>9}", unit="part", position=i, leave=True)
        for i, s in enumerate(stages)
    }


def execute_inline(tasks: Sequence[Task]) -> dict[str, Any]:
    """Run every task in this process, in plan order (the reference executor)."""
    results: dict[str, Any] = {}
    bars = _progress_bars(tasks)
    try:
        for task in tasks:
            missing = [d for d in task.depends_on if d not in results]
            if missing:
                raise RuntimeError(f"task {task.key} planned before its dependencies {missing}")
            results[task.key] = task.func(*task.args)
            bars[task.stage].update()
    finally:
        for bar in bars.values():
            bar.close()
    return results


def _after(func: Callable[..., Any], args: tuple[Any, ...], *dependencies: Any) -> Any:
    """Call ``func(*args)``; ``dependencies`` only make Dask wait for them."""
    return func(*args)


def execute_dask(tasks: Sequence[Task], client: Any) -> dict[str, Any]:
    """Submit the plan to a Dask cluster; same results as ``execute_inline``."""
    from distributed import as_completed

    futures: dict[str, Any] = {}
    stage_of: dict[str, str] = {}
    for task in tasks:
        deps = [futures[d] for d in task.depends_on]
        futures[task.key] = client.submit(
            _after, task.func, task.args, *deps, key=task.key, resources=task.resources, pure=False, retries=0
        )
        stage_of[futures[task.key].key] = task.stage
    bars = _progress_bars(tasks)
    results: dict[str, Any] = {}
    errors: list[str] = []
    try:
        for future in as_completed(list(futures.values())):
            if future.status == "error":
                errors.append(f"{future.key}: {future.exception()!r}")
            else:
                results[future.key] = future.result()
            bars[stage_of[future.key]].update()
    finally:
        for bar in bars.values():
            bar.close()
    if errors:
        raise RuntimeError(
            "some partitions failed (finished ones are kept; rerun the same command to resume):\n  "
            + "\n  ".join(errors)
        )
    return results


def _prepare_run_dir(run: RunDir, config: RunConfig, force: bool) -> None:
    """Write run.yaml, or check that a resumed run uses the same output settings."""
    run.root.mkdir(parents=True, exist_ok=True)
    wanted = config_to_dict(config)
    if run.config.exists():
        previous = config_to_dict(config_from_dict(yaml.safe_load(run.config.read_text(encoding="utf-8"))))
        changed = [
            f"{section}: {previous[section]!r} -> {wanted[section]!r}"
            for section in _OUTPUT_SECTIONS
            if previous[section] != wanted[section]
        ]
        if changed and not force:
            raise ConfigError(
                f"{run.root} was made with another config; use a new --out, or --force to redo it. Changed: "
                + "; ".join(changed)
            )
        if changed:
            log.warning("--force: redoing %s with a changed config", run.root)
            _clear_outputs(run)
    write_text(run.config, yaml.safe_dump(wanted, sort_keys=False))


def _clear_outputs(run: RunDir) -> None:
    for folder in (run.extract, run.generate, run.annotate, run.coco, run.stats, run.previews, run.images, run.heatmaps):
        shutil.rmtree(folder, ignore_errors=True)


def run_dataset(
    config: RunConfig, out: str | Path, *, prompts: str | Path | None = None, force: bool = False
) -> dict[str, Any]:
    """Run (or resume) the whole dataset job into ``out``; return a summary."""
    run = RunDir(Path(out))
    if prompts is not None:
        config = config.replace(corpus=str(Path(prompts).resolve()))
    if not config.corpus:
        raise ConfigError("no prompt corpus: set `corpus` in the config or pass --prompts")
    _prepare_run_dir(run, config, force)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    extracted = extract.run(run, config)
    timings["extract"] = time.perf_counter() - start
    n_prompts = pq.read_metadata(run.prompts).num_rows

    start = time.perf_counter()
    if config.cluster.scheduler == INLINE:
        results = execute_inline(plan_partitions(run, config, n_prompts))
        where = "in this process"
    else:
        with dask_client(config.cluster) as client:
            gpu = gpu_resource_available(client)
            results = execute_dask(plan_partitions(run, config, n_prompts, gpu=gpu), client)
            where = f"on Dask ({len(client.scheduler_info(n_workers=-1)['workers'])} workers{', GPU' if gpu else ''})"
    timings["generate+annotate"] = time.perf_counter() - start

    start = time.perf_counter()
    exported = export.run(run, config)
    timings["export"] = time.perf_counter() - start

    generated = [r for k, r in results.items() if k.startswith("generate-")]
    return {
        "run_dir": str(run.root),
        "executed": where,
        "extract": extracted,
        "generate": {
            "images": sum(r["images"] for r in generated),
            "skipped": sum(r["skipped"] for r in generated),
            "partitions_done_before": sum(bool(r.get("resumed")) for r in generated),
        },
        "export": exported,
        "seconds": {k: round(v, 2) for k, v in timings.items()},
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """A short human-readable account of a run."""
    ex, gen, out = summary["extract"], summary["generate"], summary["export"]
    lines = [
        f"daamset run finished: {summary['run_dir']} ({summary['executed']})",
        f"  prompts    {ex.get('prompts', '?')} accepted, {ex.get('skipped', 0)} skipped",
        f"  images     {gen['images']} ({gen['partitions_done_before']} partitions resumed), {gen['skipped']} skipped",
        f"  instances  {out.get('annotations', '?')} in {out.get('categories', '?')} categories"
        f" at tau={out.get('tau')} ({out.get('normalize')} normalisation)",
        f"  skipped    {out.get('skipped', 0)} in total, reasons in {out.get('skipped_file')}",
        f"  COCO       {out.get('instances_json')}",
        f"  stats      {out.get('stats_dir')}",
        f"  previews   {out.get('previews_dir')}",
        "  seconds    " + ", ".join(f"{k} {v}" for k, v in summary["seconds"].items()),
    ]
    return "\n".join(lines)
