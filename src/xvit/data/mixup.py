"""Batch transforms: mixup / cutmix with label smoothing on ``(B, 3, T, H, W)`` batches."""

from __future__ import annotations

import math

import numpy as np
import torch

from xvit.data.rng import Generator, randint

__all__ = ["Mixup", "MixupCutmix", "one_hot"]


def one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """Smoothed one-hot targets: ``1 - smoothing + smoothing/K`` on the label, ``smoothing/K`` elsewhere."""
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32)
    return out.scatter_(1, labels.long()[:, None], 1.0 - smoothing + off)


class Mixup:
    """Mixup / CutMix of a batch with its reverse, with label-smoothed soft targets.

    ``__call__(videos (B, 3, T, H, W), labels (B,))`` -> ``(mixed videos, targets (B, K))``.
    Each call mixes with probability ``prob``; when both alphas are > 0 it uses cutmix with
    probability ``switch_prob``, else mixup. Cutmix pastes the same box into every frame and
    corrects lambda to the pasted area. Without mixing the targets are just smoothed.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
    ) -> None:
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("at least one of mixup_alpha and cutmix_alpha must be > 0")
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.label_smoothing = prob, switch_prob, label_smoothing

    def _beta(self, alpha: float, generator: Generator) -> float:
        seed = int(torch.randint(0, 2**62, (), generator=generator))
        return float(np.random.default_rng(seed).beta(alpha, alpha))

    def __call__(
        self, videos: torch.Tensor, labels: torch.Tensor, generator: Generator = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if videos.dim() != 5 or videos.shape[0] != labels.shape[0]:
            raise ValueError(
                f"expected videos (B, 3, T, H, W) and labels (B,), got "
                f"{tuple(videos.shape)} and {tuple(labels.shape)}"
            )
        y1 = one_hot(labels, self.num_classes, self.label_smoothing)
        if float(torch.rand((), generator=generator)) >= self.prob:
            return videos, y1
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or float(torch.rand((), generator=generator)) < self.switch_prob
        )
        lam = self._beta(self.cutmix_alpha if use_cutmix else self.mixup_alpha, generator)
        other = videos.flip(0)
        if use_cutmix:
            h, w = videos.shape[-2:]
            cut = math.sqrt(1.0 - lam)
            ch, cw = int(h * cut), int(w * cut)
            cy, cx = randint(0, h - 1, generator), randint(0, w - 1, generator)
            y0, y1b = max(cy - ch // 2, 0), min(cy + ch // 2, h)
            x0, x1b = max(cx - cw // 2, 0), min(cx + cw // 2, w)
            mixed = videos.clone()
            mixed[..., y0:y1b, x0:x1b] = other[..., y0:y1b, x0:x1b]
            lam = 1.0 - (y1b - y0) * (x1b - x0) / (h * w)
        else:
            mixed = videos * lam + other * (1.0 - lam)
        targets = lam * y1 + (1.0 - lam) * y1.flip(0)
        return mixed, targets

    def __repr__(self) -> str:
        return (
            f"Mixup(num_classes={self.num_classes}, mixup_alpha={self.mixup_alpha}, "
            f"cutmix_alpha={self.cutmix_alpha}, prob={self.prob}, label_smoothing={self.label_smoothing})"
        )


MixupCutmix = Mixup  # the name the engine's configs use
