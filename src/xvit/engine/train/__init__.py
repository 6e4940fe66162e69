"""`xvit train` and `xvit ablate`: ``loop`` (the Trainer: checks, DDP, run directory, model,
optimiser, resume, epochs), ``optim`` (parameter groups, schedule, EMA), ``checkpoint`` and
``train_state`` (resumable state, bit-exact), ``sampling`` (seeded, resumable order),
``mixing`` (mixup / cutmix losses), ``nonfinite`` and ``collapse`` (a run that stops
learning is seen and stopped), ``runlog`` (console, log.jsonl, TensorBoard), ``plan``
(`--dry-run`) and ``ablation`` (the seed's Table 2 sweep).

Imports run, evaluate (the validation at each epoch) and deploy through evaluate."""

from __future__ import annotations

import importlib
from typing import Any

# The public names, imported on first use (PEP 562): importing one module of the package does
# not import the others (nor torch, for those that do without it).
_LAZY = {
    "train": "xvit.engine.train.loop",
    "Trainer": "xvit.engine.train.loop",
    "TrainResult": "xvit.engine.train.loop",
    "describe_run": "xvit.engine.train.plan",
    "run_ablation": "xvit.engine.train.ablation",
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
