"""The model library: one video-ViT backbone with every attention variant, temporal heads,
named model definitions, FLOP and parameter counting, and weights on disk."""

from __future__ import annotations

import os
from typing import Any

from xvit.models.flops import count_flops, count_params
from xvit.models.registry import create_model, list_models, model_config, register_model
from xvit.models.video_vit import VideoViT, VideoViTConfig


def load_model(path: str | os.PathLike[str], **kwargs: Any) -> VideoViT:
    """Rebuild a model saved with `save_pretrained` (see `xvit.models.hub.load_model`)."""
    from xvit.models.hub import load_model as _load  # lazily: hub.py imports video_vit

    return _load(path, **kwargs)


__all__ = [
    "VideoViT",
    "VideoViTConfig",
    "count_flops",
    "count_params",
    "create_model",
    "list_models",
    "load_model",
    "model_config",
    "register_model",
]
