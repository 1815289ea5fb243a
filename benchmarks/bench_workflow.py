"""Throughput of the dataset run's CPU stages, and the speed-up of 2 Dask workers over 1.

Measured in one run, side by side, on the embedded model:
- extract: prompts/s (spaCy parse + objects), one process;
- annotate + export: images/s, one core, from finished generate partitions;
- the whole run (generate + annotate, export) on a LocalCluster with 1 and
  with 2 workers (one thread each): wall time and speed-up.

    .venv/bin/python benchmarks/bench_workflow.py --out outputs/bench_workflow.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # "one core" for the in-process stages

import torch  # noqa: E402

from pipeline.config import load_config  # noqa: E402
from pipeline.contracts import RunDir  # noqa: E402
from pipeline.config import config_with  # noqa: E402
from pipeline.workflow import run_dataset  # noqa: E402
from stages import annotate, export, extract  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CAPTIONS = REPO.parent / "shared" / "data" / "captions_val2017_first1000.json"


def _corpus(tmp: Path, n: int) -> Path:
    """The first ``n`` COCO captions as a text corpus (one caption per image)."""
    data = json.loads(CAPTIONS.read_text())
    seen, lines = set(), []
    for ann in data["annotations"]:
        if ann["image_id"] not in seen:
            seen.add(ann["image_id"])
            lines.append(" ".join(ann["caption"].split()))
        if len(lines) == n:
            break
    path = tmp / "prompts.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--extract-prompts", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="daamset-bench-"))
    base = load_config(REPO / "configs" / "default.yaml")
    base = config_with(base, "generation", steps=args.steps)
    base = config_with(base, "export", previews=0)
    results: dict[str, float] = {}

    # extract throughput
    corpus = _corpus(tmp, args.extract_prompts)
    run = RunDir(tmp / "extract-only")
    start = time.perf_counter()
    summary = extract.run(run, base.replace(corpus=str(corpus)))
    seconds = time.perf_counter() - start
    results["extract_prompts_per_s"] = summary["prompts"] / seconds

    # annotate + export throughput from finished generation
    corpus = _corpus(tmp, args.prompts)
    config = config_with(base.replace(corpus=str(corpus)), "cluster", scheduler="inline", partition_size=8)
    run = RunDir(tmp / "inline")
    run_dataset(config, run.root)
    shutil.rmtree(run.annotate)
    n_partitions = len(list(run.generate.glob("part-*.parquet")))
    start = time.perf_counter()
    for partition in range(n_partitions):
        annotate.run_partition(run, config, partition)
    export.run(run, config)
    seconds = time.perf_counter() - start
    results["annotate_export_images_per_s"] = args.prompts / seconds

    # the whole run on a LocalCluster, 1 vs 2 workers
    for n in (1, 2):
        cfg = config_with(config, "cluster", scheduler=None, n_workers=n, threads_per_worker=1)
        start = time.perf_counter()
        summary = run_dataset(cfg, tmp / f"workers{n}")
        results[f"run_seconds_{n}_workers"] = time.perf_counter() - start
        # the partitioned stages alone (cluster start-up and a model load per worker included)
        results[f"generate_annotate_seconds_{n}_workers"] = summary["seconds"]["generate+annotate"]
    results["speedup_2_over_1_workers"] = results["run_seconds_1_workers"] / results["run_seconds_2_workers"]
    results["speedup_2_over_1_workers_generate_annotate"] = (
        results["generate_annotate_seconds_1_workers"] / results["generate_annotate_seconds_2_workers"]
    )
    results.update(prompts=args.prompts, steps=args.steps, cpu_count=os.cpu_count() or 0)

    for key, value in results.items():
        print(f"{key:32s} {value:10.3f}" if isinstance(value, float) else f"{key:32s} {value:>10}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
