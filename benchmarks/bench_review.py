"""Label Studio timings: server first start and restart, push and pull of 100 images.

Usage: .venv/bin/python benchmarks/bench_review.py [--images 100] [--size 512] [--objects 3]

Starts a fresh server in a temporary data folder (the first start runs the
database migrations), stops it, starts it again (restart), then builds a
synthetic run folder of N images (PNG, SIZE x SIZE, OBJECTS ellipse masks
each, COCO files as the dataset run writes them), pushes all N, accepts
every prediction through the API (a reviewer's work: not timed as push or
pull), and pulls. Needs Label Studio (DAAMSET_LABEL_STUDIO_BIN or
.venv-labelstudio). Prints one JSON object; reported, not asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline import masks  # noqa: E402
from pipeline.coco import annotation_entry, category_list, image_entry, instances_dataset, save_coco  # noqa: E402
from pipeline.config import ReviewConfig, RunConfig  # noqa: E402
from pipeline.contracts import RunDir  # noqa: E402
from pipeline.labelstudio import server  # noqa: E402
from pipeline.labelstudio.client import connect  # noqa: E402
from stages import review  # noqa: E402


def build_run(root: Path, n_images: int, size: int, n_objects: int) -> RunDir:
    run = RunDir(root)
    run.images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    images, annotations = [], []
    for image_id in range(1, n_images + 1):
        file_name = f"images/{image_id:08d}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(run.root / file_name)
        images.append(image_entry(image_id, file_name, size, size))
        for _ in range(n_objects):
            cy, cx = rng.uniform(0.2, 0.8, 2) * size
            ry, rx = rng.uniform(0.05, 0.2, 2) * size
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            cat = int(rng.integers(1, 6))
            annotations.append(
                annotation_entry(len(annotations) + 1, image_id, cat, masks.encode(mask), score=float(rng.random()))
            )
    dataset = instances_dataset(images, annotations, category_list(["cat", "dog", "car", "tree", "hot dog"]))
    save_coco(run.instances_json, dataset)
    results = [{k: a[k] for k in ("image_id", "category_id", "segmentation", "bbox", "score")} for a in annotations]
    save_coco(run.predictions_json, results)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--objects", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "ls-data"
        port = 18000 + int(time.time()) % 1000
        info = server.start(data_dir, port=port)
        first_start = info.seconds
        server.stop(data_dir)
        info = server.start(data_dir, port=port)
        restart = info.seconds
        try:
            run = build_run(Path(tmp) / "run", args.images, args.size, args.objects)
            config = RunConfig(review=ReviewConfig(sample_size=args.images))
            conn = connect(info.url, info.api_key)

            t0 = time.monotonic()
            pushed = review.push(run.root, config, connection=conn)
            push_s = time.monotonic() - t0

            t0 = time.monotonic()
            for task in conn.sdk.tasks.list(project=pushed["project_id"], fields="task_only"):
                (prediction,) = conn.sdk.predictions.list(task=task.id)
                conn.sdk.annotations.create(task.id, result=list(prediction.result))
            accept_s = time.monotonic() - t0

            t0 = time.monotonic()
            pulled = review.pull(run.root, config, connection=conn)
            pull_s = time.monotonic() - t0
            t0 = time.monotonic()
            again = review.push(run.root, config, connection=conn)
            repush_s = time.monotonic() - t0
        finally:
            server.stop(data_dir)

    print(
        json.dumps(
            {
                "images": args.images,
                "image_size": args.size,
                "objects_per_image": args.objects,
                "server_first_start_s": round(first_start, 1),
                "server_restart_s": round(restart, 1),
                "push_s": round(push_s, 2),
                "push_again_no_new_tasks_s": round(repush_s, 2),
                "accept_all_via_api_s": round(accept_s, 2),
                "pull_s": round(pull_s, 2),
                "tasks": pushed["tasks"],
                "imported_again": again["imported"],
                "pulled_instances": pulled["instances"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
