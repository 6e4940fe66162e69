"""Optimiser, learning-rate schedule and weight EMA.

- :func:`param_groups`: weight decay on weight matrices only; none on norms, biases,
  embeddings and tokens, nor on what ``model.no_weight_decay()`` names.
- :func:`build_optimizer`: SGD with momentum (the released recipe) or AdamW; the head at its
  own rate (``optim.head_lr_scale``, by default the head's: 0.1 for the temporal-attention
  head, docs/results.md) and optional layer-wise decay (``optim.layer_decay``).
- :func:`warmup_cosine`: a ``LambdaLR`` stepping once per optimiser step, linear warm-up to
  the peak rate, then a half cosine down to ``min_lr``.
- :func:`scaled_lr`: the recipe's linear scaling ``base_lr * total_batch / base_batch_size``.
- :class:`ModelEma`: an exponential moving average of the weights.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from xvit.engine.run.schema import OptimConfig
from xvit.models.heads import HEAD_LR_SCALE

__all__ = [
    "ModelEma",
    "WarmupCosine",
    "build_optimizer",
    "head_lr_scale",
    "lr_scale_of",
    "param_groups",
    "scaled_lr",
    "warmup_cosine",
]


def _no_decay_names(model: nn.Module) -> set[str]:
    fn = getattr(model, "no_weight_decay", None)
    names = set(fn()) if callable(fn) else set()
    return names


def lr_scale_of(name: str, depth: int, head_lr_scale: float, layer_decay: float) -> float:
    """The multiplier of the peak rate for parameter ``name``: ``head_lr_scale`` for the head
    (``head.*``); with ``layer_decay`` < 1 (BEiT's layer-wise decay) ``layer_decay ** (depth +
    1 - i)`` for block ``i - 1`` (``blocks.<i-1>.*``), ``layer_decay ** (depth + 1)`` for the
    embeddings and tokens, 1 for the final norm."""
    if name.startswith("head."):
        return head_lr_scale
    if layer_decay == 1.0 or depth == 0:
        return 1.0
    if name.startswith("blocks."):
        layer = int(name.split(".")[1]) + 1
    elif name.startswith(("norm.", "fc_norm.")):
        layer = depth + 1
    else:  # patch and position embeddings, tokens
        layer = 0
    return layer_decay ** (depth + 1 - layer)


def param_groups(
    model: nn.Module, weight_decay: float, head_lr_scale: float = 1.0, layer_decay: float = 1.0
) -> list[dict]:
    """The optimiser's groups: decayed weight matrices and the rest (``weight_decay`` 0), each
    split by learning-rate multiplier (:func:`lr_scale_of`; a group's ``lr_scale``), the
    full-rate groups first.

    No decay for: 1-d parameters (norm scales and shifts, biases), parameters whose last name
    component ends with ``_token`` or ``_embed`` (``cls_token``, ``pos_embed``, ``temp_embed``),
    and any parameter named by ``model.no_weight_decay()`` (exact name or a prefix of it).
    """
    skip = _no_decay_names(model)
    blocks = getattr(model, "blocks", None)
    depth = len(blocks) if isinstance(blocks, nn.ModuleList | nn.Sequential) else 0
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {(1.0, True): [], (1.0, False): []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        named = name in skip or any(name.startswith(s + ".") for s in skip)
        decayed = not (p.ndim <= 1 or leaf.endswith(("_token", "_embed")) or named)
        scale = lr_scale_of(name, depth, head_lr_scale, layer_decay)
        groups.setdefault((scale, decayed), []).append(p)
    order = sorted(groups, key=lambda k: (k[0] != 1.0, -k[0], not k[1]))
    return [
        {"params": groups[k], "weight_decay": weight_decay if k[1] else 0.0, "lr_scale": k[0]}
        for k in order
        if groups[k] or k[0] == 1.0
    ]


def scaled_lr(cfg: OptimConfig, total_batch: int) -> float:
    """The peak learning rate: ``cfg.lr`` when set, else linearly scaled from the recipe."""
    if cfg.lr is not None:
        return cfg.lr
    return cfg.base_lr * total_batch / cfg.base_batch_size


def head_lr_scale(cfg: OptimConfig, head: str) -> float:
    """``optim.head_lr_scale``, or when it is null the head's own (``HEAD_LR_SCALE``)."""
    if cfg.head_lr_scale is not None:
        return cfg.head_lr_scale
    return HEAD_LR_SCALE.get(head, 1.0)


def build_optimizer(cfg: OptimConfig, model: nn.Module, lr: float, head: str = "") -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over :func:`param_groups`, each group at
    ``lr`` times its ``lr_scale`` (the head's rate and layer-wise decay)."""
    scale = head_lr_scale(cfg, head or getattr(getattr(model, "config", None), "head", ""))
    groups = param_groups(model, cfg.weight_decay, scale, cfg.layer_decay)
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adamw":
        if len(cfg.betas) != 2:
            raise ValueError(f"optim.betas must hold two numbers, got {cfg.betas}")
        return torch.optim.AdamW(groups, lr=lr, betas=(cfg.betas[0], cfg.betas[1]))
    raise ValueError(f"optim.name must be sgd or adamw, got {cfg.name!r}")


class WarmupCosine:
    """Multiplier of the peak lr at optimiser step ``step`` (0-based).

    Warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps (so the first
    step already moves); then ``min_ratio + (1 - min_ratio) * (1 + cos(pi * p)) / 2`` with
    ``p = (step - warmup_steps) / (total_steps - warmup_steps)``.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> None:
        self.warmup_steps = max(0, int(warmup_steps))
        self.total_steps = max(1, int(total_steps))
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr: float, lr: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step linear warm-up + cosine decay to ``min_lr``."""
    ratio = min_lr / lr if lr > 0 else 0.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, ratio))


class ModelEma(nn.Module):
    """``ema = decay * ema + (1 - decay) * weights`` after every optimiser step; buffers copied.

    The effective decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates so
    that the average is not dominated by the random initialisation in short runs.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        n = int(self.num_updates)
        d = min(self.decay, (1 + n) / (10 + n))
        ema_params = dict(self.module.named_parameters())
        for name, p in model.named_parameters():
            ema_params[name].lerp_(p.detach().to(ema_params[name].dtype), 1.0 - d)
        ema_buffers = dict(self.module.named_buffers())
        for name, b in model.named_buffers():
            ema_buffers[name].copy_(b)
        self.num_updates += 1

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
