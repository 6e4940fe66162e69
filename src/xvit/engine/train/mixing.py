"""Training targets and their loss: batch mixing (the data pipeline's mixup / cutmix for one
label per clip, :class:`MultiHotMixup` for multi-hot targets) and :func:`training_loss`
(cross-entropy, or one sigmoid per class for multi-label data, with label smoothing)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xvit.data.mixup import Mixup
from xvit.engine.run.schema import Config

__all__ = ["MultiHotMixup", "build_mixer", "training_loss"]


class MultiHotMixup:
    """Mixup / CutMix for multi-hot targets ``(B, C)``: the data pipeline's :class:`Mixup`
    mixes the clips, and each mixed clip's target is the same blend of the multi-hot targets
    of the clips it was made from (label smoothing is applied by the loss)."""

    def __init__(self, mixup_alpha: float, cutmix_alpha: float) -> None:
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha

    def __call__(self, videos: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if targets.ndim != 2 or targets.shape[0] != videos.shape[0]:
            raise ValueError(
                f"expected multi-hot targets (B, C) for {videos.shape[0]} clips, got {tuple(targets.shape)}"
            )
        b = videos.shape[0]
        # With the clips as their own classes, Mixup's targets are the (B, B) mixing weights.
        mix = Mixup(b, mixup_alpha=self.mixup_alpha, cutmix_alpha=self.cutmix_alpha, label_smoothing=0.0)
        mixed, weights = mix(videos, torch.arange(b))
        return mixed, weights @ targets.float()

    def __repr__(self) -> str:
        return f"MultiHotMixup(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha})"


def build_mixer(cfg: Config, num_classes: int):
    """The data pipeline's batch mixup/cutmix (soft, label-smoothed targets; with
    ``data.multi_label`` a :class:`MultiHotMixup`), or None when both are off."""
    ocfg = cfg.optim
    if not (ocfg.mixup or ocfg.cutmix):
        return None
    if cfg.data.multi_label:
        return MultiHotMixup(ocfg.mixup, ocfg.cutmix)
    return Mixup(
        num_classes, mixup_alpha=ocfg.mixup, cutmix_alpha=ocfg.cutmix, label_smoothing=ocfg.label_smoothing
    )


def training_loss(
    logits: torch.Tensor, target: torch.Tensor, multi_label: bool, label_smoothing: float, mixed: bool
) -> torch.Tensor:
    """The loss of a batch, in float32: binary cross-entropy per class for multi-hot targets
    (smoothed towards 1/2), else cross-entropy (``mixed``: the targets are soft and already
    carry the smoothing)."""
    if multi_label:
        eps = label_smoothing
        return F.binary_cross_entropy_with_logits(logits.float(), target * (1 - eps) + eps / 2)
    return F.cross_entropy(logits.float(), target, label_smoothing=0.0 if mixed else label_smoothing)
