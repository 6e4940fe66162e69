"""`xvit eval --checkpoint DIR --list FILE --views TxS`: multi-view testing of a trained model."""

from __future__ import annotations

import argparse

from xvit.cli._common import (
    add_command,
    add_precision_arguments,
    add_runtime_argument,
    command_line,
    error,
    guarded,
    lazy_choice,
    parse_intermixed,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `eval` sub-command."""
    add_command(
        subparsers,
        "eval",
        add_arguments,
        run,
        help="multi-view evaluation of a checkpoint on a list of videos",
        description=(
            "Score every video of a list with t temporal clips x s spatial crops (each video "
            "decoded once), fuse the views per video and report top-1, top-5, mean class "
            "accuracy, clip- and video-level accuracy and the videos that could not be read "
            "(counted as wrong). Sampling and preprocessing come from DIR/config.yaml when DIR "
            "is a training run, else from the model's config; key=value overrides them."
        ),
    )


def add_arguments(p: argparse.ArgumentParser, intermixed: bool) -> None:
    """The arguments of `xvit eval`."""
    # --checkpoint and --list are required; run() checks them once flags given after an
    # override are read too (see xvit.cli._common.parse_intermixed).
    p.add_argument("--checkpoint", help="(required) a run directory or a save_pretrained directory")
    p.add_argument(
        "--list",
        dest="list_file",
        help="(required) annotations (list file, Kinetics CSV, SSv2 JSON, EPIC CSV) "
        "or a DIR/<class name>/<video> folder",
    )
    p.add_argument(
        "--views", default=None, help="TxS: temporal clips x spatial crops (default: the run's eval.views)"
    )
    p.add_argument(
        "--fuse",
        type=lazy_choice("xvit.engine.run.metrics", "FUSE_MODES"),
        metavar="FUSE",
        default=None,
        help="fuse views by the mean of softmax (prob, default) or of logits",
    )
    p.add_argument("--out", help="where metrics.json goes (default: runs/eval/<checkpoint>-<list>-<TxS>)")
    p.add_argument(
        "--views-curve",
        action="store_true",
        help="also write accuracy for 1..t clips x 1..s crops (CSV and PNG), reusing the scores",
    )
    p.add_argument("--root", help="directory relative video paths are resolved against")
    p.add_argument("--format", dest="fmt", help="annotation format (auto, list, kinetics, ssv2, epic100)")
    p.add_argument("--batch-size", type=int, help="videos per batch")
    p.add_argument("--workers", type=int, help="data-loading worker processes")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    add_runtime_argument(p)
    add_precision_arguments(p)
    p.add_argument(
        "overrides",
        nargs="*" if intermixed else argparse.REMAINDER,
        metavar="key=value",
        help="config overrides (e.g. data.sampling_rate=8)",
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of `xvit eval`; returns the exit code (1 when videos failed to decode)."""
    from xvit.engine.deploy.export import ExportError
    from xvit.engine.deploy.precision_auto import check_precision
    from xvit.engine.deploy.runtimes import RuntimeUnavailable
    from xvit.engine.evaluate.eval_run import evaluate_checkpoint
    from xvit.engine.run.distributed import cleanup
    from xvit.engine.run.schema import ConfigError

    args = parse_intermixed(args, add_arguments, "xvit eval", "overrides")
    missing = [
        flag for flag, value in (("--checkpoint", args.checkpoint), ("--list", args.list_file)) if not value
    ]
    if missing:
        return error("xvit eval", f"the following arguments are required: {', '.join(missing)}", 2)
    try:
        check_precision(args.precision, args.min_agreement)
        if args.precision is not None and args.runtime != "torch":
            raise ValueError(f"--precision applies to --runtime torch, not {args.runtime}")
    except ValueError as e:
        return error("xvit eval", e, 2)
    overrides = list(args.overrides)
    for flag, key in (
        ("root", "data.root"),
        ("fmt", "data.format"),
        ("batch_size", "eval.batch_size"),
        ("workers", "data.workers"),
        ("device", "train.device"),
        ("views", "eval.views"),
        ("fuse", "eval.fuse"),
    ):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    try:
        code, metrics = guarded(
            "xvit eval",
            lambda: evaluate_checkpoint(
                args.checkpoint,
                args.list_file,
                overrides=overrides,
                out=args.out,
                curve=args.views_curve,
                command=command_line(args, "eval", "overrides"),
                runtime=args.runtime,
                precision=args.precision,
                min_agreement=args.min_agreement,
            ),
            [
                # incl. an unusable --out
                ((ConfigError, FileNotFoundError, ValueError, RuntimeUnavailable), 2),
                ((ExportError,), 1),
                ((OSError,), 1),
            ],  # disk full, I/O error writing the results (they were printed above)
        )
    finally:
        cleanup()
    if code:
        return code
    return 0 if metrics is None or metrics["num_failed"] == 0 else 1
