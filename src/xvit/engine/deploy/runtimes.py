"""Inference runtimes behind one small interface: ``run(float32 (B, 3, T, H, W)) -> logits``.

* ``torch``: the eager ``nn.Module`` (any precision the caller set up).
* ``onnxruntime``: an exported ONNX file in ONNX Runtime's CPU execution provider
  (``pip install xvit[onnx]``).
* ``openvino``: the same ONNX file compiled by OpenVINO for the CPU (``pip install xvit[openvino]``).

The optional packages are imported only when their runtime is asked for; a missing one is a
``RuntimeUnavailable`` naming the extra to install. ``RuntimeModule`` wraps any runtime as an
``nn.Module`` so code that calls ``model(x)`` (the scoring loop) runs it unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

__all__ = [
    "RUNTIMES",
    "OnnxRuntime",
    "OpenVINORuntime",
    "Runtime",
    "RuntimeModule",
    "RuntimeUnavailable",
    "TorchRuntime",
    "open_onnx_runtime",
    "require",
]

RUNTIMES = ("torch", "onnxruntime", "openvino")
_EXTRA = {"onnxruntime": "onnx", "openvino": "openvino"}


class RuntimeUnavailable(RuntimeError):
    """An optional runtime whose package is not installed."""


class Runtime(Protocol):
    name: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits ``(B, num_classes)`` float32 of a float32 ``(B, 3, T, H, W)`` batch."""
        ...


def _import(runtime: str, module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise RuntimeUnavailable(
            f"--runtime {runtime} needs the {module} package: pip install 'xvit[{_EXTRA[runtime]}]' ({e})"
        ) from e


def require(runtime: str):
    """The package of the optional runtime ``onnxruntime`` or ``openvino`` (imported now), or
    ``RuntimeUnavailable`` naming the extra to install."""
    if runtime not in _EXTRA:
        raise ValueError(f"unknown optional runtime {runtime!r}; expected one of {', '.join(_EXTRA)}")
    return _import(runtime, runtime)


def _threads() -> int:
    return max(1, torch.get_num_threads())


class TorchRuntime:
    """The eager model (``torch.inference_mode``)."""

    name = "torch"

    def __init__(self, model: nn.Module):
        self.model = model.eval()

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(np.ascontiguousarray(batch, np.float32))).float().numpy()


class OnnxRuntime:
    """An ONNX file in ONNX Runtime (CPU), with torch's intra-op thread count."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None):
        ort = _import("onnxruntime", "onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]
        return np.asarray(out, np.float32)


class OpenVINORuntime:
    """An ONNX file compiled by OpenVINO for the CPU (fp32 inference precision, so the answers
    match eager fp32; OpenVINO would otherwise pick bf16 on CPUs with AMX)."""

    name = "openvino"

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None):
        ov = _import("openvino", "openvino")
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads or _threads(), "INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = core.compile_model(str(path), "CPU", config)

    def run(self, batch: np.ndarray) -> np.ndarray:
        out = self.compiled(np.ascontiguousarray(batch, np.float32))[0]
        return np.asarray(out, np.float32)


def open_onnx_runtime(name: str, path: str | os.PathLike[str], threads: int | None = None) -> Runtime:
    """``onnxruntime`` or ``openvino`` on the ONNX file ``path``."""
    if name == "onnxruntime":
        return OnnxRuntime(path, threads)
    if name == "openvino":
        return OpenVINORuntime(path, threads)
    raise ValueError(f"unknown ONNX runtime {name!r}; expected onnxruntime or openvino")


class RuntimeModule(nn.Module):
    """A runtime as an ``nn.Module``: ``forward(x)`` returns the runtime's logits as a CPU
    float32 tensor (inputs are moved to the CPU first). ``config`` is the source model's."""

    def __init__(self, runtime: Runtime, config: object = None, source: Path | None = None):
        super().__init__()
        self.runtime = runtime
        self.config = config
        self.source = source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.runtime.run(x.detach().float().cpu().numpy()))
