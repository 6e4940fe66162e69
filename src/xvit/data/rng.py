"""Random draws of the clip transforms, from an optional ``torch.Generator`` (the global RNG
when ``None``), so that a seeded generator makes every transform reproducible."""

from __future__ import annotations

import torch

__all__ = ["Generator", "randint", "uniform"]

Generator = torch.Generator | None


def uniform(lo: float, hi: float, generator: Generator) -> float:
    """Uniform float in ``[lo, hi)``."""
    return lo + (hi - lo) * float(torch.rand((), generator=generator, dtype=torch.float64))


def randint(lo: int, hi: int, generator: Generator) -> int:
    """Uniform integer in ``[lo, hi]`` (inclusive)."""
    return int(torch.randint(lo, hi + 1, (), generator=generator))
