"""int8 models on disk as a recipe: ``quantization.json`` next to the fp32 weights.

A quantised directory is a ``save_pretrained`` directory (fp32 ``model.safetensors``,
``config.json``) plus ``quantization.json`` (``{"method": "dynamic", "dtype": "qint8",
"modules": ["Linear"], ...}`` and the agreement measured when it was written).
``xvit.models.load_model`` rebuilds the fp32 model and applies the recipe: dynamic int8
quantisation of the weights is a deterministic function of the fp32 weights, so the model
loaded is exactly the one that was measured, and the files stay plain safetensors (no
pickled quantised modules, which change between torch releases).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["QUANTIZATION_NAME", "SUPPORTED_METHODS", "apply_quantization", "read_quantization"]

QUANTIZATION_NAME = "quantization.json"
SUPPORTED_METHODS = ("dynamic",)


def read_quantization(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The recipe in ``directory/quantization.json``, or None when there is none."""
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
    return recipe


def apply_quantization(model: nn.Module, recipe: dict[str, Any]) -> nn.Module:
    """``model`` (fp32, CPU) with ``recipe`` applied: dynamic int8 quantisation of every
    ``nn.Linear`` (weights int8 per tensor, activations quantised on the fly). The result
    keeps ``config`` and carries the recipe as ``quantization``; it runs on the CPU only."""
    import warnings

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
