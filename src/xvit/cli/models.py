"""`xvit models`: the registered models with their parameters and GFLOPs; `--weights`: the
pretrained weights registry."""

from __future__ import annotations

import argparse
import fnmatch
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `xvit models`."""
    p = subparsers.add_parser(
        "models",
        help="list the registered models with parameters and GFLOPs",
        description=(
            "List the registered models (optionally those matching a glob pattern) with their "
            "attention, default head, parameter count and forward GFLOPs for one clip "
            "(counted on the meta device: no weights are allocated, nothing is computed)."
        ),
    )
    p.add_argument("pattern", nargs="?", default=None, help="glob pattern, e.g. 'xvit_*'")
    p.add_argument("--frames", type=int, default=8, help="clip length T (default 8)")
    p.add_argument("--img-size", type=int, default=224, help="input size (default 224)")
    p.add_argument("--classes", type=int, default=400, help="number of classes (default 400)")
    p.add_argument("--no-flops", action="store_true", help="skip counting FLOPs")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--weights",
        action="store_true",
        help="list the pretrained weights by name (source, licence, provenance, accuracy) instead",
    )
    p.set_defaults(func=run)


def run_weights(args: argparse.Namespace) -> int:
    """`xvit models --weights [PATTERN]`: the weights registry."""
    from xvit.models.weights import get_weights, list_weights

    names = list_weights(args.pattern)
    if not names:
        print(f"no registered weights match {args.pattern!r}")
        return 1
    entries = [get_weights(n) for n in names]
    if args.json:
        print(json.dumps([w.to_dict() for w in entries], indent=2))
        return 0
    print(f"{'weights':<30} {'arch':<10} {'tags':<22} {'trained on':<40} {'top-1':>6}  source")
    for w in entries:
        top1 = f"{w.top1:.2f}" if w.top1 is not None else "-"
        tags = ",".join(w.tags) or "-"
        print(f"{w.name:<30} {w.arch:<10} {tags:<22} {w.dataset:<40} {top1:>6}  {w.source.describe()}")
        print(f"{'':<30} licence: {w.license}; {w.paper}")
    return 0


def describe(name: str, frames: int, img_size: int, classes: int, flops: bool = True) -> dict:
    """Attention, head, parameters and GFLOPs of one registered model (built on `meta`)."""
    import torch

    from xvit.models import count_flops, count_params, create_model

    with torch.device("meta"):
        model = create_model(name, num_classes=classes, num_frames=frames, img_size=img_size)
    row = {
        "name": name,
        "attention": model.config.attention,
        "head": model.config.head,
        "params_m": count_params(model) / 1e6,
    }
    if flops:
        row["gflops"] = count_flops(model, (1, 3, frames, img_size, img_size)) / 1e9
    return row


# The listing at the default clip (8 frames of 224, 400 classes), shipped with the package so
# that `xvit models` answers without importing torch or building 40 models; a test checks that
# it equals what describe() computes for every registered model. Rewrite it after changing a
# model: python -c "from xvit.cli.models import write_table; write_table()"
TABLE = Path(__file__).with_name("models_table.json")
TABLE_CLIP = {"frames": 8, "img_size": 224, "classes": 400}


def write_table(path: Path = TABLE) -> None:
    """Compute the default listing of every registered model and write it to ``path``."""
    from xvit.models import list_models

    c = TABLE_CLIP
    rows = [describe(n, c["frames"], c["img_size"], c["classes"]) for n in list_models()]
    path.write_text(json.dumps({"clip": c, "models": rows}, indent=1) + "\n")


def _rows(args: argparse.Namespace) -> list[dict]:
    """The listing: the shipped table at the default clip, else computed on the meta device."""
    clip = {"frames": args.frames, "img_size": args.img_size, "classes": args.classes}
    if clip == TABLE_CLIP and TABLE.is_file():
        rows = json.loads(TABLE.read_text())["models"]
        rows = [r for r in rows if not args.pattern or fnmatch.fnmatch(r["name"], args.pattern)]
        if args.no_flops:
            rows = [{k: v for k, v in r.items() if k != "gflops"} for r in rows]
        return rows
    from xvit.models import list_models

    names = list_models(args.pattern)
    return [describe(n, args.frames, args.img_size, args.classes, not args.no_flops) for n in names]


def run(args: argparse.Namespace) -> int:
    if args.weights:
        return run_weights(args)
    rows = _rows(args)
    if not rows:
        print(f"no registered model matches {args.pattern!r}")
        return 1
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    flops_title = f"GFLOPs ({args.frames}x{args.img_size})"
    header = f"{'model':<26} {'attention':<9} {'head':<6} {'params (M)':>10}"
    if not args.no_flops:
        header += f" {flops_title:>17}"
    print(header)
    for r in rows:
        line = f"{r['name']:<26} {r['attention']:<9} {r['head']:<6} {r['params_m']:>10.2f}"
        if "gflops" in r:
            line += f" {r['gflops']:>17.1f}"
        print(line)
    return 0
