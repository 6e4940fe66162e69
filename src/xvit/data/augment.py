"""Augmentation ops with torchvision's semantics on float ``[0, 255]`` clips, and the two
policies built from them: :class:`RandAugment` and :class:`AutoAugment` (ImageNet policy).

Each op and magnitude is drawn once per clip, so every frame gets the same augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from xvit.data.rng import Generator, randint

__all__ = ["IMAGENET_POLICY", "AutoAugment", "RandAugment", "apply_op", "build_augment"]


def _affine(clip: torch.Tensor, matrix: Sequence[float], fill: float) -> torch.Tensor:
    """Nearest-neighbour affine warp; ``matrix`` (a, b, c, d, e, f) maps output pixel
    coordinates (x, y), relative to the frame centre, to input ones:
    ``x_in = a x + b y + c``, ``y_in = d x + e y + f``. Pixels from outside get ``fill``."""
    t, _, h, w = clip.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) - cy, torch.arange(w, dtype=torch.float64) - cx, indexing="ij"
    )
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
    _, c, h, w = clip.shape
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

    OPS = (
        "Identity",
        "ShearX",
        "ShearY",
        "TranslateX",
        "TranslateY",
        "Rotate",
        "Brightness",
        "Color",
        "Contrast",
        "Sharpness",
        "Posterize",
        "Solarize",
        "AutoContrast",
        "Equalize",
    )

    def __init__(
        self, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31, fill: float = 0.0
    ) -> None:
        if not 0 <= magnitude < num_magnitude_bins:
            raise ValueError(f"magnitude must be in [0, {num_magnitude_bins}), got {magnitude}")
        self.num_ops, self.magnitude, self.num_bins, self.fill = num_ops, magnitude, num_magnitude_bins, fill

    def __call__(self, clip: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        table = _magnitudes(self.num_bins, clip.shape[-2], clip.shape[-1])
        for _ in range(self.num_ops):
            name = self.OPS[randint(0, len(self.OPS) - 1, generator)]
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
        sub = self.policy[randint(0, len(self.policy) - 1, generator)]
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
