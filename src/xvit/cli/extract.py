"""`xvit extract VIDEO... | --list FILE --checkpoint DIR --out DIR`: features of every window
(or every video) for downstream models, one safetensors file per video."""

from __future__ import annotations

import argparse
import sys

from xvit.cli._common import add_command, error, guarded, parse_intermixed

PROG = "xvit extract"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `extract` sub-command."""
    add_command(
        subparsers,
        "extract",
        add_arguments,
        run,
        help="per-window or per-video features of videos (safetensors), resumable",
        description=(
            "Slide the model's clip (its frames at its sampling rate) along each whole video, "
            "--stride frames apart (default half a clip), decoding each video once, and write "
            "OUT/<video name>.safetensors: 'features' (windows x D, or D with --per video), "
            "start_frame/end_frame/start_sec/end_sec of every window, and metadata. "
            "--layer features: the mean over the window's frames of the per-frame pre-head "
            "features (model.forward_features); --layer logits: the head's output. OUT/manifest.csv "
            "lists what is there, OUT/failed.csv the videos that could not be read, with the "
            "error (exit code 1). A rerun skips the videos already written. Under torchrun "
            "--nproc-per-node N the processes share the list."
        ),
    )


def add_arguments(p: argparse.ArgumentParser, intermixed: bool) -> None:
    """The arguments of `xvit extract`."""
    p.add_argument("--list", dest="list_file", help="a file with one video path per line")
    p.add_argument("--checkpoint", help="a run directory or a save_pretrained directory")
    p.add_argument("--model", help="instead of --checkpoint: a model name (see `xvit models`)")
    p.add_argument(
        "--pretrained", help="with --model: image-ViT weights (timm .pth/.safetensors, .npz, HF dir)"
    )
    p.add_argument(
        "--random-init",
        action="store_true",
        help="with --model: random weights (for testing the pipeline only)",
    )
    p.add_argument("--num-frames", type=int, default=8, help="with --model: frames per clip (default 8)")
    p.add_argument("--img-size", type=int, default=224, help="with --model: crop size (default 224)")
    p.add_argument("--out", help="(required) directory for the feature files, manifest.csv and failed.csv")
    p.add_argument("--per", default="window", help="window (default) or video (the mean over windows)")
    p.add_argument("--layer", default="features", help="features (default: pre-head) or logits")
    p.add_argument("--stride", type=int, help="frames between window starts (default: half a clip)")
    p.add_argument("--sampling-rate", type=int, help="frame step inside a clip (default: the run's)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    p.add_argument(
        "--workers",
        type=int,
        help="decoding worker processes (default: one core of this process's share left for compute, "
        "at most 4: 1 on 2 cores)",
    )
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("videos", nargs="*" if intermixed else argparse.REMAINDER, metavar="VIDEO")


def _videos(args: argparse.Namespace) -> list:
    """The videos to run on: ``ListedVideo`` (path, label texts, line) of --list, or paths."""
    from xvit.engine.infer.video_list import read_listed_videos

    if args.list_file and args.videos:
        raise ValueError("give videos or --list FILE, not both")
    if args.list_file:
        return read_listed_videos(args.list_file)
    if not args.videos:
        raise ValueError("no videos: give VIDEO... or --list FILE")
    return list(args.videos)


def run(args: argparse.Namespace) -> int:
    """Entry point of `xvit extract`: 0 when every video was written, 1 when some failed."""
    from xvit.engine.infer.extract import ExtractOptions, extract_videos, load_extractor
    from xvit.engine.run.distributed import cleanup
    from xvit.engine.run.labels import check_listed_labels
    from xvit.engine.run.schema import ConfigError

    args = parse_intermixed(args, add_arguments, PROG, "videos")
    if not args.out:
        return error(PROG, "the following arguments are required: --out", 2)
    if args.checkpoint and (args.num_frames != 8 or args.img_size != 224):
        return error(PROG, "--num-frames and --img-size go with --model; a checkpoint fixes them", 2)
    opts = ExtractOptions(
        out=args.out,
        per=args.per,
        layer=args.layer,
        stride=args.stride,
        sampling_rate=args.sampling_rate,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        progress=not args.no_progress,
    )

    def work() -> dict:
        opts.check()  # before the model is loaded
        videos = _videos(args)
        model, cfg, weights = load_extractor(
            args.checkpoint,
            model_name=args.model,
            pretrained=args.pretrained,
            random_init=args.random_init,
            num_frames=args.num_frames,
            img_size=args.img_size,
        )
        if args.list_file and args.checkpoint:  # a trained model's classes meet the list's labels
            check_listed_labels(
                videos,
                int(model.config.num_classes),
                model.config.class_names,
                args.list_file,
                args.checkpoint,
            )
        paths = [v.path for v in videos] if args.list_file else videos
        return extract_videos(paths, opts, model, cfg, weights)

    try:
        code, res = guarded(PROG, work, [((ConfigError, FileNotFoundError, ValueError), 2), ((OSError,), 1)])
    finally:
        cleanup()
    if code or res is None:
        return code
    if res["rank"] == 0:
        for f in res["failures"]:
            print(f"failed: {f['error']}", file=sys.stderr)
        rate = (res["written"] + res["failed"]) / res["seconds"] if res["seconds"] > 0 else 0.0
        print(
            f"{res['written']} written, {res['skipped']} already done, {res['failed']} failed "
            f"of {res['videos']} videos in {res['seconds']:.1f} s ({rate:.2f} videos/s, "
            f"{res['processes']} process{'es' if res['processes'] > 1 else ''}); manifest: {res['manifest']}"
            + (f"; failures: {res['manifest'].rsplit('/', 1)[0]}/failed.csv" if res["failed"] else ""),
            flush=True,
        )
    return 1 if res["failed"] else 0
