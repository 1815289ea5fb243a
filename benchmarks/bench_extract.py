"""Extract-stage throughput (prompts/s) on one CPU core over the COCO captions.

Usage: .venv/bin/python benchmarks/bench_extract.py [CORPUS] [--vocabulary open|coco80] [--repeat N]

Pins the process to one core and to one BLAS/OpenMP thread before numpy or
spaCy load, then times (wall and CPU), separately: reading the corpus, loading the spaCy
model, parsing + object finding (``nlp.pipe``), and the whole stage
(``stages.extract.run`` into a temporary run folder, writes included; the
model is already loaded then, as in a second run in one process). Prints one
JSON object; reported, not asserted.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import ExtractConfig, RunConfig  # noqa: E402
from pipeline.contracts import RunDir  # noqa: E402
from pipeline.corpus import read_corpus  # noqa: E402
from pipeline.nlp import load_nlp, parse_prompts  # noqa: E402
from pipeline.vocabulary import load_vocabulary  # noqa: E402
from stages import extract  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "captions_val2017_first1000.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--vocabulary", default="open")
    parser.add_argument("--batch-size", type=int, default=ExtractConfig().batch_size)
    parser.add_argument("--repeat", type=int, default=2, help="timed repeats; the best is reported")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    settings = ExtractConfig(vocabulary=args.vocabulary, batch_size=args.batch_size)
    start = time.perf_counter()
    records, skips = read_corpus(args.corpus, prompt_column=settings.prompt_column)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    nlp = load_nlp(settings.spacy_model)
    vocabulary = load_vocabulary(settings.vocabulary)
    load_s = time.perf_counter() - start
    texts = [r.prompt for r in records]

    # wall time, and CPU time of this process: on a shared machine the second is
    # the steadier figure (other processes' load inflates the first)
    parse_wall, parse_cpu, stage_wall, stage_cpu = [], [], [], []
    for _ in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        n_objects = sum(len(p.objects) for p in parse_prompts(nlp, texts, settings.batch_size, vocabulary))
        parse_wall.append(time.perf_counter() - wall)
        parse_cpu.append(time.process_time() - cpu)
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = time.perf_counter(), time.process_time()
            summary = extract.run(RunDir(Path(tmp)), RunConfig(corpus=str(args.corpus), extract=settings))
            stage_wall.append(time.perf_counter() - wall)
            stage_cpu.append(time.process_time() - cpu)

    result = {
        "corpus": str(args.corpus),
        "vocabulary": args.vocabulary,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "rows": len(records) + len(skips),
        "prompts_parsed": len(texts),
        "objects": n_objects,
        "accepted": summary["prompts"],
        "read_corpus_s": round(read_s, 3),
        "load_model_s": round(load_s, 3),
        "parse_s": round(min(parse_wall), 3),
        "parse_prompts_per_s": round(len(texts) / min(parse_wall), 1),
        "parse_prompts_per_cpu_s": round(len(texts) / min(parse_cpu), 1),
        "stage_s": round(min(stage_wall), 3),
        "stage_prompts_per_s": round(len(texts) / min(stage_wall), 1),
        "stage_prompts_per_cpu_s": round(len(texts) / min(stage_cpu), 1),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
