"""The model library: one video-ViT backbone with every attention variant, temporal heads,
named model definitions, FLOP and parameter counting, and weights on disk."""

from __future__ import annotations

import importlib
from typing import Any

# The public names, imported on first use (PEP 562): importing one submodule does not
# import the others (nor torch, for the ones that do without it).
_LAZY = {
    "VideoViT": "xvit.models.video_vit",
    "VideoViTConfig": "xvit.models.video_vit",
    "attention_kernel": "xvit.models.attention",
    "get_attention_kernel": "xvit.models.attention",
    "set_attention_kernel": "xvit.models.attention",
    "count_flops": "xvit.models.flops",
    "count_params": "xvit.models.flops",
    "load_model": "xvit.models.hub",
    "create_model": "xvit.models.registry",
    "list_models": "xvit.models.registry",
    "model_config": "xvit.models.registry",
    "register_model": "xvit.models.registry",
}

__all__ = [
    "VideoViT",
    "VideoViTConfig",
    "attention_kernel",
    "count_flops",
    "count_params",
    "create_model",
    "get_attention_kernel",
    "list_models",
    "load_model",
    "model_config",
    "register_model",
    "set_attention_kernel",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xvit.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
