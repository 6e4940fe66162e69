"""The model library: one video-ViT backbone with every attention variant, temporal heads,
named model definitions, FLOP and parameter counting, and weights on disk."""

from __future__ import annotations

from typing import Any


def create_model(name: str, **kwargs: Any) -> Any:
    """Build a registered model by name (see `xvit.models.registry.create_model`)."""
    from xvit.models.registry import create_model as _create

    return _create(name, **kwargs)


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the registered models, optionally filtered by a glob pattern."""
    from xvit.models.registry import list_models as _list

    return _list(pattern)


def count_flops(model: Any, input_shape: Any = None) -> int:
    """Forward FLOPs of `model` (see `xvit.models.flops.count_flops`)."""
    from xvit.models.flops import count_flops as _count

    return _count(model, input_shape)


def count_params(model: Any, trainable_only: bool = False) -> int:
    """Number of parameters of `model`."""
    from xvit.models.flops import count_params as _count

    return _count(model, trainable_only)


def load_model(path: Any, **kwargs: Any) -> Any:
    """Rebuild a model saved with `save_pretrained` (see `xvit.models.hub.load_model`)."""
    from xvit.models.hub import load_model as _load

    return _load(path, **kwargs)


__all__ = ["count_flops", "count_params", "create_model", "list_models", "load_model"]
