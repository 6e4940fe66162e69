"""int8 models on disk as a recipe: ``quantization.json`` next to the fp32 weights.

A quantised directory is a ``save_pretrained`` directory (fp32 ``model.safetensors``,
``config.json``) plus ``quantization.json`` (the recipe and the agreement measured when it
was written). ``xvit.models.load_model`` rebuilds the fp32 model and applies the recipe:

* ``{"method": "dynamic", "dtype": "qint8", "modules": ["Linear"], ...}``: dynamic int8
  quantisation of the weights is a deterministic function of the fp32 weights, so the model
  loaded is exactly the one that was measured, and the files stay plain safetensors (no
  pickled quantised modules, which change between torch releases).
* ``{"method": "static", "onnx": "model.int8.onnx", ...}``: the int8 model is the ONNX file
  next to the weights (ONNX Runtime's static quantiser, calibrated on real clips), which only
  ONNX Runtime runs (``--runtime onnxruntime``); the loaded module (``StaticInt8Model``)
  carries the configuration and the file's path, and refuses to run in torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "QUANTIZATION_NAME",
    "SUPPORTED_METHODS",
    "StaticInt8InTorch",
    "StaticInt8Model",
    "apply_quantization",
    "read_quantization",
]

QUANTIZATION_NAME = "quantization.json"
SUPPORTED_METHODS = ("dynamic", "static")


class StaticInt8InTorch(ValueError):
    """A static int8 (ONNX) model called in torch: it runs with ``--runtime onnxruntime``."""


class StaticInt8Model(nn.Module):
    """A static int8 directory as loaded by ``load_model``: ``config``, ``quantization`` (the
    recipe) and ``onnx_path`` (the int8 ONNX file, run by ``--runtime onnxruntime``); ``fp32``
    is the fp32 model it was made from. Calling it raises ``StaticInt8InTorch`` (a
    ``ValueError``), so the int8 model is never silently replaced by the fp32 one."""

    def __init__(self, fp32: nn.Module, recipe: dict[str, Any]):
        super().__init__()
        self.fp32 = fp32
        self.config = fp32.config
        self.quantization = dict(recipe)
        self.onnx_path = Path(recipe["onnx_path"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise StaticInt8InTorch(
            f"{self.onnx_path.parent} is an ONNX int8 model (xvit quantize --method static): "
            "run it with --runtime onnxruntime"
        )


def read_quantization(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The recipe in ``directory/quantization.json``, or None when there is none. For the
    static method the int8 ONNX file must exist; its path is added as ``onnx_path``."""
    from xvit.models.storage import CheckpointError

    path = Path(directory) / QUANTIZATION_NAME
    if not path.is_file():
        return None
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(recipe, dict) or recipe.get("method") not in SUPPORTED_METHODS:
        method = recipe.get("method") if isinstance(recipe, dict) else None
        raise CheckpointError(
            f"{path}: unknown quantisation method {method!r}; this xvit applies {', '.join(SUPPORTED_METHODS)}"
        )
    if recipe["method"] == "static":
        name = recipe.get("onnx")
        if not isinstance(name, str) or Path(name).name != name:
            raise CheckpointError(
                f"{path}: the static method needs the name of its ONNX file in 'onnx', got {name!r}"
            )
        onnx_path = Path(directory) / name
        if not onnx_path.is_file():
            raise CheckpointError(f"{path}: the int8 ONNX file {onnx_path} is missing")
        recipe["onnx_path"] = str(onnx_path)
    return recipe


def apply_quantization(model: nn.Module, recipe: dict[str, Any]) -> nn.Module:
    """``model`` (fp32, CPU) with ``recipe`` applied: dynamic int8 quantisation of every
    ``nn.Linear`` (weights int8 per tensor, activations quantised on the fly), or for the
    static method a ``StaticInt8Model`` pointing at the int8 ONNX file (``recipe`` as
    ``read_quantization`` returns it). The result keeps ``config`` and carries the recipe as
    ``quantization``; it runs on the CPU only."""
    import warnings

    if recipe.get("method") == "static":
        return StaticInt8Model(model.cpu().eval(), recipe)
    if recipe.get("method") != "dynamic":
        raise ValueError(f"unknown quantisation method {recipe.get('method')!r}")
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; its dynamic path still works
        # and measures best here (docs/deploy.md)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.*deprecated", category=UserWarning)
        from torch.ao.quantization import quantize_dynamic

        quantized = quantize_dynamic(model.cpu().eval(), {nn.Linear}, dtype=torch.qint8)
    quantized.quantization = dict(recipe)
    return quantized
