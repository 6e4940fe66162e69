"""`xvit quantize --checkpoint DIR --out DIR2`: an int8 model, kept only when it agrees with fp32."""

from __future__ import annotations

import argparse

from xvit.cli._common import error, guarded


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `quantize` sub-command."""
    p = subparsers.add_parser(
        "quantize",
        help="int8 copy of a model, measured against fp32 (top-1 agreement, accuracy)",
        description=(
            "Quantise a saved model to int8 (dynamic quantisation of the Linear layers) into a "
            "new directory that load_model, xvit predict and xvit eval accept. Top-1 agreement "
            "with fp32 (and accuracy) is measured on --list (one centre view per video), or on "
            "seeded random clips without one; below --min-agreement nothing is written (exit 1) "
            "unless --force."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="a run directory or a save_pretrained directory")
    p.add_argument("--out", required=True, help="the new directory (must not exist, or be empty)")
    p.add_argument("--method", default="dynamic", choices=("dynamic",), help="dynamic (default)")
    p.add_argument("--list", dest="list_file", help="validation videos to measure agreement and accuracy on")
    p.add_argument("--min-agreement", type=float, default=0.99, help="refuse below this (default 0.99)")
    p.add_argument("--force", action="store_true", help="write even below --min-agreement")
    p.add_argument("--batch-size", type=int, default=8, help="clips per batch (default 8)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of `xvit quantize`."""
    from xvit.engine.quantize import AgreementTooLow, quantize_checkpoint
    from xvit.engine.schema import ConfigError
    from xvit.models.storage import CheckpointError

    prog = "xvit quantize"
    if args.batch_size < 1:
        return error(prog, f"--batch-size must be >= 1, got {args.batch_size}", 2)
    code, figures = guarded(
        prog,
        lambda: quantize_checkpoint(
            args.checkpoint,
            args.out,
            method=args.method,
            val_list=args.list_file,
            min_agreement=args.min_agreement,
            force=args.force,
            batch_size=args.batch_size,
        ),
        [((ConfigError, CheckpointError, FileNotFoundError, ValueError), 2), ((AgreementTooLow, OSError), 1)],
    )
    if figures is None:
        return code
    line = (
        f"int8 ({args.method}) written to {args.out}: top-1 agreement with fp32 "
        f"{figures['top1_agreement']:.2%} on {figures['clips']} clips ({figures['measured_on']}), "
        f"max prob diff {figures['max_prob_diff']:.4f}"
    )
    if "accuracy_int8" in figures:
        line += f"; accuracy fp32 {figures['accuracy_fp32']:.2%}, int8 {figures['accuracy_int8']:.2%}"
    print(line)
    return 0
