"""The jobs behind the `xvit` commands, one package each (one process or DDP under torchrun):

- ``run``: what every job stands on (the config and its resolution, the model and data it
  describes, devices, scoring, metrics, output files);
- ``deploy``: runtimes, export, quantisation, precision choice;
- ``evaluate``: `xvit eval`; ``infer``: `xvit predict` (lists, timelines, streams) and
  `xvit extract`;
- ``train``: `xvit train`, `xvit ablate`; ``serve``: `xvit serve`.

Each package may import only those below it (run < deploy < evaluate, infer < train, serve;
tests/test_layers.py), never one beside it."""

from __future__ import annotations

import importlib
from typing import Any

# The public names, imported on first use (PEP 562): importing one submodule does not
# import the others (nor torch, for the ones that do without it).
_LAZY = {
    "Config": "xvit.engine.run.schema",
    "ConfigError": "xvit.engine.run.schema",
    "apply_overrides": "xvit.engine.run.coerce",
    "load_config": "xvit.engine.run.config",
    "save_config": "xvit.engine.run.config",
}

__all__ = [
    "Config",
    "ConfigError",
    "apply_overrides",
    "load_config",
    "save_config",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xvit.engine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
