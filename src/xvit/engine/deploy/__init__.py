"""How a trained model runs outside eager PyTorch: ``runtimes`` (torch, ONNX Runtime,
OpenVINO behind one interface), ``export`` (ONNX and .pt2, checked against eager),
``quantize`` / ``quantize_static`` (`xvit quantize`: int8, dynamic in torch or static in ONNX
Runtime, agreement with fp32 measured), ``precision_auto`` (``--precision auto``: the fastest
path that meets the agreement floor, measured and cached per CPU) and ``runtime_targets``
(its rows in `xvit benchmark`).

Imports run; evaluate and infer run models through it."""

from __future__ import annotations

import importlib
from typing import Any

# The public names, imported on first use (PEP 562): importing one module of the package does
# not import the others (nor torch, for those that do without it).
_LAZY = {
    "export_model": "xvit.engine.deploy.export",
    "ExportError": "xvit.engine.deploy.export",
    "runtime_model": "xvit.engine.deploy.export",
    "RUNTIMES": "xvit.engine.deploy.runtimes",
    "quantize_checkpoint": "xvit.engine.deploy.quantize",
    "inference_runner": "xvit.engine.deploy.precision_auto",
    "check_precision": "xvit.engine.deploy.precision_auto",
    "resolve_precision": "xvit.engine.deploy.precision_auto",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
