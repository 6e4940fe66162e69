"""Top-1 agreement of bf16 and fp32 inference on a validation set (CPU).

Decodes every video of the list once (the run's test views, default 1x1), then scores the
same clips three ways with the same weights:

- ``fp32``: the model in float32 (the reference);
- ``autocast``: ``torch.autocast("cpu", torch.bfloat16)`` around the float32 model;
- ``bf16``: the model converted with ``model.to(torch.bfloat16)``, input in bf16.

Prints and writes (``--out``, JSON) each mode's top-1, the fraction of videos whose top-1
class agrees with fp32, the largest logit difference, and the fp32 margin (top-1 minus
top-2 logit) of the videos that disagree, and the smallest fp32 margin of all (how close
the nearest decision was).

    python benchmarks/bf16_agreement.py --checkpoint runs/ablation/xvit-ta/seed-0 \
        --list ~/.cache/xvit/synth/val.txt --out docs/img/bf16_agreement.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xvit.benchmarks.machine import cpu_model


def load_clips(
    checkpoint: str, list_file: str, views: str, overrides: list[str]
) -> tuple[nn.Module, torch.Tensor, torch.Tensor, list[str]]:
    """The run's model, every view of every video ``(N, V, 3, T, H, W)``, labels, failures."""
    from xvit.engine.run.config import apply_overrides, parse_views
    from xvit.engine.run.data import build_eval_dataset, read_split
    from xvit.engine.run.saved import load_run

    model, cfg = load_run(checkpoint, overrides)
    cfg = apply_overrides(cfg, [f"eval.views={views}"])
    names = list(model.config.class_names) if model.config.class_names else None
    samples, _, _ = read_split(cfg, list_file, class_names=names)
    dataset = build_eval_dataset(cfg, samples, parse_views(views))
    clips, labels, failed = [], [], []
    for i in range(len(dataset)):
        item = dataset[i]
        if item.get("video") is None:
            failed.append(f"{getattr(samples[i], 'path', i)}: {item.get('error')}")
            continue
        video = item["video"]
        clips.append(video if video.ndim == 5 else video[None])
        labels.append(int(item["label"]))
    if not clips:
        raise RuntimeError(f"{list_file}: no video could be read")
    return model, torch.stack(clips), torch.tensor(labels), failed


@torch.inference_mode()
def score(model: nn.Module, clips: torch.Tensor, mode: str, batch_size: int) -> torch.Tensor:
    """Logits ``(N, C)`` (float32; views fused by the mean of the softmax) in one precision mode."""
    model.eval()
    if mode == "bf16":
        model = model.to(torch.bfloat16)
    n, v = clips.shape[:2]
    flat = clips.flatten(0, 1)
    out = []
    for start in range(0, flat.shape[0], batch_size):
        x = flat[start : start + batch_size]
        if mode == "bf16":
            x = x.to(torch.bfloat16)
        if mode == "autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out.append(model(x).float())
        else:
            out.append(model(x).float())
    if mode == "bf16":
        model.to(torch.float32)
    logits = torch.cat(out).view(n, v, -1)
    return logits.softmax(-1).mean(1).log() if v > 1 else logits[:, 0]


def compare(reference: torch.Tensor, other: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Top-1 of ``other``, its top-1 agreement with ``reference`` and the logit differences."""
    ref_top, top = reference.argmax(-1), other.argmax(-1)
    agree = ref_top == top
    two = reference.topk(2, dim=-1).values
    margins = (two[:, 0] - two[:, 1])[~agree]
    return {
        "top1": round(100.0 * (top == labels).float().mean().item(), 3),
        "agreement": round(100.0 * agree.float().mean().item(), 3),
        "disagreeing_videos": int((~agree).sum()),
        "max_abs_logit_diff": round((reference - other).abs().max().item(), 5),
        "mean_abs_logit_diff": round((reference - other).abs().mean().item(), 5),
        "fp32_margin_of_disagreeing": [round(m, 5) for m in margins.tolist()],
        "fp32_min_margin": round((two[:, 0] - two[:, 1]).min().item(), 5),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--checkpoint", required=True, help="a finished run directory (or save_pretrained directory)"
    )
    p.add_argument("--list", required=True, help="validation annotations")
    p.add_argument("--views", default="1x1", help="test views TxS (default 1x1)")
    p.add_argument("--modes", default="autocast,bf16", help="bf16 modes to compare with fp32")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--out", help="write the figures as JSON here")
    p.add_argument(
        "--attention",
        choices=("auto", "sdpa"),
        default="auto",
        help="sdpa: fused SDPA in bf16 too, instead of xvit's chunked product on CPU",
    )
    p.add_argument("overrides", nargs="*", help="key=value config overrides (as xvit eval)")
    args = p.parse_args(argv)
    from xvit.models.attention import set_attention_kernel

    set_attention_kernel(args.attention)
    if args.threads:
        torch.set_num_threads(args.threads)

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("autocast", "bf16")]
    if bad:
        p.error(f"--modes: unknown mode(s) {', '.join(bad)}; choose from autocast, bf16")
    model, clips, labels, failed = load_clips(args.checkpoint, args.list, args.views, args.overrides)
    doc: dict[str, Any] = {
        "command": shlex.join(
            ["python", "benchmarks/bf16_agreement.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "checkpoint": args.checkpoint,
        "list": args.list,
        "views": args.views,
        "num_videos": int(labels.numel()),
        "num_failed": len(failed),
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "attention": args.attention,
    }
    t0 = time.perf_counter()
    reference = score(model, clips, "fp32", args.batch_size)
    doc["fp32"] = {
        "top1": round(100.0 * (reference.argmax(-1) == labels).float().mean().item(), 3),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    print(
        f"{doc['num_videos']} videos ({args.views} views, {len(failed)} failed), "
        f"fp32 top1 {doc['fp32']['top1']:.2f}%"
    )
    for mode in modes:
        t0 = time.perf_counter()
        logits = score(model, clips, mode, args.batch_size)
        doc[mode] = {**compare(reference, logits, labels), "seconds": round(time.perf_counter() - t0, 2)}
        r = doc[mode]
        print(
            f"{mode:9s} top1 {r['top1']:.2f}%  agreement with fp32 {r['agreement']:.2f}% "
            f"({r['disagreeing_videos']} videos differ)  max |logit diff| {r['max_abs_logit_diff']:.4f}"
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
