"""Running a model in a dtype mode: the model as cast, its input dtype, and one timed call.

``fp32`` keeps everything in float32; ``bf16-model`` casts weights and input to bfloat16;
``bf16-autocast`` keeps fp32 weights and runs the forward under ``torch.autocast`` (bfloat16);
``int8`` is the model with dynamic int8 quantisation of every ``nn.Linear``
(:func:`xvit.models.quantization.apply_quantization`, the recipe ``xvit quantize`` writes; CPU only).
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
from xvit.models.quantization import apply_quantization

__all__ = [
    "DTYPE_MODES",
    "INT8_RECIPE",
    "RUN_MODES",
    "input_dtype",
    "make_call",
    "precision_of",
    "prepare_model",
    "time_once",
]

#: The dtype modes a benchmark accepts; ``bf16`` times both bf16 modes and keeps the faster.
DTYPE_MODES = ("fp32", "bf16", "bf16-model", "bf16-autocast", "int8")
#: The modes a model actually runs in.
RUN_MODES = ("fp32", "bf16-model", "bf16-autocast", "int8")
#: The recipe of ``xvit quantize --method dynamic``.
INT8_RECIPE = {"method": "dynamic", "dtype": "qint8", "modules": ["Linear"]}


def precision_of(dtype_mode: str) -> str:
    """The precision a dtype mode runs in: ``fp32``, ``bf16`` or ``int8``."""
    return "bf16" if dtype_mode.startswith("bf16") else dtype_mode


def prepare_model(model: nn.Module, dtype_mode: str, device: torch.device) -> nn.Module:
    """The model as run in ``dtype_mode``: fp32 or autocast keep it, bf16-model casts a copy,
    int8 quantises a copy (CPU only: ``ValueError`` on another device)."""
    if dtype_mode not in RUN_MODES:
        raise ValueError(f"dtype mode must be one of {', '.join(RUN_MODES)}, got {dtype_mode!r}")
    if dtype_mode == "int8":
        if device.type != "cpu":
            raise ValueError(f"int8 (dynamic quantisation) runs on the CPU only, not {device.type}")
        return apply_quantization(model, INT8_RECIPE)  # quantises a copy
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
