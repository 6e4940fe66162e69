"""`xvit predict VIDEO... --checkpoint DIR`: the most likely classes of each video."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `predict` sub-command."""
    p = subparsers.add_parser(
        "predict",
        help="class probabilities for video files",
        description=(
            "Print the top-k classes with probabilities for each video. A video that cannot be "
            "read gets an error line naming it; the others are still answered, and the exit "
            "code is 1."
        ),
    )
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("--checkpoint", required=True, help="a run directory or a save_pretrained directory")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--views", default="1x1", help="TxS test views fused per video (default 1x1)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of `xvit predict`; exit code 1 when any video failed."""
    from xvit.engine.config import ConfigError
    from xvit.engine.predict import predict_videos

    overrides = [f"eval.views={args.views}"] + ([f"train.device={args.device}"] if args.device else [])
    try:
        results = predict_videos(args.checkpoint, args.videos, topk=args.topk, overrides=overrides)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"xvit predict: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results, indent=2))
    for r in results:
        if "error" in r:
            text = r["error"] if r["path"] in r["error"] else f"{r['path']}: {r['error']}"
            print(f"error: {text}", file=sys.stderr)
        elif not args.json:
            top = ", ".join(f"{p['class']} {p['prob']:.3f}" for p in r["predictions"])
            print(f"{r['path']}: {top}")
    return 1 if any("error" in r for r in results) else 0
