"""Looking results of :func:`~xvit.benchmarks.speed.run_benchmark` up by model family."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["find_result", "model_family"]


def model_family(model: str) -> str:
    """``xvit_base_patch16`` -> ``xvit``; peers (``hf_*``) are their own family."""
    m = re.fullmatch(r"(.+)_(tiny|small|base|large)_patch\d+", model)
    return m.group(1) if m else model


def find_result(
    results: Sequence[dict[str, Any]],
    family: str,
    frames: int,
    batch: int = 1,
    dtype: str = "fp32",
    compiled: bool = False,
    img_size: int | None = None,
    runtime: str = "torch",
) -> dict[str, Any] | None:
    """The timed result of a model family (``xvit``, ``vit``, ``hf_timesformer``, ...)."""
    for r in results:
        if (
            model_family(r["model"]) == family
            and r["frames"] == frames
            and r["batch"] == batch
            and r["dtype"] == dtype
            and r["compiled"] == compiled
            and (img_size is None or r["img_size"] == img_size)
            and r.get("runtime", "torch") == runtime
            and r.get("clips_per_s")
        ):
            return r
    return None
