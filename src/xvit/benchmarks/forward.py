"""Running a model in a dtype mode: the model as cast, its input dtype, and one timed call.

``fp32`` keeps everything in float32; ``bf16-model`` casts weights and input to bfloat16;
``bf16-autocast`` keeps fp32 weights and runs the forward under ``torch.autocast`` (bfloat16).
The speed run (:mod:`xvit.benchmarks.speed`), the memory subprocess
(:mod:`xvit.benchmarks.memory`) and the profiling script all call models through these.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from xvit.benchmarks.machine import sync

__all__ = ["DTYPE_MODES", "RUN_MODES", "input_dtype", "make_call", "prepare_model", "time_once"]

#: The dtype modes a benchmark accepts; ``bf16`` times both bf16 modes and keeps the faster.
DTYPE_MODES = ("fp32", "bf16", "bf16-model", "bf16-autocast")
#: The modes a model actually runs in.
RUN_MODES = ("fp32", "bf16-model", "bf16-autocast")


def prepare_model(model: nn.Module, dtype_mode: str, device: torch.device) -> nn.Module:
    """The model as run in ``dtype_mode``: fp32 or autocast keep it, bf16-model casts it."""
    if dtype_mode not in RUN_MODES:
        raise ValueError(f"dtype mode must be fp32, bf16-model or bf16-autocast, got {dtype_mode!r}")
    model = model.to(device)
    if dtype_mode == "bf16-model":
        return copy.deepcopy(model).to(torch.bfloat16)
    return model


def input_dtype(dtype_mode: str) -> torch.dtype:
    """The dtype of the clip fed to a model run in ``dtype_mode``."""
    return torch.bfloat16 if dtype_mode == "bf16-model" else torch.float32


def make_call(model: nn.Module, x: torch.Tensor, dtype_mode: str, device: torch.device) -> Callable[[], Any]:
    """A no-argument forward of ``model`` on ``x`` in inference mode (under bfloat16 autocast
    for ``bf16-autocast``) that waits for the device before returning."""
    autocast = dtype_mode == "bf16-autocast"

    def call() -> Any:
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=autocast):
            out = model(x)
        sync(device)
        return out

    return call


def time_once(fn: Callable[[], Any], inner: int = 1) -> float:
    """Seconds per call of ``fn``, averaged over ``inner`` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner
