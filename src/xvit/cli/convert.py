"""`xvit convert-official`: a released X-ViT checkpoint -> a `save_pretrained` directory."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _read_class_names(path: Path) -> list[str]:
    """One class name per line (blank lines and ``#`` comments skipped), or a JSON list /
    {name: index} map; read as any editor saves them (``xvit.data.text``: byte-order marks,
    UTF-16, CRLF), bytes that are not text refused with the line."""
    import json

    from xvit.data.samples import read_class_names
    from xvit.data.text import read_user_text

    if path.suffix != ".json":
        return read_class_names(path)
    try:
        data = json.loads(read_user_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    if isinstance(data, dict):
        try:
            by_index = sorted(data.items(), key=lambda kv: int(kv[1]))
        except (TypeError, ValueError):
            raise ValueError(f"{path}: class indices must be integers") from None
        if [int(i) for _, i in by_index] != list(range(len(by_index))):
            raise ValueError(f"{path}: class indices are not 0..{len(by_index) - 1}")
        return [str(name) for name, _ in by_index]
    if isinstance(data, list):
        return [str(name) for name in data]
    raise ValueError(f"{path}: expected a JSON list of names or a {{name: index}} object")


def run(args: argparse.Namespace) -> int:
    """Convert `args.checkpoint` into `args.out`; returns the exit code."""
    from xvit.models.convert_official import convert_official
    from xvit.models.hub import CheckpointError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        class_names = _read_class_names(Path(args.class_names)) if args.class_names else None
        out = convert_official(
            args.checkpoint,
            args.out,
            preset=args.preset,
            num_classes=args.num_classes,
            num_heads=args.num_heads,
            head_num_heads=args.head_num_heads,
            class_names=class_names,
        )
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"xvit convert-official: error: {e}", file=sys.stderr)
        return 2  # bad input: a missing or foreign file, a checkpoint the settings do not fit
    print(f"wrote {out}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `convert-official`."""
    p = subparsers.add_parser(
        "convert-official",
        help="convert a released X-ViT (PySlowFast) checkpoint to a save_pretrained directory",
        description=(
            "Read a released X-ViT checkpoint safely (torch.load(weights_only=True)), take "
            "frames, segments, div, mixing layers, head sizes, classes and normalisation from "
            "the PySlowFast cfg it carries (or from --preset when it has none), and write "
            "model.safetensors + config.json for xvit.load_model."
        ),
    )
    p.add_argument("checkpoint", help="the released .pth / .pyth file")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--preset",
        choices=("k600", "ssv2"),
        default=None,
        help="settings of a released model, for files without a cfg (the file's cfg wins where it has one)",
    )
    p.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="number of classes (default: MODEL.NUM_CLASSES of the cfg / preset)",
    )
    p.add_argument(
        "--num-heads",
        type=int,
        default=None,
        help="backbone attention heads (default: from XVIT.BASE_MODEL or the width)",
    )
    p.add_argument(
        "--head-num-heads",
        type=int,
        default=None,
        help="temporal-attention head's heads (default: TEMPORAL_HEAD.NUM_ATTENTION_HEADS)",
    )
    p.add_argument(
        "--class-names",
        default=None,
        help="class names stored in config.json: one per line, or a JSON list / {name: index} map",
    )
    p.set_defaults(func=run)
