"""xvit: efficient video recognition with transformers (X-ViT and its baselines)."""

from __future__ import annotations

__version__ = "0.1.0"

from xvit.models import (  # noqa: E402
    count_flops,
    count_params,
    create_model,
    list_models,
    load_model,
)

__all__ = [
    "__version__",
    "count_flops",
    "count_params",
    "create_model",
    "list_models",
    "load_model",
]
