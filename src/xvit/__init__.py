"""xvit: efficient video recognition with transformers (X-ViT and its baselines)."""

from __future__ import annotations

import importlib.metadata
from typing import Any

try:  # one source: pyproject.toml, through the installed metadata
    __version__ = importlib.metadata.version("xvit")
except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path
    __version__ = "unknown"

# The public names, imported on first use (PEP 562): `import xvit` and the `xvit` command's
# listings do not pay for importing torch.
_LAZY = {
    "count_flops": "xvit.models",
    "count_params": "xvit.models",
    "create_model": "xvit.models",
    "list_models": "xvit.models",
    "load_model": "xvit.models",
}

__all__ = [
    "__version__",
    "count_flops",
    "count_params",
    "create_model",
    "list_models",
    "load_model",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xvit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
