"""Why a temporal-attention (TA) head did or did not train end to end: a probe.

Trains the built-in synthetic recipe's models (tiny backbones of width 96, 8 frames of
32x32, AdamW, weight decay 0.05, one warm-up epoch then cosine, gradient clipping 1.0,
batch 16) for a few epochs, once per setting and seed, and records what the
issue's candidates need:

- per-module gradient norms (patch embedding, backbone blocks, final norm, the head's
  CLS token, block and classifier) at chosen optimiser steps;
- where the head's CLS looks: its attention weight on itself against the T frame tokens,
  and the entropy of its attention over the frames (ln T = uniform);
- how alike the backbone's per-frame features are across videos (mean cosine between the
  clip-mean features of different validation videos; 1 = every video looks the same);
- the loss split by twin pairs: cross-entropy = -log p(pair) - log p(class | pair), where the
  synthetic classes come in time-reversed twin pairs (right/left, growing/shrinking, ...):
  the first term falls when the model tells pairs apart (possible without time), the second
  only when it tells the direction of time;
- the validation top-1, twin-pair accuracy and confusion matrix after every epoch.

Settings (`--settings`, comma list): `HEAD` or `HEAD:INIT` with HEAD one of avg, linear, ta
and INIT `released` (the package's initialisation: the TA head as the released X-ViT builds
it, PyTorch's default linears and a zero CLS) or `timm` (every linear of the head
truncated-normal std 0.02 with zero bias and a std-0.02 CLS, as the model initialised its
head before the fix) or `stdX` (the same with std X: `std0.057` = 0.02 * sqrt(768 / 96)
gives each linear map at width 96 the gain std 0.02 has at ViT-B's width 768); `+clsX`
after any of them sets the CLS token instead (`+cls0`: zeros, `+cls0.02`: truncated normal
std 0.02). `--seeds` repeats every setting per seed; `--model` picks the backbone.
Clips are decoded once with the evaluation transform (no scale jitter), so a probe run is a
close but not identical copy of `xvit train` (which also jitters the scale); every setting
sees the same clips in the same order.

    python benchmarks/ta_probe.py --settings avg,ta:timm,ta:released --epochs 4 \\
        --out docs/results/ta_probe.json

Writes the JSON (every figure, the command, the machine) and prints a summary table.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xvit.benchmarks.machine import cpu_model
from xvit.engine.run.coerce import apply_overrides
from xvit.engine.run.config import load_config
from xvit.engine.run.data import build_datasets
from xvit.engine.run.model import build_model
from xvit.engine.train.optim import build_optimizer, warmup_cosine
from xvit.models.heads import TemporalAttentionHead, trunc_normal_linear

RECIPE = Path(__file__).resolve().parent.parent / "configs" / "synthetic.yaml"
GROUPS = ("patch_embed", "blocks", "norm", "head.cls_token", "head.blocks", "head")


def decode(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Every clip of an evaluation dataset (one view) and its labels."""
    clips, labels = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        video = item["video"]
        clips.append(video[0] if video.ndim == 5 else video)
        labels.append(int(item["label"]))
    return torch.stack(clips), torch.tensor(labels)


def load_clips(cfg: Any) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from xvit.engine.run.data import build_eval_dataset

    data = build_datasets(cfg, (1, 1))
    train = build_eval_dataset(cfg, data.train.samples, (1, 1))
    return {"train": decode(train), "val": decode(data.val)}


def timm_head_init(head: nn.Module, std: float = 0.02) -> None:
    """The head's initialisation before the fix (std 0.02): every linear truncated normal
    with zero bias (the backbone's rule), the CLS token truncated normal (std 0.02)."""
    for m in head.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_linear(m, std)
    if isinstance(head, TemporalAttentionHead):
        nn.init.trunc_normal_(head.cls_token, std=0.02)


def grad_norms(model: nn.Module) -> dict[str, float]:
    """The gradient norm of each module group (a parameter counts in the first group whose
    name prefixes it)."""
    sums = dict.fromkeys(GROUPS, 0.0)
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        for g in GROUPS:
            if name == g or name.startswith(g + "."):
                sums[g] += float(p.grad.detach().pow(2).sum())
                break
    return {g: math.sqrt(v) for g, v in sums.items() if v > 0}


@torch.no_grad()
def head_attention(model: nn.Module, feats: torch.Tensor) -> dict[str, float]:
    """Where the TA head's CLS looks, in its first block: mean weight on itself, and the
    entropy of its (renormalised) weights over the frames."""
    head = model.head
    if not isinstance(head, TemporalAttentionHead):
        return {}
    b, t, d = feats.shape
    x = torch.cat([head.cls_token.expand(b, -1, -1), feats], dim=1)
    blk = head.blocks[0]
    attn = blk.attn
    heads = attn.num_heads
    qkv = attn.qkv(blk.norm1(x)).reshape(b, 1 + t, 3, heads, d // heads)
    q, k = qkv[:, 0, 0], qkv[:, :, 1]  # CLS query (B, h, c), keys (B, 1+T, h, c)
    w = torch.einsum("bhc,bkhc->bhk", q, k).mul((d // heads) ** -0.5).softmax(-1)
    frames = w[..., 1:] / w[..., 1:].sum(-1, keepdim=True)
    entropy = -(frames * frames.clamp_min(1e-12).log()).sum(-1)
    return {"cls_self": float(w[..., 0].mean()), "frame_entropy": float(entropy.mean())}


@torch.no_grad()
def evaluate(model: nn.Module, clips: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    model.eval()
    feats = torch.cat([model.forward_features(clips[i : i + 50]) for i in range(0, len(clips), 50)])
    logits = model.forward_head(feats)
    model.train()
    pred = logits.argmax(1)
    twin = labels ^ 1  # classes 2k and 2k+1 are time-reversed twins
    logp = logits.log_softmax(1)
    pair_logp = torch.logaddexp(logp.gather(1, labels[:, None]), logp.gather(1, twin[:, None]))[:, 0]
    within = logp.gather(1, labels[:, None])[:, 0] - pair_logp
    n = logits.shape[1]
    confusion = torch.zeros(n, n, dtype=torch.long)
    confusion.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
    mean = F.normalize(feats.mean(1), dim=-1)
    cos = mean @ mean.T
    k = len(mean)
    return {
        "top1": float((pred == labels).float().mean() * 100),
        "twin_pair_acc": float(
            (logits.gather(1, labels[:, None]) > logits.gather(1, twin[:, None])).float().mean() * 100
        ),
        "loss": float(-logp.gather(1, labels[:, None]).mean()),
        "loss_pair": float(-pair_logp.mean()),
        "loss_within_pair": float(-within.mean()),
        "video_cos": float((cos.sum() - cos.diagonal().sum()) / (k * k - k)),
        "confusion": confusion.tolist(),
        **head_attention(model, feats),
    }


def run_setting(cfg: Any, setting: str, data: dict, epochs: int, seed: int, log_steps: set[int]) -> dict:
    head, _, init = setting.partition(":")
    init, _, cls = (init or "released").partition("+")
    try:
        std = 0.02 if init in ("released", "timm") else float(init.removeprefix("std"))
        cls_std = None if not cls else float(cls.removeprefix("cls"))
    except ValueError:
        raise SystemExit(f"ta_probe: bad init in {setting!r} (released, timm or stdX, then +clsX)") from None
    if not (init in ("released", "timm") or init.startswith("std")) or (cls and not cls.startswith("cls")):
        raise SystemExit(f"ta_probe: bad init in {setting!r} (released, timm or stdX, then +clsX)")
    cfg = apply_overrides(cfg, [f"model.head={head}", f"train.seed={seed}"])
    torch.manual_seed(seed)
    model = build_model(cfg, num_classes=8)
    if init != "released":
        timm_head_init(model.head, std)
    if cls_std is not None and isinstance(model.head, TemporalAttentionHead):
        if cls_std:
            nn.init.trunc_normal_(model.head.cls_token, std=cls_std)
        else:
            nn.init.zeros_(model.head.cls_token)
    model.train()
    xtr, ytr = data["train"]
    xva, yva = data["val"]
    bs = cfg.data.batch_size
    per_epoch = len(xtr) // bs
    lr = cfg.optim.lr
    opt = build_optimizer(cfg.optim, model, lr)
    sched = warmup_cosine(
        opt, round(cfg.optim.warmup_epochs * per_epoch), epochs * per_epoch, cfg.optim.min_lr, lr
    )
    order = torch.Generator().manual_seed(seed)
    steps, curve, step = [], [], 0
    start = time.perf_counter()
    for epoch in range(epochs):
        perm = torch.randperm(len(xtr), generator=order)
        for i in range(per_epoch):
            idx = perm[i * bs : (i + 1) * bs]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if step in log_steps:
                steps.append({"step": step, "loss": float(loss.detach()), "grad_norm": grad_norms(model)})
            if cfg.optim.clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
            opt.step()
            sched.step()
            step += 1
        curve.append({"epoch": epoch + 1, **evaluate(model, xva, yva)})
        c = curve[-1]
        print(
            f"  {setting:<14} seed {seed} epoch {epoch + 1}: top-1 {c['top1']:.1f}%  twin {c['twin_pair_acc']:.1f}%  "
            f"loss {c['loss']:.3f} = pair {c['loss_pair']:.3f} + within {c['loss_within_pair']:.3f}  "
            f"video-cos {c['video_cos']:.3f}",
            flush=True,
        )
    return {
        "setting": setting,
        "seed": seed,
        "head": head,
        "init": init,
        "model": cfg.model.name,
        "seconds": round(time.perf_counter() - start, 1),
        "steps": steps,
        "epochs": curve,
    }


def summary(results: list[dict]) -> str:
    rows = [
        "| setting | top-1 | twin-pair | loss = pair + within | video cos | CLS on itself | "
        "grad norm blocks, step 0 -> last logged |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        e = r["epochs"][-1]
        g0, g1 = r["steps"][0]["grad_norm"], r["steps"][-1]["grad_norm"]
        rows.append(
            f"| {r['model']} {r['setting']} seed {r['seed']} | {e['top1']:.1f} | {e['twin_pair_acc']:.1f} | "
            f"{e['loss']:.3f} = {e['loss_pair']:.3f} + {e['loss_within_pair']:.3f} | {e['video_cos']:.3f} | "
            f"{e.get('cls_self', float('nan')):.3f} | {g0.get('blocks', 0):.3g} -> {g1.get('blocks', 0):.3g} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", default="avg,ta:timm,ta:released", help="comma list of HEAD[:INIT]")
    p.add_argument("--model", default="xvit_tiny_patch16", help="registry name of the backbone")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (Table 2's 3e-4)")
    p.add_argument("--seeds", default="0", help="comma list of seeds")
    p.add_argument(
        "--steps", default="0,1,2,5,10,20,40,63,127,191,255", help="steps whose gradient norms are kept"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="JSON output")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(
        RECIPE, [f"model.name={args.model}", f"optim.lr={args.lr}", f"train.epochs={args.epochs}"]
    )
    data = load_clips(cfg)
    log_steps = {int(s) for s in args.steps.split(",") if s.strip()}
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    results = [run_setting(cfg, s, data, args.epochs, seed, log_steps) for s in settings for seed in seeds]
    table = summary(results)
    print(table)
    if args.out:
        out = {
            "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
            "machine": cpu_model(),
            "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "results": results,
            "summary": table,
        }
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
