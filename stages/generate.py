"""Stage 2, generate: images and DAAM heat maps for one partition of prompts.

Reads extract/prompts.parquet; writes images/NNNNNNNN.png,
heatmaps/NNNNNNNN.safetensors (per-token maps of every word, all parts of
speech) and, last, generate/part-NNNNN.parquet (GENERATED), whose presence
marks the partition done. Every image has its own seed derived from the run
seed, the prompt id and the image's index, so a resumed run, or the same
prompt in another batch, gets the same starting noise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow.compute as pc

from pipeline.atomic import atomic_path, read_parquet, write_parquet
from pipeline.cluster import current_worker_name
from pipeline.config import ModelConfig, RunConfig
from pipeline.contracts import GENERATED, PROMPTS, SKIPPED, RunDir, image_id_for

__all__ = ["run_partition", "image_seed", "partition_prompts"]

log = logging.getLogger(__name__)


def image_seed(run_seed: int, prompt_id: int, index_in_prompt: int) -> int:
    """A 63-bit seed for one image, independent of batching and partitioning."""
    state = np.random.SeedSequence([run_seed, prompt_id, index_in_prompt]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def partition_prompts(run: RunDir, config: RunConfig, partition: int) -> list[dict[str, Any]]:
    """The prompts of one partition (prompt_id // partition_size == partition)."""
    size = config.cluster.partition_size
    table = read_parquet(run.prompts, PROMPTS)
    ids = table["prompt_id"]
    mask = pc.and_(pc.greater_equal(ids, partition * size), pc.less(ids, (partition + 1) * size))
    return table.filter(mask).sort_by("prompt_id").to_pylist()


@lru_cache(maxsize=1)
def _pipeline(model: ModelConfig) -> Any:
    """The model, loaded once per process (per Dask worker) and reused."""
    from pipeline.models import load_pipeline

    log.info("loading model %s on this worker", model.id)
    return load_pipeline(
        model.id,
        dtype=model.dtype,
        device=model.device,
        scheduler=model.scheduler,
        revision=model.revision,
        variant=model.variant,
    )


def _trace_options(config: RunConfig) -> dict[str, Any]:
    h = config.heatmap
    return {
        "resolutions": h.resolutions,
        "layers": h.layers,
        "first_steps": h.first_steps,
        "last_steps": h.last_steps,
        "step_range": tuple(h.step_range) if h.step_range else None,
        "per_step": h.per_step,
    }


def _generate_batch(
    run: RunDir, config: RunConfig, pipe: Any, batch: Sequence[dict[str, Any]], worker: str
) -> list[dict[str, Any]]:
    import torch

    from pipeline.daam import trace

    g = config.generation
    ipp = g.images_per_prompt
    seeds = [image_seed(g.seed, p["prompt_id"], k) for p in batch for k in range(ipp)]
    # CPU generators: the same seed gives the same noise on CPU and GPU machines.
    generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
    prompts = [p["prompt"] for p in batch]
    call: dict[str, Any] = {
        "num_inference_steps": g.steps,
        "guidance_scale": g.guidance_scale,
        "num_images_per_prompt": ipp,
        "generator": generators,
        "height": g.height,
        "width": g.width,
    }
    if g.negative_prompt is not None:
        call["negative_prompt"] = [g.negative_prompt] * len(prompts)
    with trace(pipe, **_trace_options(config)) as tracer:
        images = pipe(prompts, **call).images
    heat_maps = tracer.heat_maps()
    rows = []
    for i, (image, heat_map) in enumerate(zip(images, heat_maps, strict=True)):
        record = batch[i // ipp]
        index = i % ipp
        image_id = image_id_for(record["prompt_id"], index, ipp)
        with atomic_path(run.image_file(image_id)) as tmp:
            image.save(tmp, format="PNG")
        with atomic_path(run.heatmap_file(image_id)) as tmp:
            heat_map.with_params(seed=seeds[i], image_id=image_id, prompt_id=record["prompt_id"]).save(tmp)
        rows.append(
            {
                "image_id": image_id,
                "prompt_id": record["prompt_id"],
                "index_in_prompt": index,
                "seed": seeds[i],
                "file_name": str(run.image_file(image_id).relative_to(run.root)),
                "heatmap_file": str(run.heatmap_file(image_id).relative_to(run.root)),
                "width": image.width,
                "height": image.height,
                "model": config.model.id,
                "steps": g.steps,
                "guidance_scale": g.guidance_scale,
                "n_prompt_tokens": heat_map.n_prompt_tokens,
                "truncated": heat_map.truncated,
                "worker": worker,
            }
        )
    return rows


def run_partition(run: RunDir, config: RunConfig, partition: int) -> dict[str, Any]:
    """Generate one partition (skipped when its part file exists); return counts."""
    part = run.generate_part(partition)
    if part.exists():
        skipped = run.generate_skipped(partition)
        return {
            "partition": partition,
            "images": read_parquet(part).num_rows,
            "skipped": read_parquet(skipped).num_rows if skipped.exists() else 0,
            "resumed": True,
        }
    prompts = partition_prompts(run, config, partition)
    pipe = _pipeline(config.model)
    worker = current_worker_name()
    rows: list[dict[str, Any]] = []
    skips: list[dict[str, Any]] = []
    size = config.generation.batch_size
    for start in range(0, len(prompts), size):
        batch = prompts[start : start + size]
        try:
            rows += _generate_batch(run, config, pipe, batch, worker)
        except Exception as err:  # one bad prompt must not stop the run: retry alone, then skip
            if len(batch) == 1:
                log.warning("prompt %s skipped: %r", batch[0]["prompt_id"], err)
                skips.append(_skip(batch[0], f"generation failed: {type(err).__name__}: {err}"))
                continue
            for record in batch:
                try:
                    rows += _generate_batch(run, config, pipe, [record], worker)
                except Exception as single_err:
                    log.warning("prompt %s skipped: %r", record["prompt_id"], single_err)
                    skips.append(_skip(record, f"generation failed: {type(single_err).__name__}: {single_err}"))
    # the skip file first, the part file last: the part file marks the partition done
    write_parquet(run.generate_skipped(partition), skips, SKIPPED)
    write_parquet(part, rows, GENERATED)
    return {"partition": partition, "images": len(rows), "skipped": len(skips), "resumed": False}


def _skip(record: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "stage": "generate",
        "source": record.get("source"),
        "source_row": record.get("source_row"),
        "prompt_id": record["prompt_id"],
        "image_id": None,
        "input": record["prompt"],
        "reason": reason,
    }
