"""The ``daamset train-embedded`` command (added by pipeline.cli).

Kept apart from pipeline.training so that building the command line does not
import torch and diffusers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_train_arguments", "add_train_command"]


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``daamset train-embedded`` (and ``benchmarks/train_embedded.py``)."""
    p = parser
    p.add_argument("--out", type=Path, required=True, help="output folder (a rerun resumes it)")
    p.add_argument("--steps", type=int, default=3000, help="U-Net + text encoder steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--vae-steps", type=int, default=600, help="autoencoder pretraining steps")
    p.add_argument("--vae-batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--caption-dropout", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:0, ...")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a shared 2-core CPU)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes rendering batches ahead (GPU runs)")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument(
        "--unet-channels", type=int, nargs="+", default=None, help="U-Net block widths (default: pipeline.training)"
    )
    p.add_argument(
        "--ship", nargs="?", const="", default=None, metavar="DIR",
        help="then copy the weights in float16 to DIR (default: the embedded model's folder, pipeline/assets/embedded)",
    )  # fmt: skip
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing checkpoint")
    return p


def _cmd_train(args: argparse.Namespace) -> int:
    from pipeline.training import train_from_args

    print(train_from_args(args))
    return 0


def add_train_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-embedded", help="train the small embedded model on the procedural scene world")
    add_train_arguments(p)
    p.set_defaults(func=_cmd_train)
