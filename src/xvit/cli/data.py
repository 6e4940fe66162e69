"""`xvit data`: the built-in synthetic dataset (`synth`) and its per-frame leak check (`leak-check`)."""

from __future__ import annotations

import argparse
import json
import time


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` command and its sub-commands."""
    parser = subparsers.add_parser("data", help="dataset tools (the built-in synthetic dataset)",
                                   description="Dataset tools.")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    from xvit.data.synth import SynthConfig

    d = SynthConfig()
    synth = sub.add_parser(
        "synth", help="write the synthetic temporal-reasoning dataset",
        description="Write the synthetic temporal-reasoning dataset: 8 classes in 4 time-reversed "
                    "twin pairs, H.264 mp4 files plus train.txt, val.txt and classnames.txt.")
    synth.add_argument("out", help="output directory")
    synth.add_argument("--seed", type=int, default=d.seed)
    synth.add_argument("--num-train", type=int, default=d.num_train, help="training videos per class")
    synth.add_argument("--num-val", type=int, default=d.num_val, help="validation videos per class")
    synth.add_argument("--size", type=int, default=d.size, help="frame height and width")
    synth.add_argument("--num-frames", type=int, default=d.num_frames)
    synth.add_argument("--fps", type=int, default=d.fps)
    synth.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    synth.add_argument("--force", action="store_true", help="regenerate even if up to date")
    synth.set_defaults(func=_synth)

    leak = sub.add_parser(
        "leak-check", help="per-frame vs temporal twin accuracy on a generated dataset",
        description="Fit a per-frame classifier (with a time-index embedding) and a frame-"
                    "difference classifier on train.txt and report how well each tells a video "
                    "from its time-reversed twin on val.txt (chance: 0.5).")
    leak.add_argument("root", help="a directory written by `xvit data synth`")
    leak.add_argument("--steps", type=int, default=300)
    leak.add_argument("--seed", type=int, default=0)
    leak.set_defaults(func=_leak_check)


def _synth(args: argparse.Namespace) -> int:
    from xvit.data.synth import SynthConfig, ensure_synth, generate

    cfg = SynthConfig(seed=args.seed, num_train=args.num_train, num_val=args.num_val,
                      size=args.size, num_frames=args.num_frames, fps=args.fps)
    start = time.perf_counter()
    if args.force:
        info = generate(args.out, cfg, workers=args.workers)
    else:
        info = ensure_synth(args.out, seed=args.seed, config=cfg)
    n_train = sum(1 for line in info.train_list.read_text().splitlines() if line.strip())
    n_val = sum(1 for line in info.val_list.read_text().splitlines() if line.strip())
    print(f"{info.root}: {n_train} training and {n_val} validation videos, "
          f"{len(info.class_names)} classes ({time.perf_counter() - start:.1f} s)")
    print(f"  train list: {info.train_list}\n  val list:   {info.val_list}\n  classes:    {info.class_names_file}")
    return 0


def _leak_check(args: argparse.Namespace) -> int:
    from xvit.data.synth import leak_check_dataset

    result = leak_check_dataset(args.root, steps=args.steps, seed=args.seed)
    print(json.dumps(result, indent=2))
    return 0
