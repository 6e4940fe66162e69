"""`xvit predict --stream SOURCE`: checks the flags, prints the JSON lines, sets the exit code.

Exit codes: 0 when the source ended (or --max-windows / --max-seconds was reached) after at
least one window; 1 when reading broke off with an error, no window completed, or a window's
logits were not finite; 2 for bad flags, a bad checkpoint or a source that cannot be opened;
130 for Ctrl-C. Every run that opened the source ends with the summary line.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from xvit.cli._common import error

PROG = "xvit predict"


def _check(args: argparse.Namespace) -> str | None:
    """The first flag that is wrong or does not apply to --stream, as a message (else None)."""
    if args.stream is None:
        flag = (
            "--realtime"
            if args.realtime
            else "--max-windows"
            if args.max_windows is not None
            else "--max-seconds"
        )
        return f"{flag} applies to --stream SOURCE only"
    if not args.stream.strip():
        return "--stream needs a SOURCE (a URL, a device such as /dev/video0, or a file)"
    others = [
        ("VIDEO arguments", bool(getattr(args, "videos", None))),
        ("--timeline", bool(getattr(args, "timeline", False))),
        ("--list", bool(getattr(args, "list_file", None) or getattr(args, "list", None))),
        ("--out", getattr(args, "out", None) is not None),
        ("--views", getattr(args, "views", "1x1") != "1x1"),
        ("--batch-size", getattr(args, "batch_size", None) is not None),
        ("--workers", getattr(args, "workers", None) is not None),
        ("--plot", getattr(args, "plot", None) is not None),
        ("--render", getattr(args, "render", None) is not None),
        ("--smooth", getattr(args, "smooth", 1) != 1),
        ("--no-reuse", bool(getattr(args, "no_reuse", False))),
    ]
    for name, given in others:
        if given:
            return f"--stream predicts one centre view per window of one source: {name} cannot be combined with it"
    if args.max_windows is not None and args.max_windows < 1:
        return f"--max-windows must be >= 1, got {args.max_windows}"
    if args.max_seconds is not None and not args.max_seconds > 0:
        return f"--max-seconds must be > 0, got {args.max_seconds}"
    for flag, value in (("--stride", args.stride), ("--sampling-rate", args.sampling_rate)):
        if value is not None and value < 1:
            return f"{flag} must be >= 1 frame, got {value}"
    return None


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def run_stream_command(args: argparse.Namespace) -> int:
    """Run ``xvit predict --stream``; returns the exit code."""
    from xvit.data.errors import VideoDecodeError
    from xvit.engine.infer.stream import predict_stream
    from xvit.engine.run.schema import ConfigError

    problem = _check(args)
    if problem:
        return error(PROG, problem, 2)
    overrides = [f"train.device={args.device}"] if args.device else []
    try:
        result = predict_stream(
            args.checkpoint,
            args.stream,
            realtime=args.realtime,
            topk=args.topk,
            threshold=args.threshold,
            stride=args.stride,
            sampling_rate=args.sampling_rate,
            max_windows=args.max_windows,
            max_seconds=args.max_seconds,
            overrides=overrides,
            emit=_emit,
            warn=_warn,
        )
    except (ConfigError, FileNotFoundError, ValueError, VideoDecodeError) as e:
        return error(PROG, e, 2)
    except KeyboardInterrupt:  # before the source was open
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    _emit(result.summary())
    if result.interrupted:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    if result.failed:
        return error(PROG, f"{args.stream}: {result.reason}", 1)
    if result.windows == 0:
        return error(
            PROG,
            f"{args.stream}: no window completed ({result.frames_read} frames read; {result.reason})",
            1,
        )
    if result.nonfinite:
        return error(PROG, f"{args.stream}: {result.nonfinite} windows had non-finite logits", 1)
    return 0
