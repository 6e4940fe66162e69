"""`xvit eval`: a model scored on a labelled list. ``evaluator`` (the test views fused, the
metrics of the fused scores), ``eval_run`` (a checkpoint on a list, with the label space
checked and stated), ``report`` (the printed report and metrics.json), ``views_curve``
(accuracy against the number of views).

Imports run and deploy."""

from __future__ import annotations

import importlib
from typing import Any

# The public names, imported on first use (PEP 562): importing one module of the package does
# not import the others (nor torch, for those that do without it).
_LAZY = {
    "evaluate": "xvit.engine.evaluate.evaluator",
    "evaluate_scores": "xvit.engine.evaluate.evaluator",
    "evaluate_checkpoint": "xvit.engine.evaluate.eval_run",
    "write_metrics": "xvit.engine.evaluate.report",
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
