"""What every job stands on: the configuration and what it describes.

- the config: ``schema`` (the sections and their fields, the recipes), ``coerce`` (``key=value``
  and dicts to typed fields), ``checks`` (ranges and model checks, one table), ``config``
  (layered resolution: recipe, file, overrides, flags, each value's source);
- what a config builds: ``model`` (the network), ``data`` (datasets from lists, class folders,
  annotation formats), ``labels`` (where a list's labels meet a model's classes: refused
  naming both sides, or stated), ``saved`` (a run or ``save_pretrained`` directory back as
  model + config);
- how it runs: ``distributed`` (devices, DDP, threads from the usable cores of
  ``xvit.data.cores``), ``precision`` (autocast), ``scoring`` (every test view of a dataset
  through a model once), ``metrics`` (view fusion, classification and agreement figures),
  ``rundir`` (output directories, locks, atomic files).

Imports models and data only; every job package imports it."""

from __future__ import annotations

import importlib
from typing import Any

# The public names, imported on first use (PEP 562): importing one module of the package does
# not import the others (nor torch, for those that do without it).
_LAZY = {
    "Config": "xvit.engine.run.schema",
    "ConfigError": "xvit.engine.run.schema",
    "apply_overrides": "xvit.engine.run.coerce",
    "load_config": "xvit.engine.run.config",
    "save_config": "xvit.engine.run.config",
    "build_model": "xvit.engine.run.model",
    "load_run": "xvit.engine.run.saved",
    "score_dataset": "xvit.engine.run.scoring",
    "atomic_write": "xvit.engine.run.rundir",
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
