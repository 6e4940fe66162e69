"""`xvit predict VIDEO... --checkpoint DIR`: the most likely classes of each video."""

from __future__ import annotations

import argparse
import json
import sys

from xvit.cli._common import add_precision_arguments, add_runtime_argument, error


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
    p.add_argument("videos", nargs="*", metavar="VIDEO")
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
    add_runtime_argument(p)
    add_precision_arguments(p)
    # Flags shared by the modes below (--timeline, --stream, --list): each mode reads the ones
    # it needs and documents its default; None means "the mode's default".
    p.add_argument(
        "--out",
        help="output file: the timeline (.json or .csv) with --timeline, the predictions CSV with --list",
    )
    # --list: every video of a list file -> --out predictions.csv (xvit.engine.infer.batch_predict)
    p.add_argument(
        "--list",
        dest="list_file",
        help="a file with one video path per line: top-k of each into the --out CSV (resumable with "
        "the same checkpoint and options, recorded in pl/run.settings.json for --out pl/run.csv; "
        "failures listed next to it: pl/run.failed.csv)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="--list: decoding worker processes (>= 0; default: one core of this process's share left for "
        "compute, at most 4: 1 on 2 cores)",
    )
    p.add_argument(
        "--stride",
        type=int,
        default=None,
        help="frames between the starts of consecutive windows (--timeline, --stream; >= 1; default: "
        "half a clip)",
    )
    p.add_argument(
        "--sampling-rate",
        type=int,
        default=None,
        help="frames between the frames of one window (>= 1; default: the run's data.sampling_rate)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="--timeline: windows, --list: videos per model call (>= 1; default 8, for --list the "
        "run's eval.batch_size)",
    )
    # --timeline: one long video, the model's clip slid along it (xvit.engine.infer.timeline)
    tl = p.add_argument_group("timeline (--timeline: classes over time in one long video)")
    tl.add_argument("--timeline", action="store_true", help="slide the clip along the whole video")
    tl.add_argument(
        "--smooth",
        type=int,
        default=1,
        help="average each window with its K neighbours (>= 1; default 1: off)",
    )
    tl.add_argument("--plot", help="PNG of the top classes' probabilities over time")
    tl.add_argument("--render", help="MP4 of the video with the current top label drawn on every frame")
    tl.add_argument(
        "--no-reuse",
        action="store_true",
        help="recompute every window's backbone instead of reusing overlapping segments",
    )
    # --stream: a live source, one JSON line per window as it completes (xvit.engine.infer.stream)
    st = p.add_argument_group("live streams (--stream: predictions as each window completes)")
    st.add_argument(
        "--stream",
        metavar="SOURCE",
        help="an HTTP / HLS / RTSP URL, a v4l2 camera (/dev/video0) or a file: one JSON line per "
        "window on stdout, then a summary line; exit 0 when the source ends or a limit is reached, "
        "1 when it breaks or no window completed",
    )
    st.add_argument(
        "--realtime",
        action="store_true",
        help="pace the frames at their own timestamps (files, fast servers)",
    )
    st.add_argument("--max-windows", type=int, default=None, help="stop after N windows (>= 1)")
    st.add_argument("--max-seconds", type=float, default=None, help="stop after S seconds (> 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of `xvit predict`; exit code 1 when any video failed."""
    from xvit.engine.deploy.export import ExportError
    from xvit.engine.deploy.precision_auto import check_precision
    from xvit.engine.deploy.runtimes import RuntimeUnavailable
    from xvit.engine.infer.predict import check_predict_options, predict_videos
    from xvit.engine.run.schema import ConfigError

    try:
        check_predict_options(args.topk, args.threshold)
        check_precision(args.precision, args.min_agreement)
        check_numbers(args)
    except ValueError as e:
        return error("xvit predict", e, 2)
    for flag, used in (("--runtime", args.runtime != "torch"), ("--precision", args.precision is not None)):
        if used and (args.stream is not None or args.timeline or args.list_file is not None):
            return error("xvit predict", f"{flag} applies to VIDEO arguments only, not --stream etc.", 2)
    if args.precision is not None and args.runtime != "torch":
        return error("xvit predict", f"--precision applies to --runtime torch, not {args.runtime}", 2)
    if (
        args.stream is not None
        or args.realtime
        or args.max_windows is not None
        or args.max_seconds is not None
    ):
        from xvit.cli._stream import run_stream_command

        return run_stream_command(args)
    if args.timeline:
        return _run_timeline(args)
    if args.list_file is not None:
        from xvit.cli.predict_list import run_list

        return run_list(args)
    if not args.videos:
        return error("xvit predict", "give at least one VIDEO", 2)
    overrides = [f"eval.views={args.views}"] + ([f"train.device={args.device}"] if args.device else [])
    try:
        results = predict_videos(
            args.checkpoint,
            args.videos,
            topk=args.topk,
            threshold=args.threshold,
            overrides=overrides,
            runtime=args.runtime,
            precision=args.precision,
            min_agreement=args.min_agreement,
        )
    except (ConfigError, FileNotFoundError, ValueError, RuntimeUnavailable) as e:
        return error("xvit predict", e, 2)
    except ExportError as e:
        return error("xvit predict", e, 1)
    if args.json:
        print(json.dumps(results, indent=2))
    for r in results:
        if "error" in r:
            text = r["error"] if r["path"] in r["error"] else f"{r['path']}: {r['error']}"
            print(f"error: {text}", file=sys.stderr)
        elif not args.json:
            print(f"{r['path']}: {_text(r)}")
    return 1 if any("error" in r for r in results) else 0


def check_numbers(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` naming the first numeric flag out of range, whichever mode reads it
    (--batch-size 0 is refused, never taken for the default)."""
    for flag, value, low in (
        ("--batch-size", args.batch_size, 1),
        ("--workers", args.workers, 0),
        ("--stride", args.stride, 1),
        ("--sampling-rate", args.sampling_rate, 1),
        ("--smooth", args.smooth, 1),
        ("--max-windows", args.max_windows, 1),
    ):
        if value is not None and value < low:
            raise ValueError(f"{flag} must be an integer >= {low}, got {value}")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise ValueError(f"--max-seconds must be > 0, got {args.max_seconds}")


def _run_timeline(args: argparse.Namespace) -> int:
    """`xvit predict VIDEO --timeline`: windows along one video -> --out, --plot, --render.

    Exit codes: 2 for bad input (options, a missing or unreadable video, output paths), 1
    when the video breaks part-way (the windows done are written, as NAME.partial.json/csv,
    and no plot or rendered video), 130 when interrupted (the same), 0 otherwise."""
    from pathlib import Path

    from xvit.data.errors import VideoDecodeError
    from xvit.engine.infer.timeline import (
        TIMELINE_SUFFIXES,
        TimelineOptions,
        check_timeline_options,
        compute_timeline,
        write_timeline,
    )
    from xvit.engine.run.distributed import resolve_device
    from xvit.engine.run.saved import load_run
    from xvit.engine.run.schema import ConfigError

    prog = "xvit predict --timeline"
    options = TimelineOptions(
        stride=args.stride,
        smooth=args.smooth,
        topk=args.topk,
        sampling_rate=args.sampling_rate,
        batch_size=args.batch_size or 8,
        reuse=not args.no_reuse,
    )
    try:
        check_timeline_options(options)
        if len(args.videos) != 1:
            raise ValueError(f"--timeline takes one VIDEO, got {len(args.videos)}")
        if args.views != "1x1" or args.threshold is not None:
            raise ValueError("--views and --threshold do not apply to --timeline")
        video = Path(args.videos[0])
        checks = [(args.out, TIMELINE_SUFFIXES), (args.plot, (".png",)), (args.render, (".mp4",))]
        for out, suffixes in checks:
            if out is not None and Path(out).suffix.lower() not in suffixes:
                raise ValueError(f"{out}: expected a {' or '.join(suffixes)} file")
            if out is not None and video.exists() and Path(out).resolve() == video.resolve():
                raise ValueError(f"{out}: an output would overwrite the video")
        model, cfg = load_run(args.checkpoint, [f"train.device={args.device}"] if args.device else [])
        device = resolve_device(cfg.train.device)
        model.to(device).eval()
        tl = compute_timeline(
            model,
            cfg,
            video,
            options,
            device,
            notify=lambda msg: print(f"{prog}: note: {msg}", file=sys.stderr),
            progress=sys.stderr.isatty(),
        )
    except (ConfigError, FileNotFoundError, ValueError, VideoDecodeError) as e:
        return error(prog, e, 2)
    except FloatingPointError as e:
        return error(prog, e, 1)
    written = []
    if args.out:
        out = Path(args.out)
        if not tl.complete:
            out = out.with_name(f"{out.stem}.partial{out.suffix}")
        written.append(str(write_timeline(tl, out)))
    if tl.complete:
        if args.plot:
            from xvit.engine.infer.timeline_plot import plot_timeline

            written.append(str(plot_timeline(tl, args.plot)))
        if args.render:
            from xvit.engine.infer.render import render_timeline

            try:
                written.append(str(render_timeline(tl, video, args.render)))
            except VideoDecodeError as e:
                return error(prog, f"--render: {e}", 1)
    data = tl.to_dict()
    if args.json:
        print(json.dumps(data, indent=1))
    else:
        reuse = f", {tl.reused} of {tl.reused + tl.computed} segments reused" if tl.reuse_unit else ""
        print(
            f"{video}: {len(tl.starts)} windows of {tl.window_frames} frames, stride {tl.stride}{reuse}; "
            f"video: {_classes(data['video_result'])}"
        )
        for path in written:
            print(f"wrote {path}")
    if not tl.complete:
        kept = f"; the {len(tl.starts)} windows done are in {written[0]}" if written else ""
        print(f"{prog}: error: {tl.error}{kept}", file=sys.stderr)
        return 130 if tl.error == "interrupted" else 1
    return 0


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
