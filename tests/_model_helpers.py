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


def tiny_segmented_xvit(class_names: list[str]) -> nn.Module:
    """A toy X-ViT in the released K600 layout: 8 frames in two segments of 4 with a tiled
    temporal embedding of 4 (so segment features can be reused), width 32, depth 2, 32x32,
    average head; initialised from the current torch seed."""
    from xvit.models.registry import create_model

    return create_model(
        "xvit_tiny_patch16",
        num_frames=8,
        num_classes=len(class_names),
        class_names=class_names,
        embed_dim=32,
        depth=2,
        num_heads=2,
        img_size=32,
        head="avg",
        segment_len=4,
        temp_embed_frames=4,
        temp_embed_mode="tile",
    )
