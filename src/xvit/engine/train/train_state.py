"""What a training checkpoint holds and how a run resumes from it: the state saved
(:func:`training_state`, :func:`write_checkpoint`), the newest readable checkpoint (:func:`newest_state`), the state
restored with the learning-rate schedule following the current config
(:func:`restore_training_state`), and which config changes a resume accepts (one table,
:data:`RESUMABLE_KEYS`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xvit.engine.run.distributed import DistInfo
from xvit.engine.run.rundir import WriteError
from xvit.engine.run.schema import Config, ConfigError, config_to_dict
from xvit.engine.train import checkpoint as ckpt
from xvit.engine.train.nonfinite import NonFiniteLossError
from xvit.engine.train.optim import ModelEma

__all__ = [
    "RESUMABLE_KEYS",
    "check_resume",
    "check_resumed_classes",
    "config_changes",
    "newest_state",
    "restore_training_state",
    "resumable_change",
    "resume_position",
    "resumed_head_changes",
    "training_state",
    "write_checkpoint",
]

# Settings that may differ when a run resumes (docs/training.md, "Failures and recovery"):
# they take effect from the resumed step on and are recorded in config.yaml and log.jsonl.
# Any other change (model, data, batch, seed, optimiser, augmentation, ...) is refused: it
# would change what the checkpoint's state means. All of eval.* may change too.
RESUMABLE_KEYS = frozenset(
    {
        "train.epochs",
        "train.device",
        "train.threads",
        "train.amp",
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "train.eval_every",
        "train.log_every",
        "train.tensorboard",
        "data.workers",
        "model.grad_checkpointing",
        "optim.lr",
        "optim.base_lr",
        "optim.base_batch_size",
        "optim.min_lr",
        "optim.warmup_epochs",
        "optim.clip_grad",
        "optim.ema_decay",
    }
)


def resumable_change(key: str) -> bool:
    """Whether config key ``key`` ("section.name") may change when a run resumes."""
    return key in RESUMABLE_KEYS or key.startswith("eval.")


def config_changes(saved: dict[str, Any], cfg: Config, out: Path) -> dict[str, tuple[Any, Any]]:
    """The settings of ``cfg`` that differ from the checkpoint's (``saved``), as
    ``{key: (old, new)}``; a :class:`ConfigError` naming them when any of them may not change
    on resume (``train.out`` is not compared: the run may have moved)."""
    now = config_to_dict(cfg)
    changed = {
        f"{sec}.{k}": (saved[sec][k], v)
        for sec, values in now.items()
        if isinstance(values, dict)
        for k, v in values.items()
        if isinstance(saved.get(sec), dict) and k in saved[sec] and saved[sec][k] != v
    }
    changed.pop("train.out", None)
    refused = [k for k in changed if not resumable_change(k)]
    if refused:
        raise ConfigError(
            f"cannot resume {out} with changed "
            + ", ".join(f"{k} ({changed[k][0]!r} -> {changed[k][1]!r})" for k in refused)
            + ": these define the run; use --fresh to start over, or another --out"
        )
    return changed


def check_resume(
    state: dict[str, Any],
    path: Path,
    cfg: Config,
    out: Path,
    class_names: list[str] | None = None,
    model: nn.Module | None = None,
) -> tuple[dict[str, tuple[Any, Any]], int, int]:
    """The checks a run makes before it resumes from checkpoint ``state`` (read from ``path``),
    made by the run and by ``--dry-run`` alike: the settings that may not change
    (:func:`config_changes`), the list's classes against the checkpoint's (with ``class_names``
    and ``model``, as built for them) and the epoch against ``train.epochs``. Returns (the
    settings that changed, epoch, micro-batches done in it); a :class:`ConfigError` where the
    run may not resume."""
    changed = config_changes(state.get("config", {}), cfg, out)
    if class_names is not None and model is not None:
        check_resumed_classes(state, class_names, model, out)
    epoch, batch = resume_position(state, cfg.train.epochs, path)
    return changed, epoch, batch


def resume_position(state: dict[str, Any], epochs: int, path: Path) -> tuple[int, int]:
    """``(epoch, micro-batches done in it)`` of checkpoint ``state``; a :class:`ConfigError`
    when it is past ``train.epochs`` (a longer run would be presented as a shorter one)."""
    epoch, batch = int(state["epoch"]), int(state["batch_in_epoch"])
    if epoch > epochs or (epoch == epochs and batch > 0):
        raise ConfigError(
            f"{path} is at epoch {epoch} (step {state['global_step']}), past "
            f"train.epochs={epochs}: give train.epochs >= {epoch + (batch > 0)}, "
            f"or --fresh to start over"
        )
    return epoch, batch


def newest_state(
    ckpt_dir: Path, is_main: bool, say: Callable[[str], None]
) -> tuple[dict[str, Any] | None, Path | None]:
    """The newest readable checkpoint in ``ckpt_dir`` and its path, or ``(None, None)``. An
    unreadable one is set aside by rank 0 (:func:`~xvit.engine.train.checkpoint.quarantine`), so
    that it is neither resumed from nor counted by pruning, and an older one is tried."""
    for path in reversed(ckpt.list_checkpoints(ckpt_dir)):
        try:
            return ckpt.load_checkpoint(path), path
        except RuntimeError as e:
            moved = ckpt.quarantine(path) if is_main and path.exists() else path
            say(f"warning: {e}; moved to {moved.name}, trying an older checkpoint")
    return None, None


def training_state(
    *,
    epoch: int,
    batch_in_epoch: int,
    global_step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    ema: ModelEma | None,
    rngs: list[dict[str, Any]],
    history: list[dict[str, Any]],
    cfg: Config,
) -> dict[str, Any]:
    """Everything a checkpoint holds (loadable with ``torch.load(weights_only=True)``)."""
    return {
        "format": ckpt.FORMAT,
        "version": 1,
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,
        "global_step": global_step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "rng": rngs,
        "history": history,
        "config": config_to_dict(cfg),
        # the network as built (a resumed run computes what it trained: resumed_head_changes)
        "model_config": model.config.to_dict()
        if hasattr(getattr(model, "config", None), "to_dict")
        else None,
        # the label space the head was trained on (a resumed run must read its list the same way)
        "class_names": [str(c) for c in (getattr(getattr(model, "config", None), "class_names", None) or [])],
    }


def check_resumed_classes(state: dict[str, Any], class_names: list[str], model: nn.Module, out: Path) -> None:
    """A :class:`ConfigError` when the run's list now names other classes than the
    checkpoint's head was trained on (an edited list file, another class folder): resuming
    would silently give old outputs new meanings. Checkpoints written before class names
    were saved are compared by the shapes of the model's tensors."""
    saved = state.get("class_names")
    if saved and list(saved) != list(class_names):
        gone = [c for c in saved if c not in class_names]
        new = [c for c in class_names if c not in saved]
        parts = [f"lacks {', '.join(gone[:3])}"] * bool(gone) + [f"adds {', '.join(new[:3])}"] * bool(new)
        raise ConfigError(
            f"cannot resume {out}: its checkpoint was trained on {len(saved)} classes and the list "
            f"now has {len(class_names)} (it {' and '.join(parts) or 'orders them differently'}); "
            f"use --fresh to start over, or another --out"
        )
    target = model.state_dict()
    wrong = [
        k
        for k, v in state.get("model", {}).items()
        if k in target and tuple(target[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise ConfigError(
            f"cannot resume {out}: the checkpoint's {wrong[0]} has shape {tuple(state['model'][wrong[0]].shape)}, "
            f"this run's model {tuple(target[wrong[0]].shape)} (the list has {len(class_names)} classes); "
            f"use --fresh to start over, or another --out"
        )


def resumed_head_changes(state: dict[str, Any], model: nn.Module) -> dict[str, str]:
    """The temporal-attention head fields the checkpoint was trained with, where they differ
    from ``model``'s (this version's defaults): a resumed run computes what it trained.

    ``head_cls`` is ``"token"`` in checkpoints written before the field existed (the head took
    the token alone); ``head_classifier`` comes from the checkpoint's model config, or in
    checkpoints without one from its weights (``head.mlp_head.*``: the MLP). The CLS input
    uses the same tensors either way, so a mismatch there would load silently and compute
    something else; the classifier's tensors differ, so it would not load at all."""
    config = getattr(model, "config", None)
    if getattr(config, "head", None) != "ta":
        return {}
    saved_config = state.get("model_config") or {}
    weights = state.get("model", {})
    saved = {
        "head_cls": saved_config.get("head_cls", "token"),
        "head_classifier": saved_config.get("head_classifier")
        or ("mlp" if any(k.startswith("head.mlp_head.") for k in weights) else "linear"),
    }
    return {k: v for k, v in saved.items() if getattr(config, k) != v}


def write_checkpoint(
    state: dict[str, Any], path: Path, model: nn.Module, last_good: Path | None, keep: int
) -> None:
    """Write ``state`` to ``path`` atomically and prune the older checkpoints to ``keep``.

    Refused (:class:`NonFiniteLossError`) when ``model``'s weights are not finite, so that a
    checkpoint never holds them; a failed write is a :class:`WriteError`. Either way the last
    good checkpoint ``last_good`` is untouched.
    """
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteLossError(
            f"weights became non-finite ({', '.join(bad[:5])}) at step {state['global_step']}; "
            f"not overwriting the last good checkpoint {last_good}"
        )
    try:
        ckpt.atomic_save(state, path)
    except OSError as e:
        raise WriteError(
            f"cannot write checkpoint {path}: {e.strerror or e}; the last good "
            f"checkpoint {last_good or '(none yet)'} is intact"
        ) from e
    ckpt.prune_checkpoints(path.parent, keep, newest=path)


def restore_training_state(
    state: dict[str, Any],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    ema: ModelEma | None,
    lr: float,
    dist_info: DistInfo,
    say: Callable[[str], None],
) -> None:
    """Load a checkpoint's model, optimiser, schedule, grad scaler and EMA state, and this
    rank's RNG states (when the checkpoint was written by as many processes).

    The schedule (warm-up, total steps, peak and minimum lr) follows the current config: the
    step count comes from the checkpoint, the learning rates are recomputed from ``lr``, so a
    changed optim.lr / train.epochs applies from the resumed step on.
    """
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None]})
    groups = optimizer.param_groups
    scheduler.base_lrs = [lr * group.get("lr_scale", 1.0) for group in groups]
    for group, base, factor in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
        group["initial_lr"] = base
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in groups]
    if scaler.is_enabled() and state["scaler"]:  # empty when saved without fp16
        scaler.load_state_dict(state["scaler"])
    if ema is not None and state.get("ema") is not None:
        ema.load_state_dict(state["ema"])
    rngs = state["rng"]
    if len(rngs) == dist_info.world_size:
        ckpt.restore_rng(rngs[dist_info.rank])
    else:
        say(
            f"warning: checkpoint written by {len(rngs)} process(es), resuming with "
            f"{dist_info.world_size}: the data order continues but the run is not bit-identical"
        )
