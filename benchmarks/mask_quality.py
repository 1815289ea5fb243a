"""Mask-quality benchmark: held-out scene captions through the normal dataset run, scored
against ground truth measured on the generated pictures themselves.

    .venv/bin/python benchmarks/mask_quality.py --out outputs/bench [--model FOLDER] [--n 60]

1. ``--n`` held-out captions of the scene world (``pipeline.scenes``: never seen
   in training) are written to ``RUN_DIR/benchmark/prompts.txt``;
2. the normal dataset run (``daamset run configs/benchmark.yaml --prompts ...
   --out RUN_DIR``, with ``model.id`` replaced by ``--model`` when given);
3. for every generated picture and every object phrase of its caption, the
   ground truth is the region drawn in the noun's appearance
   (``segment_by_appearance``); an object the picture lacks is a miss;
4. ``RUN_DIR/benchmark/summary.json`` and a printed table:
   - ``generation_accuracy``: drawn objects / requested objects ("two clouds"
     asks for two; the drawn count is the number of separate regions, capped);
   - ``noun_miou`` / ``noun_miou_minmax``: DAAM mIoU per noun occurrence at each
     tau, with tau x max (Eq. 7) and min-max normalisation, over the nouns the
     picture drew (as the paper scores nouns present); ``noun_miou_with_misses``
     counts undrawn nouns as IoU 0; ``baseline_miou``: the whole-image mask;
   - ``segm_AP`` / ``bbox_AP``: COCOeval of the run's predictions at each tau
     (``coco/predictions_tau{tau}.json``) against the measured instances, each
     under the category the run gave the object at that caption span (so a
     parser's compound such as "cyan flower" is scored as the run named it);
   - ``per_pos``: the same mIoU for NOUN, ADJ (an adjective's region is its
     object's) and NUM (a numeral's region is its phrase's objects'), both
     normalisations. Parts of speech come from the scene grammar, which is exact
     for these captions.
All ``{"<tau>": value}`` mappings use ``f"{tau:g}"`` keys ("0.3", "0.4", "0.5").
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import yaml
from PIL import Image
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import coco, masks  # noqa: E402
from pipeline.atomic import write_json, write_text  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.contracts import RunDir  # noqa: E402
from pipeline.daam import HeatMap  # noqa: E402
from pipeline.metrics import coco_ap  # noqa: E402
from pipeline.scenes import heldout_captions, parse_caption, segment_by_appearance  # noqa: E402

log = logging.getLogger("mask_quality")

CONFIG = ROOT / "configs" / "benchmark.yaml"
TAUS = (0.3, 0.4, 0.5)
NORMALIZATIONS = ("max", "minmax")
GT_MIN_AREA = 20  # pixels: the smallest rendered object has ~50; smaller regions are specks or noise


def write_corpus(path: Path, n: int, seed: int = 0) -> list[str]:
    """Write ``n`` held-out captions, one a line, and return them."""
    captions = heldout_captions(n, seed=seed)
    write_text(path, "".join(c + "\n" for c in captions))
    return captions


def benchmark_config(run_dir: Path, model: str | None, resolutions: Sequence[int] | None = None) -> Path:
    """``configs/benchmark.yaml`` with ``model.id`` (and ``heatmap.resolutions``) replaced when given,
    saved beside the results."""
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    if resolutions is not None:
        data.setdefault("heatmap", {})["resolutions"] = [int(r) for r in resolutions]
    if model is not None:
        data.setdefault("model", {})["id"] = str(Path(model).resolve()) if Path(model).exists() else model
    elif not Path(data["model"]["id"]).is_absolute() and (ROOT / data["model"]["id"]).exists():
        data["model"]["id"] = str((ROOT / data["model"]["id"]).resolve())  # relative to the repository
    path = run_dir / "benchmark" / "config.yaml"
    write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path


def run_dataset(config: Path, prompts: Path, run_dir: Path) -> None:
    """The normal dataset run, as a user runs it (a separate process)."""
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(config), "--prompts", str(prompts), "--out", str(run_dir)]
    log.info("running %s", " ".join(cmd))
    done = subprocess.run(cmd, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the dataset run failed with exit status {done.returncode}: {' '.join(cmd)}")


# ------------------------------------------------------------------- scoring


def _generated(run: RunDir) -> list[dict[str, Any]]:
    prompts = {r["prompt_id"]: r["prompt"] for r in pq.read_table(run.prompts).to_pylist()}
    parts = sorted(run.generate.glob("part-*.parquet"))
    if not parts:
        raise FileNotFoundError(f"{run.generate}: no generated partitions; did the run finish?")
    rows = [r for p in parts for r in pq.read_table(p).to_pylist()]
    for r in rows:
        r["prompt"] = prompts[r["prompt_id"]]
    return sorted(rows, key=lambda r: r["image_id"])


def _key(tau: float) -> str:
    return f"{tau:g}"


def score_image(image: np.ndarray, heat: HeatMap, taus: Sequence[float] = TAUS) -> dict[str, list[dict[str, Any]]]:
    """Objects (requested / drawn) and word records (IoU per normalisation and tau) of one picture."""
    h, w = image.shape[:2]
    objects, words, instances = [], [], []
    for phrase in parse_caption(heat.prompt):
        truth = segment_by_appearance(image, phrase.noun, min_area=GT_MIN_AREA)
        regions = masks.split_instances(truth, min_area=GT_MIN_AREA)
        objects.append({"noun": phrase.noun, "requested": phrase.count, "drawn": min(phrase.count, len(regions))})
        instances += [(phrase.noun, phrase.noun_span, r) for r in regions]
        spans = [("NOUN", phrase.noun, phrase.noun_span)] + [("ADJ", wd, sp) for wd, sp in phrase.adjectives]
        if phrase.numeral_span is not None:
            spans.append(("NUM", heat.prompt[slice(*phrase.numeral_span)].lower(), phrase.numeral_span))
        for pos, word, span in spans:
            upsampled = heat.upsampled(heat.span(*span), size=(h, w))
            ious = {
                norm: {_key(t): masks.iou(masks.binary_mask(upsampled, t, norm), truth) for t in taus}
                for norm in NORMALIZATIONS
            }
            words.append({"pos": pos, "word": word, "noun": phrase.noun, "present": bool(truth.any()),
                          "baseline": float(truth.mean()), "iou": ious})  # fmt: skip
    return {"objects": objects, "words": words, "instances": instances}


def _run_categories(run: RunDir) -> dict[int, list[tuple[int, int, str]]]:
    """Per prompt, the (start, end, category) of every object the run's extract stage found."""
    out: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    if run.objects.exists():
        for o in pq.read_table(run.objects).to_pylist():
            out[o["prompt_id"]].append((o["start_char"], o["end_char"], o["category"]))
    return out


def _category_of(noun: str, span: tuple[int, int], found: list[tuple[int, int, str]]) -> str:
    """The run's category for the noun at ``span`` (e.g. "cyan flower" if the parser made a compound of it)."""
    for start, end, category in found:
        if start <= span[0] and span[1] <= end:
            return category
    return noun  # the run found no object there: a category it never predicts


def _ground_truth(run: RunDir, rows: list[dict[str, Any]], per_image: dict[int, list]) -> dict[str, Any]:
    """A COCO instances dict of the measured objects, in the run's categories and ids."""
    run_coco = json.loads(run.instances_json.read_text(encoding="utf-8"))
    categories = [dict(c) for c in run_coco["categories"]]
    by_name = {c["name"]: c["id"] for c in categories}
    found = _run_categories(run)
    images, anns = [], []
    for r in rows:
        images.append(coco.image_entry(r["image_id"], r["file_name"], r["width"], r["height"]))
        for noun, span, region in per_image[r["image_id"]]:
            name = _category_of(noun, span, found[r["prompt_id"]])
            if name not in by_name:
                by_name[name] = max(by_name.values(), default=0) + 1
                categories.append({"id": by_name[name], "name": name, "supercategory": "object"})
            anns.append(coco.annotation_entry(len(anns) + 1, r["image_id"], by_name[name], masks.encode(region)))
    return coco.instances_dataset(images, anns, categories)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def evaluate_run(run_dir: str | Path, taus: Sequence[float] = TAUS) -> dict[str, Any]:
    """Score a finished run of held-out scene captions; write and return the summary."""
    run = RunDir(Path(run_dir))
    rows = _generated(run)
    objects, words, per_image = [], [], {}
    for r in tqdm(rows, desc="benchmark", unit="image"):
        image = np.asarray(Image.open(run.root / r["file_name"]).convert("RGB"))
        scored = score_image(image, HeatMap.load(run.root / r["heatmap_file"]), taus)
        objects += scored["objects"]
        words += scored["words"]
        per_image[r["image_id"]] = scored["instances"]

    def miou(pos: str, norm: str, *, with_misses: bool = False) -> dict[str, float | None]:
        chosen = [w for w in words if w["pos"] == pos and (with_misses or w["present"])]
        return {_key(t): _mean([w["iou"][norm][_key(t)] if w["present"] else 0.0 for w in chosen]) for t in taus}

    nouns_present = [w for w in words if w["pos"] == "NOUN" and w["present"]]
    baseline = _mean([w["baseline"] for w in nouns_present])
    gt = _ground_truth(run, rows, per_image)
    ap: dict[str, dict[str, float | None]] = {"segm": {}, "bbox": {}}
    for t in taus:
        path = run.predictions_at(t)
        results = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        for kind in ap:
            ap[kind][_key(t)] = coco_ap(gt, results, kind)["AP"] if results is not None else None
    per_noun = defaultdict(lambda: {"requested": 0, "drawn": 0})
    for o in objects:
        per_noun[o["noun"]]["requested"] += o["requested"]
        per_noun[o["noun"]]["drawn"] += o["drawn"]
    resolutions = load_config(run.config).heatmap.resolutions if run.config.exists() else None
    summary = {
        "run_dir": str(run.root),
        "heatmap_resolutions": resolutions,  # None: every cross-attention layer (the method)
        "n_images": len(rows),
        "n_objects_requested": sum(o["requested"] for o in objects),
        "generation_accuracy": sum(o["drawn"] for o in objects) / max(1, sum(o["requested"] for o in objects)),
        "noun_miou": miou("NOUN", "max"),
        "noun_miou_minmax": miou("NOUN", "minmax"),
        "noun_miou_with_misses": miou("NOUN", "max", with_misses=True),
        "baseline_miou": {_key(t): baseline for t in taus},
        "segm_AP": ap["segm"],
        "bbox_AP": ap["bbox"],
        "per_pos": {
            pos: {"n": sum(w["pos"] == pos and w["present"] for w in words),
                  **{norm: miou(pos, norm) for norm in NORMALIZATIONS}}  # fmt: skip
            for pos in ("NOUN", "ADJ", "NUM")
        },
        "per_noun": {
            n: {**v, "accuracy": v["drawn"] / v["requested"],
                "miou_0.4": _mean([w["iou"]["max"]["0.4"] for w in nouns_present if w["noun"] == n])
                if 0.4 in taus else None}  # fmt: skip
            for n, v in sorted(per_noun.items())
        },
        "notes": "mIoU over nouns the picture drew; ground truth from segment_by_appearance; "
        "normalisation 'max' is Eq. 7 (tau x max), 'minmax' the anchor's code",
    }
    write_json(run.root / "benchmark" / "summary.json", summary, indent=2)
    return summary


def format_table(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table (rows: figure x normalisation; columns: tau)."""
    taus = list(summary["noun_miou"])

    def cell(v: float | None) -> str:
        return "   -  " if v is None else f"{v:6.3f}"

    lines = [f"{'':28s}" + "".join(f"  tau={t:<4s}" for t in taus)]
    for pos, figures in summary["per_pos"].items():
        for norm in NORMALIZATIONS:
            lines.append(f"{pos + ' mIoU (' + norm + ', n=' + str(figures['n']) + ')':28s}"
                         + "".join(f"  {cell(figures[norm][t])}  " for t in taus))  # fmt: skip
    lines.append(f"{'NOUN mIoU with misses (max)':28s}" + "".join(f"  {cell(summary['noun_miou_with_misses'][t])}  " for t in taus))
    lines.append(f"{'whole-image baseline':28s}" + "".join(f"  {cell(summary['baseline_miou'][t])}  " for t in taus))
    lines.append(f"{'segm AP':28s}" + "".join(f"  {cell(summary['segm_AP'][t])}  " for t in taus))
    lines.append(f"{'bbox AP':28s}" + "".join(f"  {cell(summary['bbox_AP'][t])}  " for t in taus))
    lines.append(f"generation accuracy {summary['generation_accuracy']:.3f} "
                 f"({summary['n_objects_requested']} objects in {summary['n_images']} images)")  # fmt: skip
    lines.append("per noun drawn: " + ", ".join(f"{n} {v['accuracy']:.2f}" for n, v in summary["per_noun"].items()))
    res = summary.get("heatmap_resolutions")
    lines.append("heat maps from " + ("every cross-attention layer" if not res else f"the layers at grid heights {res}"))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="run folder (a rerun resumes the dataset run)")
    p.add_argument("--model", default=None, help="trained pipeline folder (default: configs/benchmark.yaml's model.id)")
    p.add_argument("--n", type=int, default=60, help="held-out captions")
    p.add_argument("--seed", type=int, default=0, help="which held-out captions")
    p.add_argument("--resolutions", type=int, nargs="+", default=None,
                   help="heat maps from the layers at these latent grid heights only (heatmap.resolutions)")  # fmt: skip
    p.add_argument("--skip-run", action="store_true", help="only score an existing run folder")
    p.add_argument("--report", type=Path, default=None,
                   help="also write the summary here (the shipped figures: benchmarks/results/mask_quality.json)")  # fmt: skip
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not args.skip_run:
        prompts = args.out / "benchmark" / "prompts.txt"
        write_corpus(prompts, args.n, args.seed)
        run_dataset(benchmark_config(args.out, args.model, args.resolutions), prompts, args.out)
    summary = evaluate_run(args.out)
    print(format_table(summary))
    print(f"written: {args.out / 'benchmark' / 'summary.json'}")
    if args.report is not None:
        command = "benchmarks/mask_quality.py " + " ".join(str(a) for a in (argv if argv is not None else sys.argv[1:]))
        write_json(args.report, {"command": command, **summary, "run_dir": str(args.out)}, indent=2)
        print(f"written: {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
