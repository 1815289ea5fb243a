"""The ``labelstudio``, ``review`` and ``evaluate`` commands (added to ``daamset`` by pipeline.cli).

daamset labelstudio start [--data-dir DIR] [--port N] [--document-root DIR]
    prints `export LABEL_STUDIO_URL=...` / `export LABEL_STUDIO_API_KEY=...`
    lines on stdout, for `eval "$(daamset labelstudio start)"`
daamset labelstudio stop|status [--data-dir DIR]
daamset review push RUN_DIR      sample -> Label Studio tasks with predictions
daamset review pull RUN_DIR      finished annotations -> review/ground_truth.json
daamset evaluate RUN_DIR         COCO AP and mIoU per tau -> eval/
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pipeline.config import RunConfig, config_with, load_config

__all__ = ["add_review_commands", "push_run"]

log = logging.getLogger("daamset")


def _fail(err: Exception) -> int:
    """Report an error the user can fix, without a traceback (as ``daamset``'s main does)."""
    print(f"daamset: error: {err}", file=sys.stderr)
    return 2


def _data_dir(args: argparse.Namespace) -> Path:
    from pipeline.labelstudio.server import DEFAULT_DATA_DIR

    return Path(args.data_dir or os.environ.get("DAAMSET_LABEL_STUDIO_DATA_DIR") or DEFAULT_DATA_DIR)


def _quiet_http_logs() -> None:
    # httpx logs every request at INFO; keep the command's own output readable
    logging.getLogger("httpx").setLevel(logging.WARNING)


# --------------------------------------------------------------- labelstudio


def _cmd_ls_start(args: argparse.Namespace) -> int:
    from pipeline.labelstudio import server

    _quiet_http_logs()
    try:
        info = server.start(_data_dir(args), port=args.port, document_root=args.document_root, timeout=args.timeout)
    except server.ServerError as err:
        return _fail(err)
    what = f"started in {info.seconds:.1f} s" if info.started else "already running"
    print(f"# Label Studio {what} at {info.url} (pid {info.pid}, data {info.data_dir})", file=sys.stderr)
    print(server.shell_exports(info))
    return 0


def _cmd_ls_stop(args: argparse.Namespace) -> int:
    from pipeline.labelstudio import server

    stopped = server.stop(_data_dir(args))
    print("stopped" if stopped else "not running", file=sys.stderr)
    return 0


def _cmd_ls_status(args: argparse.Namespace) -> int:
    from pipeline.labelstudio import server

    _quiet_http_logs()
    info = server.status(_data_dir(args))
    if info is None:
        print(f"not running (data dir {_data_dir(args)})")
        return 1
    print(json.dumps(server.as_dict(info), indent=2))
    return 0


# -------------------------------------------------------- review and evaluate


def _run_config(run_dir: Path, config_path: Path | None) -> RunConfig:
    """The run's own resolved config (RUN_DIR/run.yaml), unless one is named."""
    from pipeline.contracts import RunDir

    if config_path is not None:
        return load_config(config_path)
    own = RunDir(run_dir).config
    return load_config(own) if own.exists() else RunConfig()


def _review_config(args: argparse.Namespace) -> RunConfig:
    config = _run_config(args.run_dir, args.config)
    changes: dict[str, Any] = {}
    if getattr(args, "sample_size", None) is not None:
        changes["sample_size"] = args.sample_size
    if getattr(args, "project_title", None) is not None:
        changes["project_title"] = args.project_title
    if changes:
        config = config_with(config, "review", **changes)
    return config


def _cmd_review_push(args: argparse.Namespace) -> int:
    return push_run(args.run_dir, _review_config(args), url=args.url)


def push_run(run_dir: Path, config: RunConfig, *, url: str | None = None) -> int:
    """Push a run's sample to Label Studio and print where to review it (``review push``, ``run --review``)."""
    from pipeline.labelstudio.client import LabelStudioError
    from stages.review import ReviewError, push

    _quiet_http_logs()
    try:
        report = push(run_dir, config, url=url)
    except (LabelStudioError, ReviewError) as err:
        return _fail(err)
    print(
        f"project {report['project_id']}: {report['imported']} tasks imported, "
        f"{report['already_present']} already there ({report['tasks']} in all) in {report['seconds']:.1f} s\n"
        f"review at {report['project_url']}"
    )
    return 0


def _cmd_review_pull(args: argparse.Namespace) -> int:
    from pipeline.labelstudio.client import LabelStudioError
    from stages.review import ReviewError, pull

    _quiet_http_logs()
    try:
        report = pull(args.run_dir, _review_config(args), url=args.url)
    except (LabelStudioError, ReviewError) as err:
        return _fail(err)
    print(
        f"{report['annotated']} annotated, {report['skipped']} skipped, {report['unannotated']} not yet annotated "
        f"of {report['tasks']} tasks; {report['instances']} instances -> {report['ground_truth']}"
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from stages.evaluate import evaluate, format_table

    config = _run_config(args.run_dir, args.config)
    if args.taus:
        config = config.replace(evaluate=config.evaluate.__class__(taus=list(args.taus)))
    try:
        summary = evaluate(args.run_dir, config)
    except ValueError as err:
        return _fail(err)
    print(format_table(summary))
    print(f"written to {Path(args.run_dir) / 'eval'}")
    return 0


def add_review_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``labelstudio``, ``review`` and ``evaluate`` to the ``daamset`` subcommands."""
    ls = sub.add_parser("labelstudio", help="start / stop / status of a local Label Studio server")
    ls_sub = ls.add_subparsers(dest="labelstudio_command", required=True, metavar="ACTION")
    data_help = "server data folder (default $DAAMSET_LABEL_STUDIO_DATA_DIR or ~/.local/share/daamset/labelstudio)"
    p = ls_sub.add_parser("start", help="start (or find) the server and print export lines for eval")
    p.add_argument("--data-dir", type=Path, default=None, help=data_help)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--document-root",
        type=Path,
        default=Path("/"),
        help="local-files document root: a parent of the run folders to review (default /)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the server to be healthy")
    p.set_defaults(func=_cmd_ls_start)
    p = ls_sub.add_parser("stop", help="stop the server of a data folder")
    p.add_argument("--data-dir", type=Path, default=None, help=data_help)
    p.set_defaults(func=_cmd_ls_stop)
    p = ls_sub.add_parser("status", help="is the server of a data folder running? (exit 1 if not)")
    p.add_argument("--data-dir", type=Path, default=None, help=data_help)
    p.set_defaults(func=_cmd_ls_status)

    review = sub.add_parser("review", help="push samples to Label Studio, pull verified annotations back")
    review_sub = review.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    for name, func, text in (
        ("push", _cmd_review_push, "send a sample of RUN_DIR's images with their masks and boxes"),
        ("pull", _cmd_review_pull, "read finished annotations into RUN_DIR/review/ground_truth.json"),
    ):
        p = review_sub.add_parser(name, help=text)
        p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
        p.add_argument("--config", type=Path, default=None, help="config (default: RUN_DIR/run.yaml)")
        p.add_argument(
            "--url",
            default=None,
            help="server URL (default $LABEL_STUDIO_URL); the key is read from $LABEL_STUDIO_API_KEY",
        )
        p.add_argument("--project-title", default=None, help="overrides review.project_title")
        if name == "push":
            p.add_argument("--sample-size", type=int, default=None, help="overrides review.sample_size")
        p.set_defaults(func=func)

    p = sub.add_parser("evaluate", help="COCO AP and mIoU of the run's masks against the verified ones")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--config", type=Path, default=None, help="config (default: RUN_DIR/run.yaml)")
    p.add_argument("--taus", type=float, nargs="+", default=None, help="overrides evaluate.taus")
    p.set_defaults(func=_cmd_evaluate)
