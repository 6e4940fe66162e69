"""The checks a resolved :class:`~xvit.engine.run.schema.Config` must pass: every numeric key
in its range (one table, :data:`LIMITS`), the scales, normalisation, betas and views, then
the model settings against the registered model."""

from __future__ import annotations

import math
import typing
from typing import Any

from xvit.engine.run.model import model_options
from xvit.engine.run.schema import Config, ConfigError, get_value, parse_views
from xvit.models.registry import model_config, pretrained_source

__all__ = ["LIMITS", "check_config"]

# What each numeric key accepts (one table; check_config applies it). None is allowed
# wherever the schema allows it.
LIMITS: dict[str, tuple[str, typing.Callable[[Any], bool]]] = {
    "model.head_drop_rate": ("in [0, 1)", lambda v: 0 <= v < 1),
    "model.drop_path_rate": ("in [0, 1)", lambda v: 0 <= v < 1),
    "data.num_frames": (">= 1", lambda v: v >= 1),
    "data.sampling_rate": (">= 1", lambda v: v >= 1),
    "data.img_size": (">= 1", lambda v: v >= 1),
    "data.test_scale": (">= data.img_size", None),
    "data.random_erase": ("in [0, 1]", lambda v: 0 <= v <= 1),
    "data.batch_size": (">= 1", lambda v: v >= 1),
    "data.workers": (">= 0", lambda v: v >= 0),
    "train.collapse_patience": (">= 0", lambda v: v >= 0),
    "optim.head_lr_scale": ("> 0", lambda v: v is None or v > 0),
    "optim.layer_decay": ("in (0, 1]", lambda v: 0 < v <= 1),
    "data.val_split": ("in [0, 1)", lambda v: 0 <= v < 1),
    "optim.lr": ("> 0", lambda v: v > 0),
    "optim.base_lr": ("> 0", lambda v: v > 0),
    "optim.base_batch_size": (">= 1", lambda v: v >= 1),
    "optim.momentum": ("in [0, 1)", lambda v: 0 <= v < 1),
    "optim.weight_decay": (">= 0", lambda v: v >= 0),
    "optim.warmup_epochs": (">= 0", lambda v: v >= 0),
    "optim.min_lr": (">= 0", lambda v: v >= 0),
    "optim.clip_grad": ("> 0 (or null: off)", lambda v: v > 0),
    "optim.accum_steps": (">= 1", lambda v: v >= 1),
    "optim.label_smoothing": ("in [0, 1)", lambda v: 0 <= v < 1),
    "optim.mixup": (">= 0", lambda v: v >= 0),
    "optim.cutmix": (">= 0", lambda v: v >= 0),
    "optim.ema_decay": ("in (0, 1)", lambda v: 0 < v < 1),
    "train.epochs": (">= 1", lambda v: v >= 1),
    "train.threads": (">= 0", lambda v: v >= 0),
    "train.checkpoint_every": (">= 0", lambda v: v >= 0),
    "train.keep_checkpoints": (">= 0", lambda v: v >= 0),
    "train.eval_every": (">= 1", lambda v: v >= 1),
    "train.log_every": (">= 1", lambda v: v >= 1),
    "eval.batch_size": (">= 1", lambda v: v >= 1),
}


def _where(cfg: Config, key: str) -> str:
    src = cfg.sources.get(key)
    return f" (from {src})" if src and src != "default" else ""


def check_config(cfg: Config) -> None:
    """Raise one :class:`ConfigError` naming every key whose value is out of range, and the
    model settings the registered model cannot take (a patch size that does not divide the
    crop, an unknown option or head)."""
    problems = []
    for key, (desc, ok) in LIMITS.items():
        value = get_value(cfg, key)
        if value is None or ok is None:
            continue
        if (isinstance(value, float) and not math.isfinite(value)) or not ok(value):
            problems.append(f"{key}={value!r}{_where(cfg, key)} must be {desc}")
    d = cfg.data
    scale = d.train_scale
    if scale is not None:
        if len(scale) not in (1, 2) or not scale[0] <= scale[-1]:
            problems.append(
                f"data.train_scale={scale}{_where(cfg, 'data.train_scale')} must be [low, high] with low <= high"
            )
        elif d.img_size >= 1 and scale[0] < d.img_size:
            problems.append(
                f"data.train_scale={scale}{_where(cfg, 'data.train_scale')} must not go below "
                f"data.img_size={d.img_size} (crops are taken from the resized frames)"
            )
    if d.test_scale is not None and d.test_scale < d.img_size:
        problems.append(
            f"data.test_scale={d.test_scale}{_where(cfg, 'data.test_scale')} must be >= data.img_size={d.img_size}"
        )
    for name in ("mean", "std"):
        value = getattr(d, name)
        if value is not None and (len(value) != 3 or not all(math.isfinite(v) for v in value)):
            problems.append(
                f"data.{name}={value}{_where(cfg, 'data.' + name)} must be 3 finite numbers (R, G, B)"
            )
    if d.std is not None and any(v <= 0 for v in d.std):
        problems.append(f"data.std={d.std}{_where(cfg, 'data.std')} must be > 0")
    b = cfg.optim.betas
    if len(b) != 2 or not all(0 <= v < 1 for v in b):
        problems.append(f"optim.betas={b}{_where(cfg, 'optim.betas')} must be two numbers in [0, 1)")
    try:
        parse_views(cfg.eval.views)
    except ConfigError as e:
        problems.append(f"eval.views: {e}")
    if problems:
        raise ConfigError("; ".join(problems))
    # The model: only once the numbers themselves are sane.
    try:
        mc = model_config(cfg.model.name, num_classes=1, **model_options(cfg))
    except (TypeError, ValueError) as e:
        keys = ", ".join(
            f"{k}={get_value(cfg, k)!r}{_where(cfg, k)}"
            for k in ("model.name", "data.img_size", "data.num_frames")
        )
        overrides = f", model.overrides={cfg.model.overrides}" if cfg.model.overrides else ""
        raise ConfigError(f"{e} ({keys}{overrides})") from None
    if cfg.model.pretrained:  # a registry name or tag must exist and fit the model (no download here)
        try:
            pretrained_source(cfg.model.pretrained, mc)
        except ValueError as e:
            raise ConfigError(
                f"model.pretrained={cfg.model.pretrained!r}{_where(cfg, 'model.pretrained')}: {e}"
            ) from None
