"""Stage 4, export: the COCO dataset, Parquet statistics and preview pictures.

Reads every earlier stage's files; writes coco/instances.json (at the main
tau), coco/captions.json, coco/predictions.json (results with scores, for
COCOeval) and coco/predictions_tau<T>.json for each tau annotated,
stats/{words,images,categories,skipped}.parquet, and previews/*.png. Export
is cheap and always redone from the partitions, so its files always agree.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image
from tqdm.auto import tqdm

from pipeline import coco
from pipeline.atomic import atomic_path, read_parquet, write_parquet
from pipeline.config import RunConfig
from pipeline.contracts import (
    CATEGORY_STATS,
    GENERATED,
    IMAGE_STATS,
    INSTANCES,
    OBJECTS,
    PROMPTS,
    SKIPPED,
    WORD_STATS,
    RunDir,
)
from pipeline.vocabulary import category_names

__all__ = ["run", "read_partitions"]

log = logging.getLogger(__name__)



def read_partitions(folder: Path, pattern: str, schema: pa.Schema) -> pa.Table:
    """All partition files matching ``pattern`` in ``folder``, concatenated in partition order."""
    parts = [read_parquet(p, schema) for p in sorted(folder.glob(pattern))]
    return pa.concat_tables(parts) if parts else schema.empty_table()


def _categories(config: RunConfig, objects: pa.Table) -> list[dict[str, Any]]:
    return coco.category_list(category_names(config.extract.vocabulary, objects["category"].to_pylist()))


def _annotations(instances: pd.DataFrame, category_ids: dict[str, int], tau: float) -> list[dict[str, Any]]:
    at_tau = instances[np.isclose(instances["tau"], tau)].sort_values(["image_id", "object_index", "instance_index"])
    annotations = []
    for ann_id, row in enumerate(at_tau.itertuples(index=False), start=1):
        rle = {"size": [int(row.height), int(row.width)], "counts": row.rle_counts}
        annotations.append(
            coco.annotation_entry(
                ann_id,
                row.image_id,
                category_ids[row.category],
                rle,
                score=float(row.score),
                extra={"text": row.text, "object_index": int(row.object_index), "tau": float(row.tau)},
            )
        )
    return annotations


def _image_entries(images: pd.DataFrame, prompts: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        coco.image_entry(
            row.image_id,
            row.file_name,
            row.width,
            row.height,
            extra={"prompt_id": int(row.prompt_id), "prompt": prompts[row.prompt_id]["prompt"], "seed": int(row.seed)},
        )
        for row in images.itertuples(index=False)
    ]


def run(run: RunDir, config: RunConfig) -> dict[str, Any]:
    """Write the dataset files of a finished run; return a summary of what was written."""
    prompts = {r["prompt_id"]: r for r in read_parquet(run.prompts, PROMPTS).to_pylist()}
    objects = read_parquet(run.objects, OBJECTS)
    images = read_partitions(run.generate, "part-*.parquet", GENERATED).to_pandas().sort_values("image_id")
    instances = read_partitions(run.annotate, "instances-*.parquet", INSTANCES).to_pandas()
    word_stats = read_partitions(run.annotate, "words-*.parquet", WORD_STATS)
    categories = _categories(config, objects)
    category_ids = {c["name"]: c["id"] for c in categories}
    unknown = set(instances["category"]) - set(category_ids)
    if unknown:
        raise ValueError(f"instances name categories missing from the vocabulary: {sorted(unknown)}")
    tau = config.annotate.tau
    image_entries = _image_entries(images, prompts)

    info = {
        "description": "daamset: masks from diffusion attentive attribution maps",
        "model": config.model.id,
        "tau": tau,
        "normalize": config.annotate.normalize,
        "threshold": "heat >= tau * max(heat)  (DAAM Eq. 7)"
        if config.annotate.normalize == "max"
        else "(heat - min) / (max - min) > tau  (DAAM reference code)",
    }
    # every tau, also one at which no mask survived; the main tau is also the dataset's
    by_tau = {t: _annotations(instances, category_ids, t) for t in config.annotation_taus}
    annotations = by_tau[tau]
    coco.save_coco(run.instances_json, coco.instances_dataset(image_entries, annotations, categories, info=info))
    coco.save_coco(run.predictions_json, coco.results_from_annotations(annotations))
    for t, at_tau in by_tau.items():
        coco.save_coco(run.predictions_at(t), coco.results_from_annotations(at_tau))
    captions = [
        coco.caption_entry(row.image_id, row.image_id, prompts[row.prompt_id]["prompt"])
        for row in images.itertuples(index=False)
    ]
    coco.save_coco(run.captions_json, coco.captions_dataset(image_entries, captions, info=info))

    skipped = _write_stats(run, config, prompts, objects, images, instances, word_stats, category_ids)
    previews = _write_previews(run, config, images, instances, prompts)
    return {
        "images": len(image_entries),
        "annotations": len(annotations),
        "categories": len(categories),
        "tau": tau,
        "normalize": config.annotate.normalize,
        "skipped": skipped,
        "previews": previews,
        "instances_json": str(run.instances_json),
        "skipped_file": str(run.skipped),
        "stats_dir": str(run.stats),
        "previews_dir": str(run.previews),
    }


def _write_stats(
    run: RunDir,
    config: RunConfig,
    prompts: dict[int, dict[str, Any]],
    objects: pa.Table,
    images: pd.DataFrame,
    instances: pd.DataFrame,
    word_stats: pa.Table,
    category_ids: dict[str, int],
) -> int:
    tau = config.annotate.tau
    main = instances[np.isclose(instances["tau"], tau)]
    write_parquet(run.stats / "words.parquet", word_stats, WORD_STATS)

    objects_df = objects.to_pandas()
    per_image = []
    n_objects = objects_df.groupby("prompt_id").size().to_dict()
    n_instances = main.groupby("image_id").size().to_dict()
    for row in images.itertuples(index=False):
        per_image.append(
            {
                "image_id": row.image_id,
                "prompt_id": row.prompt_id,
                "prompt": prompts[row.prompt_id]["prompt"],
                "file_name": row.file_name,
                "width": row.width,
                "height": row.height,
                "seed": row.seed,
                "truncated": bool(row.truncated),
                "n_objects": int(n_objects.get(row.prompt_id, 0)),
                "n_instances": int(n_instances.get(row.image_id, 0)),
            }
        )
    write_parquet(run.stats / "images.parquet", per_image, IMAGE_STATS)

    words_df = word_stats.to_pandas()
    object_cov = words_df[words_df["object_index"].notna() & np.isclose(words_df["tau"], tau)]
    cov_by_cat: dict[str, float] = {}
    if len(object_cov):
        merged = object_cov.merge(objects_df[["prompt_id", "object_index", "category"]], on=["prompt_id", "object_index"])
        cov_by_cat = merged.groupby("category")["coverage"].mean().to_dict()
    images_of_prompt = images.groupby("prompt_id")["image_id"].apply(list).to_dict()
    per_category = []
    for name, cid in category_ids.items():
        mentions = objects_df[objects_df["category"] == name]
        inst = main[main["category"] == name]
        n_img = len({i for p in mentions["prompt_id"].unique() for i in images_of_prompt.get(p, [])})
        per_category.append(
            {
                "category_id": cid,
                "category": name,
                "n_mentions": len(mentions),
                "n_images": n_img,
                "n_instances": len(inst),
                "mean_area": float(inst["area"].mean()) if len(inst) else None,
                "mean_score": float(inst["score"].mean()) if len(inst) else None,
                "mean_coverage": cov_by_cat.get(name),
            }
        )
    write_parquet(run.stats / "categories.parquet", per_category, CATEGORY_STATS)

    skipped = [read_parquet(run.extract_skipped, SKIPPED)] if run.extract_skipped.exists() else []
    skipped.append(read_partitions(run.generate, "skipped-*.parquet", SKIPPED))
    skipped.append(read_partitions(run.annotate, "skipped-*.parquet", SKIPPED))
    table = pa.concat_tables(skipped)
    write_parquet(run.skipped, table, SKIPPED)
    return table.num_rows


def _write_previews(
    run: RunDir, config: RunConfig, images: pd.DataFrame, instances: pd.DataFrame, prompts: dict[int, dict[str, Any]]
) -> int:
    """Overlay pictures for an evenly spaced sample of images."""
    from pipeline.daam import HeatMap
    from pipeline.masks import decode
    from pipeline.overlay import draw_instances, word_grid

    n = min(config.export.previews, len(images))
    if n == 0:
        return 0
    picks = images.iloc[np.linspace(0, len(images) - 1, n).round().astype(int)]
    main = instances[np.isclose(instances["tau"], config.annotate.tau)]
    for row in tqdm(list(picks.itertuples(index=False)), desc="  previews", unit="img", leave=False):
        image = Image.open(run.root / row.file_name).convert("RGB")
        heat_map = HeatMap.load(run.root / row.heatmap_file)
        size = (row.height, row.width)
        maps = {}
        for word in heat_map.words:
            if word.text.isalnum() and not word.truncated:
                label = word.text if word.occurrence == 0 else f"{word.text} ({word.occurrence + 1})"
                maps[label] = heat_map.upsampled(heat_map.span(word.start, word.end), size=size)
        inst = main[main["image_id"] == row.image_id]
        masks = [decode({"size": [r.height, r.width], "counts": r.rle_counts}) for r in inst.itertuples()]
        drawn = draw_instances(
            image, masks, [list(r.bbox) for r in inst.itertuples()], list(inst["category"]), list(inst["score"])
        )
        picture = word_grid(
            image,
            maps,
            title=f"{row.image_id}: {prompts[row.prompt_id]['prompt']}",
            normalize=config.annotate.normalize,
            extra_tiles=[(drawn, f"instances, tau {config.annotate.tau:g}")],
        )
        with atomic_path(run.previews / f"{row.image_id:08d}.png") as tmp:
            picture.save(tmp, format="PNG")
    return n
