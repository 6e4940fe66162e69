"""`xvit quantize --checkpoint DIR --out DIR2 [--method dynamic|static --calib LIST]`: an int8
model, kept only when it agrees with fp32."""

from __future__ import annotations

import argparse
import sys

from xvit.cli._common import error, guarded


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `quantize` sub-command."""
    p = subparsers.add_parser(
        "quantize",
        help="int8 copy of a model, measured against fp32 (top-1 agreement, accuracy)",
        description=(
            "Quantise a saved model to int8 into a new directory that load_model, xvit predict and "
            "xvit eval accept. --method dynamic (default): torch dynamic quantisation of the "
            "Linear layers, runs with --runtime torch. --method static: ONNX Runtime's static "
            "quantiser (QDQ, per-channel int8 weights, uint8 activations calibrated on --calib), "
            "an int8 ONNX file that runs with --runtime onnxruntime. Top-1 agreement with fp32 "
            "(and accuracy) is measured on --list (one centre view per video), or on seeded "
            "random clips without one; below --min-agreement nothing is written (exit 1) unless "
            "--force."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="a run directory or a save_pretrained directory")
    p.add_argument("--out", required=True, help="the new directory (must not exist, or be empty)")
    p.add_argument(
        "--method",
        default="dynamic",
        choices=("dynamic", "static"),
        help="dynamic (default; torch) or static (ONNX Runtime, needs --calib)",
    )
    p.add_argument("--list", dest="list_file", help="validation videos to measure agreement and accuracy on")
    p.add_argument("--calib", dest="calib_list", help="static: list file of the videos to calibrate on")
    p.add_argument(
        "--calib-size",
        type=int,
        default=None,
        help="static: calibrate on the first N videos of --calib (default 32)",
    )
    p.add_argument("--min-agreement", type=float, default=0.99, help="refuse below this (default 0.99)")
    p.add_argument("--force", action="store_true", help="write even below --min-agreement")
    p.add_argument("--batch-size", type=int, default=8, help="clips per batch (default 8)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of `xvit quantize`."""
    from xvit.engine.deploy.export import ExportError
    from xvit.engine.deploy.quantize import DEFAULT_CALIB_SIZE, AgreementTooLow, quantize_checkpoint
    from xvit.engine.deploy.runtimes import RuntimeUnavailable
    from xvit.engine.run.schema import ConfigError
    from xvit.models.storage import CheckpointError

    prog = "xvit quantize"
    if args.batch_size < 1:
        return error(prog, f"--batch-size must be >= 1, got {args.batch_size}", 2)
    if args.calib_size is not None and args.method != "static":
        return error(prog, "--calib-size applies to --method static", 2)
    code, figures = guarded(
        prog,
        lambda: quantize_checkpoint(
            args.checkpoint,
            args.out,
            method=args.method,
            val_list=args.list_file,
            calib_list=args.calib_list,
            calib_size=DEFAULT_CALIB_SIZE if args.calib_size is None else args.calib_size,
            min_agreement=args.min_agreement,
            force=args.force,
            batch_size=args.batch_size,
        ),
        [
            ((ConfigError, CheckpointError, FileNotFoundError, ValueError, RuntimeUnavailable), 2),
            ((AgreementTooLow, ExportError, OSError), 1),
        ],
    )
    if figures is None:
        return code
    line = (
        f"int8 ({args.method}) written to {args.out}: top-1 agreement with fp32 "
        f"{figures['top1_agreement']:.2%} on {figures['clips']} clips ({figures['measured_on']}), "
        f"max prob diff {figures['max_prob_diff']:.4f}"
    )
    failed = figures.get("failed") or []
    if "accuracy_int8" in figures:
        line += f"; accuracy fp32 {figures['accuracy_fp32']:.2%}, int8 {figures['accuracy_int8']:.2%}"
        line += f" of {figures['clips'] + len(failed)} videos" if failed else ""
    if failed:
        line += (
            f"; {len(failed)} unreadable (left out of the agreement, wrong in the accuracy, as in xvit eval)"
        )
    calibration = figures.get("calibration")
    if calibration:
        line += f"; calibrated on {calibration['videos_used']} videos of {calibration['list']}"
        for failure in calibration["failures"]:
            print(f"warning: calibration video skipped: {failure}", file=sys.stderr)
    print(line)
    return 0
