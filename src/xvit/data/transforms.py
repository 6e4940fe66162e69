"""Clip transforms on uint8 ``(T, 3, H, W)`` clips, written with torch ops.

Every random choice is drawn once per clip, so all frames of a clip get identical
parameters (same crop, same flip, same augmentation ops and magnitudes). Randomness comes
from an optional ``torch.Generator`` (the global RNG when ``None``).

Internally the pixel values are float32 in ``[0, 255]``; the final normalisation divides by
255 and applies ``(x - mean) / std`` per channel and returns ``(3, T, H, W)``.

- :class:`TrainTransform`: short-side scale jitter + random crop, horizontal flip,
  RandAugment / AutoAugment (ImageNet policy), normalisation, random erasing.
- :class:`EvalTransform`: resize the short side, ``1`` (centre) or ``3`` spatial crops
  (left/centre/right, or top/middle/bottom for portrait frames), normalisation.
- :class:`Mixup`: mixup / cutmix with label smoothing on batches ``(B, 3, T, H, W)``
  (:mod:`xvit.data.mixup`, re-exported here).

The augmentation ops and policies are :mod:`xvit.data.augment` (re-exported here).

Resizing uses ``torch.nn.functional.interpolate(..., antialias=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from xvit.data.augment import AutoAugment, RandAugment, apply_op, build_augment
from xvit.data.mixup import Mixup, MixupCutmix, one_hot
from xvit.data.rng import Generator, randint, uniform

__all__ = [
    "AutoAugment",
    "EvalTransform",
    "Mixup",
    "MixupCutmix",
    "RandAugment",
    "RandomErasing",
    "TrainTransform",
    "apply_op",
    "center_crop",
    "hflip",
    "normalize",
    "one_hot",
    "resize",
    "resize_short_side",
    "spatial_crops",
]


def _check_clip(clip: torch.Tensor) -> None:
    if clip.dim() != 4 or clip.shape[1] != 3:
        raise ValueError(f"expected a clip of shape (T, 3, H, W), got {tuple(clip.shape)}")


# ---------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------


def resize(clip: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> torch.Tensor:
    """Antialiased resize of ``(T, 3, H, W)`` to ``size = (h, w)``; returns float32 in [0, 255]."""
    x = clip.float()
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    x = F.interpolate(x, size=size, mode=interpolation, align_corners=False, antialias=True)
    return x.clamp_(0, 255)


def _short_side_size(h: int, w: int, size: int) -> tuple[int, int]:
    if h <= w:
        return size, max(size, round(w * size / h))
    return max(size, round(h * size / w)), size


def resize_short_side(clip: torch.Tensor, size: int, interpolation: str = "bilinear") -> torch.Tensor:
    """Resize so that the short side is ``size`` (aspect kept); float32 in [0, 255]."""
    _check_clip(clip)
    return resize(clip, _short_side_size(clip.shape[-2], clip.shape[-1], size), interpolation)


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Central ``size x size`` crop (offsets rounded up, as PySlowFast does)."""
    h, w = clip.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from frames of {h}x{w}")
    top, left = math.ceil((h - size) / 2), math.ceil((w - size) / 2)
    return clip[..., top : top + size, left : left + size]


def spatial_crops(clip: torch.Tensor, size: int, num_crops: int = 1) -> torch.Tensor:
    """``num_crops`` crops of ``size x size`` -> ``(s, T, 3, size, size)``.

    1: the centre crop. 3: along the long side, first / centre / last, i.e. left, centre,
    right for landscape (and square) frames, top, middle, bottom for portrait ones.
    """
    if num_crops == 1:
        return center_crop(clip, size)[None]
    if num_crops != 3:
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    h, w = clip.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from frames of {h}x{w}")
    top, left = math.ceil((h - size) / 2), math.ceil((w - size) / 2)
    if h > w:
        boxes = [(0, left), (top, left), (h - size, left)]
    else:
        boxes = [(top, 0), (top, left), (top, w - size)]
    return torch.stack([clip[..., y : y + size, x : x + size] for y, x in boxes])


def hflip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror every frame left-right."""
    return clip.flip(-1)


def random_scale_crop(
    clip: torch.Tensor,
    crop_size: int,
    scale: tuple[int, int],
    generator: Generator = None,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """Short-side scale jitter to ``s ~ U[scale]`` then a random ``crop_size`` square crop.

    Computed the cheap way: the crop box is mapped back to the source frame, cropped there
    and only that box is resized (the same geometry up to sub-pixel rounding).
    """
    _check_clip(clip)
    h, w = clip.shape[-2:]
    s = randint(int(scale[0]), int(scale[1]), generator)
    hs, ws = _short_side_size(h, w, s)
    top = randint(0, hs - crop_size, generator)
    left = randint(0, ws - crop_size, generator)
    fy, fx = h / hs, w / ws
    y0, y1 = round(top * fy), round((top + crop_size) * fy)
    x0, x1 = round(left * fx), round((left + crop_size) * fx)
    y1, x1 = max(y1, y0 + 1), max(x1, x0 + 1)
    return resize(clip[..., y0:y1, x0:x1], (crop_size, crop_size), interpolation)


# ---------------------------------------------------------------------------------------
# Normalisation and random erasing
# ---------------------------------------------------------------------------------------


def normalize(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """float ``[0, 255]`` ``(..., T, 3, H, W)`` -> ``(..., 3, T, H, W)`` with ``(x/255 - mean) / std``."""
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1) * 255.0
    return ((clip.float() - m) / s).transpose(-4, -3).contiguous()


class RandomErasing:
    """Erase one random rectangle (the same for every frame) of a normalised ``(3, T, H, W)`` clip.

    As timm's RandomErasing: area fraction in ``scale``, aspect ratio log-uniform in
    ``ratio``; ``mode="pixel"`` fills with standard-normal noise, ``"const"`` with zeros.
    """

    def __init__(
        self,
        prob: float = 0.25,
        scale: tuple[float, float] = (0.02, 1 / 3),
        ratio: tuple[float, float] = (0.3, 3.3),
        mode: str = "pixel",
    ) -> None:
        if mode not in ("pixel", "const"):
            raise ValueError(f"mode must be 'pixel' or 'const', got {mode!r}")
        self.prob, self.scale, self.ratio, self.mode = prob, scale, ratio, mode

    def __call__(self, clip: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        if float(torch.rand((), generator=generator)) >= self.prob:
            return clip
        c, _, h, w = clip.shape
        for _ in range(10):
            area = uniform(*self.scale, generator) * h * w
            aspect = math.exp(uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), generator))
            eh, ew = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < eh < h and 0 < ew < w:
                top, left = randint(0, h - eh, generator), randint(0, w - ew, generator)
                if self.mode == "pixel":
                    fill = torch.randn((c, 1, eh, ew), generator=generator, dtype=clip.dtype)
                else:
                    fill = torch.zeros((c, 1, eh, ew), dtype=clip.dtype)
                clip = clip.clone()
                clip[:, :, top : top + eh, left : left + ew] = fill
                break
        return clip


# ---------------------------------------------------------------------------------------
# Train / eval pipelines
# ---------------------------------------------------------------------------------------


class TrainTransform:
    """uint8 ``(T, 3, H, W)`` -> float ``(3, T, crop, crop)`` with random augmentation.

    Steps: short-side scale jitter to ``scale`` (default ``crop * [256, 320] / 224``) and a
    random square crop; horizontal flip with probability 0.5 (``flip=False`` for datasets
    whose labels depend on left/right, e.g. SSv2 and the synthetic dataset); optional
    ``augment`` (``"autoaugment"``, ``"randaugment"``, ``"rand-m9-n2"``); normalisation;
    random erasing with probability ``erase_prob``.
    """

    def __init__(
        self,
        crop_size: int = 224,
        scale: tuple[int, int] | None = None,
        flip: bool = True,
        augment: str | None = None,
        erase_prob: float = 0.0,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        interpolation: str = "bilinear",
    ) -> None:
        if scale is None:
            scale = (round(crop_size * 256 / 224), round(crop_size * 320 / 224))
        if not crop_size <= scale[0] <= scale[1]:
            raise ValueError(f"scale {scale} must satisfy crop_size ({crop_size}) <= low <= high")
        self.crop_size, self.scale, self.flip = crop_size, tuple(scale), flip
        self.augment = build_augment(augment, fill=0.0)
        self.erasing = RandomErasing(erase_prob) if erase_prob > 0 else None
        self.mean, self.std, self.interpolation = tuple(mean), tuple(std), interpolation

    def __call__(self, clip: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        x = random_scale_crop(clip, self.crop_size, self.scale, generator, self.interpolation)
        if self.flip and float(torch.rand((), generator=generator)) < 0.5:
            x = hflip(x)
        if self.augment is not None:
            x = self.augment(x, generator)
        x = normalize(x, self.mean, self.std)
        if self.erasing is not None:
            x = self.erasing(x, generator)
        return x

    def __repr__(self) -> str:
        return (
            f"TrainTransform(crop_size={self.crop_size}, scale={self.scale}, flip={self.flip}, "
            f"augment={self.augment}, erasing={self.erasing is not None}, mean={self.mean}, std={self.std})"
        )


class EvalTransform:
    """uint8 ``(T, 3, H, W)`` -> float ``(s, 3, T, crop, crop)``: short side to ``resize``
    (default ``crop_size``) then ``num_crops`` spatial crops (see :func:`spatial_crops`).

    It treats every frame independently, so it can be applied to all frames of all
    temporal views at once.
    """

    def __init__(
        self,
        crop_size: int = 224,
        resize: int | None = None,
        num_crops: int = 1,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        interpolation: str = "bilinear",
    ) -> None:
        self.crop_size, self.resize = crop_size, resize or crop_size
        if self.resize < crop_size:
            raise ValueError(f"resize ({self.resize}) must be >= crop_size ({crop_size})")
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
        self.num_crops = num_crops
        self.mean, self.std, self.interpolation = tuple(mean), tuple(std), interpolation

    def __call__(self, clip: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        x = resize_short_side(clip, self.resize, self.interpolation)
        return normalize(spatial_crops(x, self.crop_size, self.num_crops), self.mean, self.std)

    def __repr__(self) -> str:
        return (
            f"EvalTransform(crop_size={self.crop_size}, resize={self.resize}, "
            f"num_crops={self.num_crops}, mean={self.mean}, std={self.std})"
        )
