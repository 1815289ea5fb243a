"""A real Label Studio for the tests, and small synthetic run folders to review.

``labelstudio`` (session scope) uses the server named by LABEL_STUDIO_URL and
LABEL_STUDIO_API_KEY when both are set (CI: `make test` starts one with
`daamset labelstudio start` and exports them); otherwise it starts its own in
a temporary data folder through ``pipeline.labelstudio.server`` (about 40 s
for the first start) and stops it at the end. Label Studio must be installed
(``make setup-labelstudio``, or DAAMSET_LABEL_STUDIO_BIN): without one these
tests fail with the error that says how to install it.

``make_run(root, ...)`` builds a run folder as the dataset run leaves it:
real PNG images, coco/instances.json, coco/predictions.json (main tau 0.4)
and coco/predictions_tau{0.3,0.4,0.5}.json, whose masks grow as tau falls.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipeline import masks
from pipeline.coco import annotation_entry, category_list, image_entry, instances_dataset, save_coco
from pipeline.contracts import RunDir


@dataclass(frozen=True)
class LabelStudioServer:
    url: str
    api_key: str
    data_dir: Path | None  # None: a server the tests did not start


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory: pytest.TempPathFactory) -> Any:
    url, key = os.environ.get("LABEL_STUDIO_URL"), os.environ.get("LABEL_STUDIO_API_KEY")
    if url and key:
        yield LabelStudioServer(url=url.rstrip("/"), api_key=key, data_dir=None)
        return
    from pipeline.labelstudio import server

    data_dir = tmp_path_factory.mktemp("labelstudio-data")
    info = server.start(data_dir, port=free_port())
    try:
        yield LabelStudioServer(url=info.url, api_key=info.api_key, data_dir=data_dir)
    finally:
        server.stop(data_dir)


# ----------------------------------------------------------- synthetic runs

HEIGHT, WIDTH = 48, 64  # not square: a transposed mask would not fit
CATEGORIES = ["cat", "hot dog", "dog"]
MAIN_TAU = 0.4
TAUS = (0.3, 0.4, 0.5)


def _ellipse(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _rect(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((HEIGHT, WIDTH), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _grow(mask: np.ndarray, steps: int) -> np.ndarray:
    """Dilate (steps > 0) or erode (steps < 0) by 4-neighbour steps."""
    m = mask.copy()
    for _ in range(abs(steps)):
        p = np.pad(m, 1, constant_values=steps < 0)
        nb = [p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]]
        m = (m | np.logical_or.reduce(nb)) if steps > 0 else (m & np.logical_and.reduce(nb))
    return m


def synthetic_objects(n_images: int) -> dict[int, list[tuple[int, np.ndarray, float]]]:
    """Per image id: (category id, mask at the main tau, score), deterministic."""
    rng = np.random.default_rng(7)
    out: dict[int, list[tuple[int, np.ndarray, float]]] = {}
    for image_id in range(1, n_images + 1):
        objects = []
        n_obj = 1 + (image_id % 3)  # 2, 3, 1, 2, ...
        for k in range(n_obj):
            cat = 1 + (image_id + k) % len(CATEGORIES)
            cy, cx = 10 + 14 * k, 12 + 18 * k
            if k % 2:
                mask = _rect(cy - 5, cx - 7, cy + 6, cx + 8)
            else:
                mask = _ellipse(cy, cx, 6 + rng.integers(0, 3), 8 + rng.integers(0, 4))
            score = float(np.round(0.3 + 0.6 * rng.random(), 4))
            objects.append((cat, mask, score))
        out[image_id] = objects
    return out


def make_run(root: Path, n_images: int = 6) -> RunDir:
    """A run folder with images, instances.json and predictions per tau."""
    run = RunDir(root)
    run.images.mkdir(parents=True, exist_ok=True)
    objects = synthetic_objects(n_images)
    images, annotations = [], []
    results: dict[float, list[dict[str, Any]]] = {tau: [] for tau in TAUS}
    rng = np.random.default_rng(11)
    for image_id, objs in objects.items():
        file_name = f"images/{image_id:08d}.png"
        Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(run.root / file_name)
        images.append(image_entry(image_id, file_name, WIDTH, HEIGHT, extra={"prompt": f"prompt {image_id}"}))
        for cat, mask, score in objs:
            rle = masks.encode(mask)
            annotations.append(annotation_entry(len(annotations) + 1, image_id, cat, rle, score=score))
            for tau in TAUS:
                grown = _grow(mask, int(round((MAIN_TAU - tau) * 10)))  # lower tau: larger mask
                entry = annotation_entry(0, image_id, cat, masks.encode(grown), score=score)
                results[tau].append({k: entry[k] for k in ("image_id", "category_id", "segmentation", "bbox", "score")})
    save_coco(run.instances_json, instances_dataset(images, annotations, category_list(CATEGORIES)))
    save_coco(run.predictions_json, results[MAIN_TAU])
    for tau in TAUS:
        save_coco(run.predictions_at(tau), results[tau])
    return run
