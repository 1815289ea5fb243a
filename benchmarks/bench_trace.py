"""Cost of trace(): time per image with and without it, and the tracer's memory against steps.

    .venv/bin/python benchmarks/bench_trace.py --out outputs/bench_trace.json

Side by side on the same pipeline, prompt, seed and step count, runs with and
without ``trace`` alternate (so drifts in machine load hit both) and medians
are reported. Models: the embedded default model at its default size and the
SD 1.5 architecture (full width, random weights) at 256x256. By default the
timing covers denoising only (``output_type="latent"``): the VAE decode costs
the same with or without tracing and would only dilute the ratio. Memory: the
bytes of tensors the tracer holds after 10 and after 50 steps.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.architectures import build_pipeline  # noqa: E402
from pipeline.atomic import write_json  # noqa: E402
from pipeline.daam import trace  # noqa: E402
from pipeline.models import load_pipeline  # noqa: E402

log = logging.getLogger("bench_trace")
PROMPT = "a red teapot on a wooden table next to a cat"


def _run(pipe: Any, *, traced: bool, steps: int, size: int | None, output_type: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one generation."""
    kwargs = {"num_inference_steps": steps, "generator": torch.Generator().manual_seed(0), "output_type": output_type}
    if size is not None:
        kwargs.update(height=size, width=size)
    start, start_cpu = time.perf_counter(), time.process_time()
    if traced:
        with trace(pipe) as tracer:
            pipe(PROMPT, **kwargs)
            tracer.heat_maps()  # include producing the maps
    else:
        pipe(PROMPT, **kwargs)
    return time.perf_counter() - start, time.process_time() - start_cpu


def time_model(name: str, pipe: Any, *, steps: int, size: int | None, repeats: int, output_type: str) -> dict:
    _run(pipe, traced=True, steps=steps, size=size, output_type=output_type)  # warm-up
    plain, traced = [], []
    for i in range(repeats):
        order = (False, True) if i % 2 == 0 else (True, False)
        for t in order:
            (traced if t else plain).append(_run(pipe, traced=t, steps=steps, size=size, output_type=output_type))
    p, t = statistics.median(r[0] for r in plain), statistics.median(r[0] for r in traced)
    p_cpu, t_cpu = statistics.median(r[1] for r in plain), statistics.median(r[1] for r in traced)
    row = {
        "model": name,
        "size": size or pipe.unet.config.sample_size * pipe.vae_scale_factor,
        "steps": steps,
        "repeats": repeats,
        "output_type": output_type,
        "seconds_per_image_without": p,
        "seconds_per_image_with": t,
        "ratio": t / p,
        # CPU time of the process: on a shared machine it is far less noisy than wall time
        "cpu_seconds_per_image_without": p_cpu,
        "cpu_seconds_per_image_with": t_cpu,
        "cpu_ratio": t_cpu / p_cpu,
        "runs_without": plain,
        "runs_with": traced,
    }
    log.info("%s: wall %.3f s without, %.3f s with trace (ratio %.3f); CPU ratio %.3f", name, p, t, t / p, t_cpu / p_cpu)
    return row


def tracer_bytes(pipe: Any, steps: int) -> int:
    with trace(pipe) as tracer:
        pipe(PROMPT, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="latent")
    return tracer.state_nbytes()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_trace.json"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="alternating pairs of runs on SD 1.5")
    parser.add_argument("--embedded-repeats", type=int, default=15, help="alternating pairs on the embedded model")
    parser.add_argument("--sd15-size", type=int, default=256)
    parser.add_argument("--skip-sd15", action="store_true", help="only the embedded model (fast)")
    parser.add_argument("--output-type", default="latent", choices=["latent", "np", "pil"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    rows = []
    embedded = load_pipeline("embedded", device="cpu")
    rows.append(
        time_model("embedded", embedded, steps=args.steps, size=None, repeats=args.embedded_repeats, output_type=args.output_type)
    )
    memory = {"model": "embedded", "steps": [10, 50], "tracer_bytes": [tracer_bytes(embedded, 10), tracer_bytes(embedded, 50)]}
    if not args.skip_sd15:
        sd15 = build_pipeline("sd15")
        rows.append(
            time_model("sd15 (random weights)", sd15, steps=args.steps, size=args.sd15_size, repeats=args.repeats, output_type=args.output_type)
        )
        del sd15

    result = {"timing": rows, "memory": memory, "threads": args.threads, "torch": torch.__version__}
    write_json(args.out, result, indent=2)

    header = f"{'model':<24}{'size':>6}{'steps':>7}{'without s':>11}{'with s':>9}{'ratio':>8}{'CPU ratio':>11}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['model']:<24}{r['size']:>6}{r['steps']:>7}{r['seconds_per_image_without']:>11.3f}"
            f"{r['seconds_per_image_with']:>9.3f}{r['ratio']:>8.3f}{r['cpu_ratio']:>11.3f}"
        )
    lines.append("")
    lines.append(f"tracer memory (embedded): {memory['tracer_bytes'][0]} bytes at 10 steps, {memory['tracer_bytes'][1]} at 50")
    lines.append(
        f"(wall and CPU seconds per image, {args.output_type} output, medians of alternating runs, "
        f"{args.threads} thread(s)); JSON: {args.out}"
    )
    sys.stdout.write("\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    main()
