"""xvit: efficient video recognition with transformers (X-ViT and its baselines)."""

from __future__ import annotations

from xvit.models import (
    count_flops,
    count_params,
    create_model,
    list_models,
    load_model,
)
from xvit.models.storage import xvit_version

__version__ = xvit_version()  # one source: pyproject.toml, through the installed metadata

__all__ = [
    "__version__",
    "count_flops",
    "count_params",
    "create_model",
    "list_models",
    "load_model",
]
