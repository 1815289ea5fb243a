"""The ``daamset`` command line (the composition root, with ``pipeline.workflow``).

Subcommands:
  run          a dataset run: prompts -> images, heat maps, masks, COCO, stats
  maps         heat maps and overlay pictures for a few prompts (no dataset)
  labelstudio  start / stop / status of a local Label Studio server
  review       push samples to Label Studio, pull verified annotations back
  evaluate     COCO AP and mIoU of the run's masks against the verified ones
  train-embedded  train the small embedded model on the procedural scene world
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.cli_review import add_review_commands, push_run
from pipeline.cli_train import add_train_command
from pipeline.config import ConfigError

log = logging.getLogger("daamset")


class UserError(Exception):
    """An error the user can fix; printed without a traceback."""


# --------------------------------------------------------------------------- run


def _cmd_run(args: argparse.Namespace) -> int:
    """Build a dataset from a prompt corpus (resumes an unfinished run folder)."""
    from pipeline.config import config_with, load_config
    from pipeline.workflow import format_summary, run_dataset

    if not args.verbose:
        import distributed  # noqa: F401  (its import sets its loggers to INFO; set them after)

        # Dask's INFO lines (workers starting and closing) would drown the progress bars
        for name in ("distributed", "dask"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # At shutdown a worker that imported torch and diffusers takes 2-5 s to exit; the
        # nanny then kills it with a warning. Every result is on disk by then: not news.
        logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
    config = load_config(args.config)
    if args.scheduler:
        config = config_with(config, "cluster", scheduler=args.scheduler)
    if args.workers:
        config = config_with(config, "cluster", n_workers=args.workers)
    summary = run_dataset(config, args.out, prompts=args.prompts, force=args.force)
    print(format_summary(summary))
    if args.review:
        return push_run(args.out, config)
    return 0


def _add_run_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="build a dataset from a prompt corpus", description=_cmd_run.__doc__)
    p.add_argument("config", nargs="?", default=None, help="YAML run config (default: configs/default.yaml)")
    p.add_argument("--out", required=True, type=Path, help="run folder (created; a rerun resumes it)")
    p.add_argument("--prompts", type=Path, default=None, help="prompt corpus, overrides the config's corpus")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (tcp://host:port)")
    p.add_argument("--workers", type=int, default=None, help="LocalCluster workers (overrides cluster.n_workers)")
    p.add_argument(
        "--force", action="store_true", help="reuse a run folder made with a different config (outputs are redone)"
    )
    p.add_argument(
        "--review",
        action="store_true",
        help="then push a sample to Label Studio (LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY) for review",
    )
    p.set_defaults(func=_cmd_run)


# -------------------------------------------------------------------------- maps


def _cmd_maps(args: argparse.Namespace) -> int:
    from pipeline.quicklook import write_word_maps

    written = write_word_maps(
        args.prompts,
        args.out,
        model=args.model,
        steps=args.steps,
        seed=args.seed,
        guidance_scale=args.guidance_scale,
        height=args.height,
        width=args.width,
    )
    for path in written:
        print(path)
    return 0


def _add_maps_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("maps", help="heat maps and overlay pictures for a few prompts")
    p.add_argument("prompts", nargs="+", help="one or more prompts")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--model", default="embedded", help="'embedded', a hub id, or a local model folder")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance-scale", type=float, default=7.5)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.set_defaults(func=_cmd_maps)


# ------------------------------------------------------------ review and evaluate
# The `labelstudio`, `review` and `evaluate` commands live in pipeline/cli_review.py,
# `train-embedded` in pipeline/cli_train.py.


# ----------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="daamset", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_command(sub)
    _add_maps_command(sub)
    add_review_commands(sub)
    add_train_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (UserError, ConfigError, FileNotFoundError) as err:
        print(f"daamset: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("daamset: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
