"""`xvit predict VIDEO... --checkpoint DIR`: the most likely classes of each video."""

from __future__ import annotations

import argparse
import json
import sys

from xvit.cli._common import error


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `predict` sub-command."""
    p = subparsers.add_parser(
        "predict",
        help="class probabilities for video files",
        description=(
            "Print the top-k classes with probabilities for each video. For a multi-label model "
            "(trained with data.multi_label=true) every class has its own sigmoid probability: "
            "the classes at or above --threshold are printed first, then the top-k. A video "
            "that cannot be read, or whose logits are not finite (NaN or infinity), gets an "
            "error line naming it; the others are still answered, and the exit code is 1."
        ),
    )
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("--checkpoint", required=True, help="a run directory or a save_pretrained directory")
    p.add_argument("--topk", type=int, default=5, help="how many classes to print (>= 1, default 5)")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="probability in [0, 1]: multi-label models list the classes at or above it "
        "(default 0.5); single-label models keep only the top-k classes at or above it",
    )
    p.add_argument("--views", default="1x1", help="TxS test views fused per video (default 1x1)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of `xvit predict`; exit code 1 when any video failed."""
    from xvit.engine.predict import check_predict_options, predict_videos
    from xvit.engine.schema import ConfigError

    try:
        check_predict_options(args.topk, args.threshold)
    except ValueError as e:
        return error("xvit predict", e, 2)
    overrides = [f"eval.views={args.views}"] + ([f"train.device={args.device}"] if args.device else [])
    try:
        results = predict_videos(
            args.checkpoint, args.videos, topk=args.topk, threshold=args.threshold, overrides=overrides
        )
    except (ConfigError, FileNotFoundError, ValueError) as e:
        return error("xvit predict", e, 2)
    if args.json:
        print(json.dumps(results, indent=2))
    for r in results:
        if "error" in r:
            text = r["error"] if r["path"] in r["error"] else f"{r['path']}: {r['error']}"
            print(f"error: {text}", file=sys.stderr)
        elif not args.json:
            print(f"{r['path']}: {_text(r)}")
    return 1 if any("error" in r for r in results) else 0


def _classes(entries: list[dict]) -> str:
    return ", ".join(f"{p['class']} {p['prob']:.3f}" for p in entries)


def _text(result: dict) -> str:
    """The answer for one video on one line."""
    if "labels" in result:  # multi-label
        labels = _classes(result["labels"]) or "none"
        top = f"top {len(result['predictions'])}: {_classes(result['predictions'])}"
        return f"labels (p >= {result['threshold']:g}): {labels}; {top}"
    if not result["predictions"]:
        return f"no class with probability >= {result['threshold']:g}"
    return _classes(result["predictions"])
