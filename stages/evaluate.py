"""Stage 6, evaluate: the run's masks and boxes against the human-verified ones.

Reads review/ground_truth.json (from ``review pull``) and, for every tau of
``evaluate.taus``, coco/predictions_tau{tau}.json. Only the reviewed images
(those in ground_truth.json) are scored, so an unreviewed image never counts
as a miss. Per tau: COCO AP, AP50, AP75 for masks (segm) and boxes (bbox), and
the DAAM paper's mIoU per noun (see ``pipeline.metrics`` for both
definitions). Writes, each atomically:

- ``eval/summary.json``: ``{"<tau>": {"segm": {"AP", "AP50", "AP75"},
  "bbox": {...}, "miou": .., "n_images", "n_gt", "n_pred"}}``;
- ``eval/per_category.parquet``: one row per (tau, category);
- ``eval/ap_vs_tau.png``: AP (segm, bbox) and mIoU against tau.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.atomic import atomic_path, write_json, write_parquet
from pipeline.config import RunConfig
from pipeline.contracts import PER_CATEGORY, RunDir
from pipeline.metrics import coco_ap, miou_per_noun

__all__ = ["evaluate", "format_table", "plot_summary", "tau_key"]

log = logging.getLogger(__name__)


_AP_KEYS = ("AP", "AP50", "AP75")


def tau_key(tau: float) -> str:
    """The summary's key for a tau (as the predictions file names it: 0.4 -> "0.4")."""
    return f"{tau:g}"


def _load(path: Path, hint: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {hint}")
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def evaluate(run_dir: str | os.PathLike[str], config: RunConfig) -> dict[str, Any]:
    """Score every tau of ``config.evaluate.taus``; returns the summary written to eval/summary.json."""
    run = RunDir(Path(run_dir).resolve())
    gt = _load(
        run.ground_truth_json, f"review the run and pull the annotations first (`daamset review pull {run.root}`)"
    )
    image_ids = sorted(int(img["id"]) for img in gt.get("images", []))
    if not image_ids:
        raise ValueError(f"{run.ground_truth_json} holds no reviewed images: annotate some tasks, then pull again")
    if not config.evaluate.taus:
        raise ValueError("evaluate.taus is empty: nothing to evaluate")
    reviewed = set(image_ids)

    summary: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for tau in sorted(config.evaluate.taus):
        path = run.predictions_at(tau)
        results = _load(path, f"tau {tau:g} was not annotated: add it to annotate.sweep and rerun `daamset run`")
        # predictions on images nobody reviewed are not part of this evaluation
        results = [r for r in results if int(r["image_id"]) in reviewed]
        segm = coco_ap(gt, results, "segm", image_ids=image_ids)
        bbox = coco_ap(gt, results, "bbox", image_ids=image_ids)
        miou = miou_per_noun(gt, results, image_ids=image_ids)
        summary[tau_key(tau)] = {
            "segm": {k: segm[k] for k in _AP_KEYS},
            "bbox": {k: bbox[k] for k in _AP_KEYS},
            "miou": miou["mIoU"],
            "n_images": len(image_ids),
            "n_gt": segm["n_gt"],
            "n_pred": segm["n_pred"],
        }
        miou_by_cat = {row["category_id"]: row["mIoU"] for row in miou["per_category"]}
        bbox_by_cat = {row["category_id"]: row for row in bbox["per_category"]}
        for row in segm["per_category"]:
            b = bbox_by_cat[row["category_id"]]
            rows.append(
                {
                    "tau": float(tau),
                    "category_id": row["category_id"],
                    "category": row["category"],
                    **{f"segm_{k}": row[k] for k in _AP_KEYS},
                    **{f"bbox_{k}": b[k] for k in _AP_KEYS},
                    "miou": miou_by_cat.get(row["category_id"]),
                    "n_gt": row["n_gt"],
                    "n_pred": row["n_pred"],
                }
            )
        log.info("tau %g: segm AP %s, bbox AP %s, mIoU %s", tau, segm["AP"], bbox["AP"], miou["mIoU"])

    write_json(run.eval_summary, summary, indent=2)
    write_parquet(run.eval_per_category, rows, PER_CATEGORY)
    plot_summary(summary, run.eval_plot)
    return summary


def plot_summary(summary: dict[str, Any], target: str | os.PathLike[str]) -> Path:
    """AP (segm, bbox) and mIoU against tau, as a PNG written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = sorted(summary, key=float)
    xs = [float(t) for t in taus]

    def series(get: Any) -> list[float]:
        return [float("nan") if get(summary[t]) is None else float(get(summary[t])) for t in taus]

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    ax.plot(xs, series(lambda s: s["segm"]["AP"]), "o-", label="mask AP")
    ax.plot(xs, series(lambda s: s["segm"]["AP50"]), "o--", label="mask AP50")
    ax.plot(xs, series(lambda s: s["bbox"]["AP"]), "s-", label="box AP")
    ax.plot(xs, series(lambda s: s["miou"]), "^-", label="mIoU per noun")
    ax.set_xlabel("tau (mask threshold)")
    ax.set_ylabel("score")
    ax.set_ylim(0.0, 1.05)
    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    n = next(iter(summary.values()), {}).get("n_images")
    ax.set_title(f"predictions vs reviewed ground truth ({n} images)" if n else "predictions vs reviewed ground truth")
    fig.tight_layout()
    target = Path(target)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return target


def format_table(summary: dict[str, Any]) -> str:
    """The summary as a fixed-width text table, one line per tau (AP and mIoU in percent)."""

    def cell(v: Any) -> str:
        return f"{'-':>6}" if v is None else f"{100.0 * float(v):6.1f}"

    head = ("tau", "maskAP", "AP50", "AP75", "boxAP", "AP50", "AP75", "mIoU", "images", "gt", "pred")
    widths = (5, 6, 6, 6, 6, 6, 6, 6, 6, 5, 5)
    lines = [" ".join(f"{h:>{w}}" for h, w in zip(head, widths))]
    lines.append("-" * len(lines[0]))
    for key in sorted(summary, key=float):
        s = summary[key]
        values = [
            f"{float(key):5.2f}",
            *(cell(s["segm"][k]) for k in _AP_KEYS),
            *(cell(s["bbox"][k]) for k in _AP_KEYS),
            cell(s["miou"]),
            f"{s.get('n_images', 0):6d}",
            f"{s.get('n_gt', 0):5d}",
            f"{s.get('n_pred', 0):5d}",
        ]
        lines.append(" ".join(values))
    lines.append("AP: COCO, IoU 0.50:0.95 (AP50, AP75 at one IoU); mIoU: per noun and image, as in DAAM")
    return "\n".join(lines)
