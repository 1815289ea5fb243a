"""The README's preview picture: a few images of a finished run, their instances and noun maps.

    .venv/bin/python benchmarks/readme_preview.py outputs/default --out docs/preview.png [--images 1 2 3 4]

One row per image: the generated picture, the instances at the run's main tau
(masks, boxes, category and score, as ``export`` draws them) and the DAAM map of
every object the extract stage found (``stats`` and ``previews`` of the run hold
the rest). Nothing is computed here that the run did not write.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.atomic import atomic_path, read_parquet  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.contracts import GENERATED, INSTANCES, OBJECTS, PROMPTS, RunDir  # noqa: E402
from pipeline.daam import HeatMap  # noqa: E402
from pipeline.masks import decode  # noqa: E402
from pipeline.overlay import draw_instances, word_grid  # noqa: E402
from stages.export import read_partitions  # noqa: E402


def preview_rows(run_dir: Path, image_ids: Sequence[int], min_side: int = 160) -> Image.Image:
    """The picture: one ``word_grid`` row per image, stacked."""
    run = RunDir(run_dir)
    config = load_config(run.config)
    generated = {r["image_id"]: r for r in read_partitions(run.generate, "part-*.parquet", GENERATED).to_pylist()}
    prompts = {r["prompt_id"]: r["prompt"] for r in read_parquet(run.prompts, PROMPTS).to_pylist()}
    objects = read_parquet(run.objects, OBJECTS).to_pylist()
    instances = read_partitions(run.annotate, "instances-*.parquet", INSTANCES).to_pandas()
    # the main tau's instances, matched as export matches them (tau is stored as float32)
    instances = instances[np.isclose(instances["tau"], config.annotate.tau)]
    rows = []
    for image_id in image_ids:
        if image_id not in generated:
            raise KeyError(f"{run_dir}: no generated image {image_id}; it has {sorted(generated)[:10]}...")
        g = generated[image_id]
        image = Image.open(run.root / g["file_name"]).convert("RGB")
        heat = HeatMap.load(run.root / g["heatmap_file"])
        size = (g["height"], g["width"])
        maps = {
            o["text"]: heat.upsampled(heat.span(o["start_char"], o["end_char"]), size=size)
            for o in objects
            if o["prompt_id"] == g["prompt_id"]
        }
        mine = instances[instances["image_id"] == image_id].to_dict("records")
        drawn = draw_instances(
            image,
            [decode({"size": [r["height"], r["width"]], "counts": r["rle_counts"]}) for r in mine],
            [list(r["bbox"]) for r in mine],
            [r["category"] for r in mine],
            [r["score"] for r in mine],
        )
        rows.append(
            word_grid(
                image,
                maps,
                title=prompts[g["prompt_id"]],
                columns=2 + len(maps),
                normalize=config.annotate.normalize,
                min_side=min_side,
                extra_tiles=[(drawn, f"instances, tau {config.annotate.tau:g}")],
            )
        )
    width = max(r.width for r in rows)
    canvas = Image.new("RGB", (width, sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        canvas.paste(r, (0, y))
        y += r.height
    return canvas


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a finished run folder (e.g. outputs/default)")
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    p.add_argument("--images", type=int, nargs="+", default=[1, 2, 3, 4], help="image ids, one row each")
    args = p.parse_args(argv)
    picture = preview_rows(args.run_dir, args.images)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        picture.save(tmp, format="PNG", optimize=True)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
