"""Stage 3, annotate: heat maps to instance masks, boxes and word statistics.

Reads generate/part-NNNNN.parquet, the heat maps it names, and
extract/{words,objects}.parquet; writes annotate/instances-NNNNN.parquet
(INSTANCES: one row per instance of each object word at each tau),
annotate/words-NNNNN.parquet (WORD_STATS: coverage and intensity of every
word, every part of speech, at each tau) and annotate/skipped-NNNNN.parquet
(words the text encoder never saw, past its token limit).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.atomic import read_parquet, write_parquet
from pipeline.config import RunConfig
from pipeline.contracts import GENERATED, INSTANCES, OBJECTS, SKIPPED, WORD_STATS, WORDS, RunDir
from pipeline.daam import HeatMap, HeatMapLookupError
from pipeline.masks import binary_mask, bbox, encode, instance_score, normalize_heat, polygons, split_instances

__all__ = ["run_partition", "object_instances"]

log = logging.getLogger(__name__)


def _rows_by_prompt(path: Any, schema: Any, prompt_ids: set[int]) -> dict[int, list[dict[str, Any]]]:
    table = read_parquet(path, schema)
    table = table.filter(pc.is_in(table["prompt_id"], value_set=pa.array(sorted(prompt_ids), pa.int64())))
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in table.to_pylist():
        grouped[row["prompt_id"]].append(row)
    return grouped


def object_instances(
    heat: np.ndarray, taus: list[float], normalize: str, min_area: int
) -> list[tuple[float, int, np.ndarray, float]]:
    """(tau, instance_index, mask, score) for one object's image-size heat map."""
    norm = normalize_heat(heat, normalize)  # type: ignore[arg-type]
    found = []
    for tau in taus:
        mask = binary_mask(heat, tau, normalize)  # type: ignore[arg-type]
        for index, instance in enumerate(split_instances(mask, min_area=min_area)):
            found.append((tau, index, instance, instance_score(norm, instance)))
    return found


def run_partition(run: RunDir, config: RunConfig, partition: int) -> dict[str, Any]:
    """Annotate one generated partition (skipped when its outputs exist); return counts."""
    instances_path, words_path = run.instances_part(partition), run.word_stats_part(partition)
    if instances_path.exists():  # written last
        return {"partition": partition, "instances": read_parquet(instances_path).num_rows, "resumed": True}
    images = read_parquet(run.generate_part(partition), GENERATED).to_pylist()
    prompt_ids = {row["prompt_id"] for row in images}
    words = _rows_by_prompt(run.words, WORDS, prompt_ids)
    objects = _rows_by_prompt(run.objects, OBJECTS, prompt_ids)
    taus = config.annotation_taus
    normalize = config.annotate.normalize

    instance_rows: list[dict[str, Any]] = []
    word_rows: list[dict[str, Any]] = []
    skips: list[dict[str, Any]] = []
    for image in images:
        heat_map = HeatMap.load(run.root / image["heatmap_file"])
        size = (image["height"], image["width"])
        span_heat: dict[tuple[int, int], np.ndarray | None] = {}

        def heat_of(start: int, end: int, text: str) -> np.ndarray | None:
            key = (start, end)
            if key not in span_heat:
                try:
                    span_heat[key] = heat_map.upsampled(heat_map.span(start, end), size=size)
                except HeatMapLookupError as err:  # past the token limit: recorded, not guessed
                    span_heat[key] = None
                    skips.append(
                        {
                            "stage": "annotate",
                            "source": None,
                            "source_row": None,
                            "prompt_id": image["prompt_id"],
                            "image_id": image["image_id"],
                            "input": text,
                            "reason": str(err),
                        }
                    )
            return span_heat[key]

        for word in words.get(image["prompt_id"], []):
            heat = heat_of(word["start_char"], word["end_char"], word["text"])
            if heat is None:
                continue
            stats = {
                "heat_mean": float(heat.mean()),
                "heat_max": float(heat.max()),
                "heat_min": float(heat.min()),
                "heat_std": float(heat.std()),
            }
            for tau in taus:
                word_rows.append(
                    {
                        "image_id": image["image_id"],
                        "prompt_id": image["prompt_id"],
                        **{k: word[k] for k in ("word_index", "text", "lemma", "pos", "tag", "dep", "object_index")},
                        "tau": tau,
                        "normalize": normalize,
                        "coverage": float(binary_mask(heat, tau, normalize).mean()),  # type: ignore[arg-type]
                        **stats,
                    }
                )
        for obj in objects.get(image["prompt_id"], []):
            heat = heat_of(obj["start_char"], obj["end_char"], obj["text"])
            if heat is None:
                continue
            for tau, index, instance, score in object_instances(heat, taus, normalize, config.annotate.min_area):
                rle = encode(instance)
                instance_rows.append(
                    {
                        "image_id": image["image_id"],
                        "prompt_id": image["prompt_id"],
                        "object_index": obj["object_index"],
                        "category": obj["category"],
                        "text": obj["text"],
                        "tau": tau,
                        "normalize": normalize,
                        "instance_index": index,
                        "rle_counts": rle["counts"],
                        "height": size[0],
                        "width": size[1],
                        "bbox": [float(v) for v in bbox(rle)],
                        "area": float(instance.sum()),
                        "score": score,
                        "polygons": polygons(instance),
                    }
                )
    write_parquet(run.annotate_skipped(partition), skips, SKIPPED)
    write_parquet(words_path, word_rows, WORD_STATS)
    write_parquet(instances_path, instance_rows, INSTANCES)  # last: marks the partition done
    return {"partition": partition, "instances": len(instance_rows), "resumed": False}
