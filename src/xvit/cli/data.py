"""`xvit data`: re-encode your own videos for training (`prepare`), the built-in synthetic
dataset (`synth`) and its per-frame leak check (`leak-check`)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from xvit.cli._common import error


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` command and its sub-commands."""
    parser = subparsers.add_parser(
        "data",
        help="dataset tools (prepare your videos, the synthetic dataset)",
        description="Dataset tools.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    from xvit.data.settings import SynthConfig

    d = SynthConfig()
    synth = sub.add_parser(
        "synth",
        help="write the synthetic temporal-reasoning dataset",
        description="Write the synthetic temporal-reasoning dataset: 8 classes in 4 time-reversed "
        "twin pairs, H.264 mp4 files plus train.txt, val.txt and classnames.txt.",
    )
    synth.add_argument("out", help="output directory")
    synth.add_argument("--seed", type=int, default=d.seed)
    synth.add_argument("--num-train", type=int, default=d.num_train, help="training videos per class")
    synth.add_argument("--num-val", type=int, default=d.num_val, help="validation videos per class")
    synth.add_argument("--size", type=int, default=d.size, help="frame height and width")
    synth.add_argument("--num-frames", type=int, default=d.num_frames)
    synth.add_argument("--fps", type=int, default=d.fps)
    synth.add_argument(
        "--workers", type=int, default=None, help="processes (default: one per usable core, up to 2)"
    )
    synth.add_argument("--force", action="store_true", help="regenerate even if up to date")
    synth.set_defaults(func=_synth)

    leak = sub.add_parser(
        "leak-check",
        help="per-frame vs temporal twin accuracy on a generated dataset",
        description="Fit a per-frame classifier (with a time-index embedding) and a frame-"
        "difference classifier on train.txt and report how well each tells a video "
        "from its time-reversed twin on val.txt (chance: 0.5).",
    )
    leak.add_argument("root", help="a directory written by `xvit data synth`")
    leak.add_argument("--steps", type=int, default=300)
    leak.add_argument("--seed", type=int, default=0)
    leak.set_defaults(func=_leak_check)

    _add_prepare(sub)


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    from xvit.data.settings import X264_PRESETS, PrepareSettings

    d = PrepareSettings()
    p = sub.add_parser(
        "prepare",
        help="re-encode a class-folder tree or list file for fast training",
        description="Re-encode every video of SRC (a folder SRC/<class name>/<video>, or a list "
        "file of 'path label' lines) to H.264 mp4 with a short keyframe interval, "
        "scaled down, into OUT/videos/<class>/<name>.mp4, and write OUT/train.txt, "
        "OUT/val.txt and OUT/classnames.txt for `xvit train`. Unreadable videos "
        "are listed in OUT/failed.txt. Interrupted, the same command continues "
        "where it stopped. SRC is only read.",
    )
    p.add_argument("src", help="class-folder directory or annotation list file")
    p.add_argument("out", help="output directory")
    p.add_argument(
        "--val", default=None, help="a separate validation set (folder or list file); no split is made then"
    )
    p.add_argument(
        "--val-split",
        type=float,
        default=None,
        help="fraction of each class held out for validation when there is no --val (default 0.1; 0: none)",
    )
    p.add_argument(
        "--root",
        default=None,
        help="directory that relative paths in list files start from (default: the list file's directory)",
    )
    p.add_argument(
        "--class-names",
        default=None,
        help="file with one class name per line (for list files whose labels are names)",
    )
    p.add_argument(
        "--short-side",
        type=int,
        default=d.short_side,
        help=f"scale the short side down to this many pixels, never up (default "
        f"{d.short_side}; 0: keep the size)",
    )
    p.add_argument("--gop", type=int, default=d.gop, help=f"a keyframe every N frames (default {d.gop})")
    p.add_argument(
        "--fps", default=None, help="resample to this frame rate (default: keep the source timing)"
    )
    p.add_argument("--crf", type=int, default=d.crf, help=f"x264 quality, lower is better (default {d.crf})")
    p.add_argument(
        "--preset",
        default=d.preset,
        help=f"x264 preset, one of {', '.join(X264_PRESETS)} (default {d.preset})",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="processes (default: one per usable core, up to 2)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the validation split (default 0)")
    p.set_defaults(func=_prepare)


def _error(command: str, message: object) -> int:
    return error(f"xvit data {command}", message, 2)


def _prepare(args: argparse.Namespace) -> int:
    from xvit.data.annotations import AnnotationError
    from xvit.data.prepare import (
        PrepareError,
        PrepareSettings,
        check_output_dir,
        prepare_dataset,
        read_source,
    )

    start = time.perf_counter()
    try:
        if args.val is not None and args.val_split:
            raise PrepareError("give either --val or --val-split, not both")
        val_split = args.val_split if args.val_split is not None else (0.0 if args.val else 0.1)
        if not 0 <= val_split < 1:
            raise PrepareError(f"--val-split must be in [0, 1), got {val_split}")
        if args.workers is not None and args.workers < 1:
            raise PrepareError(f"--workers must be >= 1, got {args.workers}")
        if args.seed < 0:
            raise PrepareError(f"--seed must be >= 0, got {args.seed}")
        settings = PrepareSettings(
            short_side=args.short_side, gop=args.gop, fps=args.fps, crf=args.crf, preset=args.preset
        )
        check_output_dir(args.out, create=False)  # before reading a large source
        source = read_source(
            args.src,
            val=args.val,
            root=args.root,
            class_names=args.class_names,
            val_split=val_split,
            seed=args.seed,
        )
    except (PrepareError, AnnotationError) as e:
        return _error("prepare", e)
    except OSError as e:
        return _error("prepare", f"{e.filename or ''}: {e.strerror or e}".lstrip(": "))
    try:
        result = prepare_dataset(source, args.out, settings, workers=args.workers)
    except PrepareError as e:
        return _error("prepare", e)
    except OSError as e:  # disk full, I/O error while writing: the run failed (finished videos stay)
        print(
            f"xvit data prepare: error: {e.filename or ''}: {e.strerror or e}".replace(": : ", ": ")
            + "; run the same command again to continue",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("xvit data prepare: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    total = result.prepared + len(result.failed)
    print(
        f"{result.out}: {result.prepared} of {total} videos prepared ({result.encoded} encoded, "
        f"{result.skipped} already done), {len(result.failed)} failed "
        f"({time.perf_counter() - start:.1f} s)"
    )
    print(
        f"  train list: {result.train_list} ({result.num_train} videos)\n"
        f"  val list:   {result.val_list} ({result.num_val} videos)\n"
        f"  classes:    {result.class_names_file} ({len(source.class_names)})"
    )
    if result.failed:
        print(f"  failed:     {result.out / 'failed.txt'} (first: {result.failed[0][1]})")
    return 0 if result.prepared else 1


def _check_out_dir(command: str, out: str) -> int | None:
    from xvit.data.prepare import PrepareError, check_output_dir

    try:
        check_output_dir(out)
    except PrepareError as e:
        return _error(command, e)
    return None


def _synth(args: argparse.Namespace) -> int:
    from xvit.data.synth import SynthConfig, ensure_synth, generate

    try:
        cfg = SynthConfig(
            seed=args.seed,
            num_train=args.num_train,
            num_val=args.num_val,
            size=args.size,
            num_frames=args.num_frames,
            fps=args.fps,
        )
    except ValueError as e:
        return _error("synth", e)
    if args.workers is not None and args.workers < 1:
        return _error("synth", f"--workers must be >= 1, got {args.workers}")
    bad = _check_out_dir("synth", args.out)
    if bad is not None:
        return bad
    start = time.perf_counter()
    if args.force:
        info = generate(args.out, cfg, workers=args.workers)
    else:
        info = ensure_synth(args.out, seed=args.seed, config=cfg)
    n_train = sum(1 for line in info.train_list.read_text().splitlines() if line.strip())
    n_val = sum(1 for line in info.val_list.read_text().splitlines() if line.strip())
    print(
        f"{info.root}: {n_train} training and {n_val} validation videos, "
        f"{len(info.class_names)} classes ({time.perf_counter() - start:.1f} s)"
    )
    print(
        f"  train list: {info.train_list}\n  val list:   {info.val_list}\n  classes:    {info.class_names_file}"
    )
    return 0


def _leak_check(args: argparse.Namespace) -> int:
    from xvit.benchmarks.leak_check import leak_check_dataset

    result = leak_check_dataset(args.root, steps=args.steps, seed=args.seed)
    print(json.dumps(result, indent=2))
    return 0
