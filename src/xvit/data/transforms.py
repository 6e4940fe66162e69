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
- :class:`Mixup`: mixup / cutmix with label smoothing on batches ``(B, 3, T, H, W)``.

Resizing uses ``torch.nn.functional.interpolate(..., antialias=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

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

Generator = torch.Generator | None


def _uniform(lo: float, hi: float, generator: Generator) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _randint(lo: int, hi: int, generator: Generator) -> int:
    """Uniform integer in ``[lo, hi]`` (inclusive)."""
    return int(torch.randint(lo, hi + 1, (), generator=generator))


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
        return size, max(size, int(round(w * size / h)))
    return max(size, int(round(h * size / w))), size


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
    return clip[..., top:top + size, left:left + size]


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
    return torch.stack([clip[..., t:t + size, l:l + size] for t, l in boxes])


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
    s = _randint(int(scale[0]), int(scale[1]), generator)
    hs, ws = _short_side_size(h, w, s)
    top = _randint(0, hs - crop_size, generator)
    left = _randint(0, ws - crop_size, generator)
    fy, fx = h / hs, w / ws
    y0, y1 = round(top * fy), round((top + crop_size) * fy)
    x0, x1 = round(left * fx), round((left + crop_size) * fx)
    y1, x1 = max(y1, y0 + 1), max(x1, x0 + 1)
    return resize(clip[..., y0:y1, x0:x1], (crop_size, crop_size), interpolation)


# ---------------------------------------------------------------------------------------
# Augmentation ops (torchvision semantics, on float [0, 255] clips)
# ---------------------------------------------------------------------------------------


def _affine(clip: torch.Tensor, matrix: Sequence[float], fill: float) -> torch.Tensor:
    """Nearest-neighbour affine warp; ``matrix`` (a, b, c, d, e, f) maps output pixel
    coordinates (x, y), relative to the frame centre, to input ones:
    ``x_in = a x + b y + c``, ``y_in = d x + e y + f``. Pixels from outside get ``fill``."""
    t, c, h, w = clip.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64) - cy,
                            torch.arange(w, dtype=torch.float64) - cx, indexing="ij")
    a, b, c0, d, e, f = matrix
    x_in = a * xs + b * ys + c0 + cx
    y_in = d * xs + e * ys + f + cy
    grid = torch.stack([2 * x_in / max(w - 1, 1) - 1, 2 * y_in / max(h - 1, 1) - 1], dim=-1)
    grid = grid.to(clip.dtype)[None].expand(t, h, w, 2)
    out = F.grid_sample(clip - fill, grid, mode="nearest", padding_mode="zeros", align_corners=True)
    return out + fill


def _gray(clip: torch.Tensor) -> torch.Tensor:
    r, g, b = clip.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _blend(img: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    return (other + factor * (img - other)).clamp(0, 255)


def _to_uint8(clip: torch.Tensor) -> torch.Tensor:
    return clip.round().clamp(0, 255).to(torch.uint8)


def _sharpness(clip: torch.Tensor, factor: float) -> torch.Tensor:
    t, c, h, w = clip.shape
    if h <= 2 or w <= 2:
        return clip
    kernel = torch.ones(3, 3, dtype=clip.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
    smooth = F.conv2d(clip, kernel, groups=c)
    degenerate = clip.clone()
    degenerate[..., 1:-1, 1:-1] = smooth
    return _blend(clip, degenerate, factor)


def _autocontrast(clip: torch.Tensor) -> torch.Tensor:
    lo = clip.amin(dim=(-2, -1), keepdim=True)
    hi = clip.amax(dim=(-2, -1), keepdim=True)
    flat = hi <= lo
    scale = torch.where(flat, torch.ones_like(hi), 255.0 / (hi - lo).clamp(min=1e-6))
    lo = torch.where(flat, torch.zeros_like(lo), lo)
    return ((clip - lo) * scale).clamp(0, 255)


def _equalize(clip: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per frame and channel (PIL / torchvision algorithm)."""
    x = _to_uint8(clip)
    t, c, h, w = x.shape
    flat = x.reshape(t * c, h * w).long()
    hist = torch.zeros(t * c, 256, dtype=torch.int64).scatter_add_(1, flat, torch.ones_like(flat))
    top = flat.max(dim=1).values
    count_top = hist.gather(1, top[:, None]).squeeze(1)
    step = (h * w - count_top) // 255
    lut = (hist.cumsum(1) + (step // 2)[:, None]) // step.clamp(min=1)[:, None]
    lut = F.pad(lut, (1, 0))[:, :-1].clamp(0, 255)
    out = lut.gather(1, flat)
    out = torch.where((step == 0)[:, None], flat, out)
    return out.reshape(t, c, h, w).to(clip.dtype)


def apply_op(clip: torch.Tensor, name: str, magnitude: float, fill: float = 0.0) -> torch.Tensor:
    """Apply one augmentation op (torchvision's semantics) to a float ``[0, 255]`` clip."""
    if name == "Identity":
        return clip
    if name == "ShearX":
        return _affine(clip, (1, magnitude, 0, 0, 1, 0), fill)
    if name == "ShearY":
        return _affine(clip, (1, 0, 0, magnitude, 1, 0), fill)
    if name == "TranslateX":
        return _affine(clip, (1, 0, -int(magnitude), 0, 1, 0), fill)
    if name == "TranslateY":
        return _affine(clip, (1, 0, 0, 0, 1, -int(magnitude)), fill)
    if name == "Rotate":
        # Counter-clockwise by `magnitude` degrees, about the centre (y points down).
        a = math.radians(magnitude)
        cos, sin = math.cos(a), math.sin(a)
        return _affine(clip, (cos, -sin, 0, sin, cos, 0), fill)
    if name == "Brightness":
        return (clip * (1.0 + magnitude)).clamp(0, 255)
    if name == "Color":
        return _blend(clip, _gray(clip), 1.0 + magnitude)
    if name == "Contrast":
        mean = _gray(clip).mean(dim=(-3, -2, -1), keepdim=True)
        return _blend(clip, mean, 1.0 + magnitude)
    if name == "Sharpness":
        return _sharpness(clip, 1.0 + magnitude)
    if name == "Posterize":
        bits = int(magnitude)
        mask = (0xFF << (8 - bits)) & 0xFF
        return (_to_uint8(clip) & mask).to(clip.dtype)
    if name == "Solarize":
        return torch.where(clip >= magnitude, 255.0 - clip, clip)
    if name == "AutoContrast":
        return _autocontrast(clip)
    if name == "Equalize":
        return _equalize(clip)
    if name == "Invert":
        return 255.0 - clip
    raise ValueError(f"unknown augmentation op {name!r}")


def _magnitudes(num_bins: int, height: int, width: int) -> dict[str, tuple[torch.Tensor | None, bool]]:
    """Per-op magnitude tables and whether the sign is random (as in torchvision)."""
    lin = lambda hi: torch.linspace(0.0, hi, num_bins)  # noqa: E731
    return {
        "Identity": (None, False),
        "ShearX": (lin(0.3), True),
        "ShearY": (lin(0.3), True),
        "TranslateX": (lin(150.0 / 331.0 * width), True),
        "TranslateY": (lin(150.0 / 331.0 * height), True),
        "Rotate": (lin(30.0), True),
        "Brightness": (lin(0.9), True),
        "Color": (lin(0.9), True),
        "Contrast": (lin(0.9), True),
        "Sharpness": (lin(0.9), True),
        "Posterize": (8 - (torch.arange(num_bins) / ((num_bins - 1) / 4)).round().int(), False),
        "Solarize": (torch.linspace(255.0, 0.0, num_bins), False),
        "AutoContrast": (None, False),
        "Equalize": (None, False),
        "Invert": (None, False),
    }


def _signed(table: tuple[torch.Tensor | None, bool], index: int, generator: Generator) -> float:
    values, signed = table
    if values is None:
        return 0.0
    m = float(values[index])
    if signed and float(torch.rand((), generator=generator)) < 0.5:
        m = -m
    return m


class RandAugment:
    """RandAugment (Cubuk et al. 2020; torchvision's op set and magnitudes) on whole clips."""

    OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
           "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")

    def __init__(self, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31,
                 fill: float = 0.0) -> None:
        if not 0 <= magnitude < num_magnitude_bins:
            raise ValueError(f"magnitude must be in [0, {num_magnitude_bins}), got {magnitude}")
        self.num_ops, self.magnitude, self.num_bins, self.fill = num_ops, magnitude, num_magnitude_bins, fill

    def __call__(self, clip: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        table = _magnitudes(self.num_bins, clip.shape[-2], clip.shape[-1])
        for _ in range(self.num_ops):
            name = self.OPS[_randint(0, len(self.OPS) - 1, generator)]
            clip = apply_op(clip, name, _signed(table[name], self.magnitude, generator), self.fill)
        return clip

    def __repr__(self) -> str:
        return f"RandAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, bins={self.num_bins})"


# The ImageNet policy of AutoAugment (Cubuk et al. 2019), as in torchvision:
# 25 sub-policies of two (op, probability, magnitude bin of 10) each.
IMAGENET_POLICY = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
)


class AutoAugment:
    """AutoAugment with the ImageNet policy on whole clips: one random sub-policy per clip."""

    def __init__(self, policy: str = "imagenet", fill: float = 0.0) -> None:
        if policy != "imagenet":
            raise ValueError(f"only the 'imagenet' AutoAugment policy is provided, got {policy!r}")
        self.policy, self.fill = IMAGENET_POLICY, fill

    def __call__(self, clip: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        table = _magnitudes(10, clip.shape[-2], clip.shape[-1])
        sub = self.policy[_randint(0, len(self.policy) - 1, generator)]
        for name, prob, bin_ in sub:
            apply = float(torch.rand((), generator=generator)) < prob
            sign_draw = _signed(table[name], bin_ or 0, generator)
            if apply:
                clip = apply_op(clip, name, sign_draw, self.fill)
        return clip

    def __repr__(self) -> str:
        return "AutoAugment(policy='imagenet')"


def build_augment(spec: str | None, fill: float = 0.0) -> RandAugment | AutoAugment | None:
    """``None``/``"none"``, ``"autoaugment"`` (``"auto"``), ``"randaugment"`` or ``"rand-m9-n2"`` style."""
    if spec in (None, "", "none"):
        return None
    if spec in ("autoaugment", "autoaug", "auto", "aa"):
        return AutoAugment(fill=fill)
    if spec in ("randaugment", "randaug", "ra"):
        return RandAugment(fill=fill)
    if spec.startswith("rand-"):
        kwargs = {"magnitude": 9, "num_ops": 2}
        for part in spec.split("-")[1:]:
            if part[:1] == "m" and part[1:].isdigit():
                kwargs["magnitude"] = int(part[1:])
            elif part[:1] == "n" and part[1:].isdigit():
                kwargs["num_ops"] = int(part[1:])
            else:
                raise ValueError(f"bad RandAugment spec {spec!r} (expected e.g. 'rand-m9-n2')")
        return RandAugment(fill=fill, **kwargs)
    raise ValueError(f"unknown augmentation {spec!r}; expected none, autoaugment, randaugment or rand-mM-nN")


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

    def __init__(self, prob: float = 0.25, scale: tuple[float, float] = (0.02, 1 / 3),
                 ratio: tuple[float, float] = (0.3, 3.3), mode: str = "pixel") -> None:
        if mode not in ("pixel", "const"):
            raise ValueError(f"mode must be 'pixel' or 'const', got {mode!r}")
        self.prob, self.scale, self.ratio, self.mode = prob, scale, ratio, mode

    def __call__(self, clip: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        if float(torch.rand((), generator=generator)) >= self.prob:
            return clip
        c, t, h, w = clip.shape
        for _ in range(10):
            area = _uniform(*self.scale, generator) * h * w
            aspect = math.exp(_uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), generator))
            eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if 0 < eh < h and 0 < ew < w:
                top, left = _randint(0, h - eh, generator), _randint(0, w - ew, generator)
                if self.mode == "pixel":
                    fill = torch.randn((c, 1, eh, ew), generator=generator, dtype=clip.dtype)
                else:
                    fill = torch.zeros((c, 1, eh, ew), dtype=clip.dtype)
                clip = clip.clone()
                clip[:, :, top:top + eh, left:left + ew] = fill
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
        return (f"TrainTransform(crop_size={self.crop_size}, scale={self.scale}, flip={self.flip}, "
                f"augment={self.augment}, erasing={self.erasing is not None}, mean={self.mean}, std={self.std})")


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
        return (f"EvalTransform(crop_size={self.crop_size}, resize={self.resize}, "
                f"num_crops={self.num_crops}, mean={self.mean}, std={self.std})")


# ---------------------------------------------------------------------------------------
# Batch transforms: mixup / cutmix with label smoothing
# ---------------------------------------------------------------------------------------


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

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 0.0,
                 prob: float = 1.0, switch_prob: float = 0.5, label_smoothing: float = 0.1) -> None:
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("at least one of mixup_alpha and cutmix_alpha must be > 0")
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.label_smoothing = prob, switch_prob, label_smoothing

    def _beta(self, alpha: float, generator: Generator) -> float:
        seed = int(torch.randint(0, 2**62, (), generator=generator))
        return float(np.random.default_rng(seed).beta(alpha, alpha))

    def __call__(self, videos: torch.Tensor, labels: torch.Tensor,
                 generator: Generator = None) -> tuple[torch.Tensor, torch.Tensor]:
        if videos.dim() != 5 or videos.shape[0] != labels.shape[0]:
            raise ValueError(f"expected videos (B, 3, T, H, W) and labels (B,), got "
                             f"{tuple(videos.shape)} and {tuple(labels.shape)}")
        y1 = one_hot(labels, self.num_classes, self.label_smoothing)
        if float(torch.rand((), generator=generator)) >= self.prob:
            return videos, y1
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or float(torch.rand((), generator=generator)) < self.switch_prob)
        lam = self._beta(self.cutmix_alpha if use_cutmix else self.mixup_alpha, generator)
        other = videos.flip(0)
        if use_cutmix:
            h, w = videos.shape[-2:]
            cut = math.sqrt(1.0 - lam)
            ch, cw = int(h * cut), int(w * cut)
            cy, cx = _randint(0, h - 1, generator), _randint(0, w - 1, generator)
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
        return (f"Mixup(num_classes={self.num_classes}, mixup_alpha={self.mixup_alpha}, "
                f"cutmix_alpha={self.cutmix_alpha}, prob={self.prob}, label_smoothing={self.label_smoothing})")


MixupCutmix = Mixup  # the name the engine's configs use
