"""`xvit train [CONFIG] [key=value ...]`: train (or resume) a model; see docs/training.md."""

from __future__ import annotations

import argparse

from xvit.cli._common import (
    add_command,
    command_line,
    error,
    guarded,
    lazy_choice,
    parse_intermixed,
    split_items,
)

# Flags for the common keys: flag destination -> config key.
_FLAG_KEYS = {
    "model": "model.name",
    "head": "model.head",
    "pretrained": "model.pretrained",
    "train_list": "data.train_list",
    "val_list": "data.val_list",
    "num_frames": "data.num_frames",
    "img_size": "data.img_size",
    "batch_size": "data.batch_size",
    "workers": "data.workers",
    "val_split": "data.val_split",
    "epochs": "train.epochs",
    "lr": "optim.lr",
    "seed": "train.seed",
    "out": "train.out",
    "device": "train.device",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `train` sub-command."""
    add_command(
        subparsers,
        "train",
        add_arguments,
        run,
        help="train a model (default: a tiny X-ViT on the built-in synthetic dataset)",
        description=DESCRIPTION,
        epilog="Example: xvit train configs/ssv2_xvit_b16_16.yaml optim.lr=0.01 --out runs/ssv2",
    )


DESCRIPTION = (
    "Train a video model. With no CONFIG, trains the default tiny X-ViT (on the built-in "
    "synthetic dataset, generated on first use, unless lists are given). Running the same "
    "command again on an OUT holding checkpoints resumes from the newest one. Multi-GPU / "
    "multi-node: torchrun --nproc-per-node N --no-python xvit train ..."
)


def add_arguments(p: argparse.ArgumentParser, intermixed: bool) -> None:
    """The arguments of `xvit train` (see :func:`parse_intermixed`)."""
    p.add_argument(
        "items",
        nargs="*" if intermixed else argparse.REMAINDER,
        metavar="[CONFIG] [key=value ...]",
        help="a YAML config, then section.key=value overrides (e.g. optim.weight_decay=1e-4)",
    )
    p.add_argument("--model", help="registered model name (see `xvit models`)")
    p.add_argument(
        "--head", type=lazy_choice("xvit.models.heads", "HEAD_TYPES"), help="temporal aggregation head"
    )
    p.add_argument(
        "--pretrained",
        help=(
            "initial weights: a weights file, a save_pretrained directory, a registry name or tag "
            "(xvit models --weights; e.g. in21k) or hf-hub:ORG/NAME"
        ),
    )
    p.add_argument(
        "--train-list",
        help="training annotations (list file, Kinetics CSV, SSv2 JSON, "
        "EPIC CSV) or a DIR/<class name>/<video> folder",
    )
    p.add_argument("--val-list", help="validation annotations or class folder")
    p.add_argument("--num-frames", type=int, help="frames per clip")
    p.add_argument("--img-size", type=int, help="crop size in pixels")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="clips per process and step")
    p.add_argument("--lr", type=float, help="peak learning rate (default: 0.03 x total batch / 64)")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, help="data-loading worker processes per process")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--out", help="run directory (default: runs/default)")
    p.add_argument("--fresh", action="store_true", help="ignore existing checkpoints in OUT and start over")
    p.add_argument(
        "--val-split",
        type=float,
        help="without --val-list: hold out this share of the training videos for validation",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved config, the model and the data (probing a sample of "
        "the videos), then exit without training",
    )


def flag_overrides(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The ``--flag value`` options as ``(flag, "key=value")`` pairs (for load_config)."""
    return [
        ("--" + dest.replace("_", "-"), f"{key}={getattr(args, dest)}")
        for dest, key in _FLAG_KEYS.items()
        if getattr(args, dest, None) is not None
    ]


def run(args: argparse.Namespace) -> int:
    """Entry point of `xvit train`; returns the exit code."""
    from xvit.data.annotations import AnnotationError
    from xvit.data.dataset import UnreadableDataError
    from xvit.engine.run.config import load_config
    from xvit.engine.run.distributed import cleanup
    from xvit.engine.run.rundir import RunDirError, WriteError
    from xvit.engine.run.schema import ConfigError
    from xvit.engine.train.collapse import TrainingCollapsedError
    from xvit.engine.train.loop import train
    from xvit.engine.train.nonfinite import NonFiniteLossError
    from xvit.models.hub import CheckpointError

    args = parse_intermixed(args, add_arguments, "xvit train", "items")
    try:
        config, overrides = split_items(args.items)
        cfg = load_config(config, overrides, flag_overrides(args))
    except (ValueError, ConfigError) as e:
        return error("xvit train", e, 2)
    if args.dry_run:
        from xvit.engine.train.plan import describe_run

        try:
            print(describe_run(cfg, fresh=args.fresh), flush=True)
        except (ConfigError, AnnotationError, CheckpointError, FileNotFoundError) as e:
            return error("xvit train", e, 2)
        return 0
    try:
        code, _ = guarded(
            "xvit train",
            lambda: train(cfg, fresh=args.fresh, command=command_line(args, "train", "items")),
            [
                ((NonFiniteLossError, TrainingCollapsedError, UnreadableDataError, WriteError), 1),
                # bad input found once training set-up reads it (weights, lists, videos, the run
                # directory, a second run on it)
                ((ConfigError, CheckpointError, AnnotationError, RunDirError, FileNotFoundError), 2),
                ((OSError,), 1),
            ],  # disk full, quota, I/O error while the run writes its files
            interrupted="interrupted; run the same command again to resume",
        )
    finally:
        cleanup()
    return code
