"""Mixed precision: the ``train.amp`` modes, the autocast dtype each means on a device, and
the autocast context used by training and evaluation alike."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["AMP_MODES", "amp_dtype_for", "autocast"]

# The values of train.amp: auto = bf16 on CUDA when supported (fp16 + grad scaler otherwise),
# off on CPU; none = full precision; bf16 / fp16 force it (fp16 is CUDA only).
AMP_MODES = ("auto", "none", "bf16", "fp16")


def amp_dtype_for(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None: full precision)."""
    if amp == "none":
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError("train.amp=fp16 needs a CUDA device; use bf16 on CPU")
        return torch.float16
    raise ValueError(f"train.amp must be auto, none, bf16 or fp16, got {amp!r}")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed-precision context for ``device`` (a no-op when ``dtype`` is None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
