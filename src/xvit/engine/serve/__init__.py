"""`xvit serve`: ``app`` (the FastAPI routes, errors as one-line JSON, the web page in
``static/``), ``service`` (the model behind them), ``batcher`` (dynamic batching),
``decode`` (the decoding process pool), ``upload`` (bounded uploads, paths inside
``--allow-dir``, request fields) and ``metrics`` (Prometheus).

Imports run and infer (timelines)."""

from __future__ import annotations

import importlib
from typing import Any

# The public names, imported on first use (PEP 562): importing one module of the package does
# not import the others (nor torch, for those that do without it).
_LAZY = {
    "create_app": "xvit.engine.serve.app",
    "ModelService": "xvit.engine.serve.service",
    "ServeOptions": "xvit.engine.serve.service",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
