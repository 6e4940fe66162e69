"""Which optimiser setting makes the temporal-attention (TA) head collapse, and which cures it.

Trains the built-in synthetic recipe's tiny X-ViT (clips decoded once, as in
``benchmarks/ta_probe.py``) with AdamW at ``--lr``, one parameter group per parameter so that
each knob can move one part of the model alone:

- ``--head-lr``: the head's rate as a multiple of ``--lr`` (what ``optim.head_lr_scale`` sets);
- ``--qkv-lr``: on top of it, the head's attention projections only;
- ``--layer-decay``: BEiT's layer-wise decay over the backbone (the head at the full rate);
- ``--warmup``: warm-up epochs; ``--beta2``: AdamW's second-moment decay;
- ``--zero-last``: the head's last linear layer initialised at zero;
- ``--cls``: what the head's CLS enters as (``mean``: token plus the frames' mean, the
  model's default; ``token``: the token alone, as released and as every row measured before
  ``head_cls`` existed); ``--cls-lr`` / ``--cls-std``: the CLS token's own rate and a
  truncated-normal start; ``--block-lr`` / ``--mlp-lr``: the rate of the head's transformer
  block (with its CLS token) or of its classifier MLP alone;
- ``--set KEY=VALUE``: any model field (``model.overrides.KEY``), e.g. ``head_classifier=linear``;
- ``--squares DIR``: train and validate on the moving squares
  (``xvit.data.squares.write_squares_dataset(DIR, num_train=256, num_val=50)``) instead of
  the built-in synthetic data.

Prints the validation top-1 after every epoch and one ``RESULT`` line per seed:

    python benchmarks/ta_lr_sweep.py --head ta --head-lr 0.1 --seeds 0,1 --epochs 6 --tag hlr0.1
    python benchmarks/ta_lr_sweep.py --head ta --cls token --head-lr 0.03 --squares runs/squares --epochs 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ta_probe import RECIPE, evaluate, load_clips

from xvit.engine.run.coerce import apply_overrides
from xvit.engine.run.config import load_config
from xvit.engine.run.model import build_model
from xvit.engine.train.optim import WarmupCosine


def groups(model: nn.Module, a: argparse.Namespace) -> list[dict]:
    depth = len(model.blocks)
    out = []
    for name, p in model.named_parameters():
        if name.startswith("head."):
            scale = a.head_lr * (a.qkv_lr if ".attn.qkv" in name else 1.0)
            if a.block_lr is not None and name.startswith(("head.blocks", "head.cls_token")):
                scale = a.block_lr
            if a.cls_lr is not None and name == "head.cls_token":
                scale = a.cls_lr
            if a.mlp_lr is not None and name.startswith("head.mlp_head"):
                scale = a.mlp_lr
        elif name.startswith("blocks."):
            scale = a.layer_decay ** (depth - int(name.split(".")[1]))
        elif name.startswith("norm."):
            scale = 1.0
        else:
            scale = a.layer_decay ** (depth + 1)
        no_decay = p.ndim <= 1 or name.rsplit(".", 1)[-1].endswith(("_token", "_embed"))
        out.append({"params": [p], "weight_decay": 0.0 if no_decay else 0.05, "lr": a.lr * scale})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--head", default="ta")
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--head-lr", type=float, default=1.0)
    p.add_argument("--qkv-lr", type=float, default=1.0)
    p.add_argument("--layer-decay", type=float, default=1.0)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--zero-last", action="store_true")
    p.add_argument("--cls", choices=("mean", "token"), default="mean")
    p.add_argument("--cls-lr", type=float, default=None)
    p.add_argument("--cls-std", type=float, default=0.0)
    p.add_argument("--block-lr", type=float, default=None)
    p.add_argument("--mlp-lr", type=float, default=None)
    p.add_argument("--squares", default=None, help="a moving-squares dataset directory")
    p.add_argument("--set", action="append", default=[], help="a model key=value (repeatable)")
    p.add_argument("--tag", default="")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    overrides = [f"optim.lr={a.lr}", f"train.epochs={a.epochs}"]
    if a.squares:
        overrides += [f"data.train_list={a.squares}/train.txt", f"data.val_list={a.squares}/val.txt"]
    cfg = load_config(RECIPE, overrides)
    data = load_clips(cfg)
    xtr, ytr = data["train"]
    xva, yva = data["val"]
    for seed in [int(s) for s in a.seeds.split(",")]:
        c = apply_overrides(
            cfg,
            [f"model.head={a.head}", f"train.seed={seed}", f"model.overrides.head_cls={a.cls}"]
            + [f"model.overrides.{kv}" for kv in a.set],
        )
        torch.manual_seed(seed)
        model = build_model(c, num_classes=int(ytr.max()) + 1)
        if a.cls_std and hasattr(model.head, "cls_token"):
            nn.init.trunc_normal_(model.head.cls_token, std=a.cls_std)
        if a.zero_last:
            last = model.head.mlp_head[-1] if hasattr(model.head, "mlp_head") else model.head.fc
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        opt = torch.optim.AdamW(groups(model, a), lr=a.lr, betas=(0.9, a.beta2))
        bs = 16
        per = len(xtr) // bs
        sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(round(a.warmup * per), a.epochs * per))
        order = torch.Generator().manual_seed(seed)
        start, accs = time.time(), []
        for epoch in range(a.epochs):
            perm = torch.randperm(len(xtr), generator=order)
            for i in range(per):
                idx = perm[i * bs : (i + 1) * bs]
                loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
            e = evaluate(model, xva, yva)
            accs.append(round(e["top1"], 1))
            print(
                f"{a.tag} seed {seed} epoch {epoch + 1}: top-1 {e['top1']:.1f}  loss {e['loss']:.3f}  "
                f"video-cos {e['video_cos']:.3f}  {time.time() - start:.0f}s",
                flush=True,
            )
        print(f"RESULT {a.tag} {a.head} seed {seed} {accs}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
