"""Helpers shared by the model tests."""

from __future__ import annotations

import torch
from torch import nn


def randomise(model: nn.Module, seed: int = 0, std: float = 0.2) -> None:
    """Random values in every parameter (zero-initialised embeddings would hide bugs);
    LayerNorm scales stay around 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                noise = torch.randn(p.shape, generator=g) * std
                is_scale = isinstance(module, nn.LayerNorm) and name == "weight"
                p.copy_(noise + 1.0 if is_scale else noise)
