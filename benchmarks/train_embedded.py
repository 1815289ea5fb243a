"""Train the embedded text-to-image model on the procedural scene world (one command).

    .venv/bin/python benchmarks/train_embedded.py --out outputs/embedded-train --threads 2 [--ship]

The same options as ``daamset train-embedded`` (``pipeline.cli_train.add_train_arguments``).
Reproduces the weights from ``--seed``; resumes from ``OUT/checkpoint.pt`` when
rerun with the same arguments (``--steps`` may change). The pipeline lands in
``OUT/model`` (load it with ``StableDiffusionPipeline.from_pretrained``), the
loss log in ``OUT/loss.jsonl``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.cli_train import add_train_arguments  # noqa: E402
from pipeline.training import train_from_args  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = add_train_arguments(parser).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    train_from_args(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
