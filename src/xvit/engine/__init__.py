"""The jobs behind the `xvit` commands, one package each (one process or DDP under torchrun):

- ``run``: what every job stands on (the config and its resolution, the model and data it
  describes, devices, scoring, metrics, output files);
- ``deploy``: runtimes, export, quantisation, precision choice;
- ``evaluate``: `xvit eval`; ``infer``: `xvit predict` (lists, timelines, streams) and
  `xvit extract`;
- ``train``: `xvit train`, `xvit ablate`; ``serve``: `xvit serve`.

Each package may import only those below it (run < deploy < evaluate, infer < train, serve;
tests/test_layers.py), never one beside it.

The modules of the flat ``engine/`` that came before the packages still import under their old
names (``xvit.engine.export`` is ``xvit.engine.deploy.export``, the same module object), with a
``DeprecationWarning`` naming the new path: see ``_MOVED``."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
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


# Where each module of the flat engine/ went when the engine was split into one package per
# job: engine/NAME.py is now engine/JOB/NAME.py, and engine/serve_NAME.py engine/serve/NAME.py
# (train.py and evaluate.py became train/loop.py and evaluate/evaluator.py; their packages
# export the old modules' public names).
_OLD_MODULES = {
    "run": "checks coerce config cores data distributed metrics model precision rundir saved schema scoring",
    "deploy": "export precision_auto quantize quantize_static runtime_targets runtimes",
    "evaluate": "eval_run report views_curve",
    "infer": "batch_predict extract predict render stream timeline timeline_plot video_list window_clips "
    "window_scorer",
    "serve": "app batcher decode metrics service upload",
    "train": "ablation checkpoint collapse mixing nonfinite optim plan runlog sampling train_state",
}
_MOVED = {
    (f"serve_{name}" if job == "serve" else name): f"xvit.engine.{job}.{name}"
    for job, names in _OLD_MODULES.items()
    for name in names.split()
}
_MOVED["cores"] = "xvit.data.cores"  # the usable cores: data's loaders and processes need them too


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``xvit.engine.<old name>`` (after the ordinary finders found no such file) and
    loads it as the module it became: the import system keeps whatever ``exec_module`` leaves
    in ``sys.modules``, so the old name is the new module itself, not a copy."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in _MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> None:
        return None  # a placeholder, replaced by exec_module

    def exec_module(self, module: Any) -> None:
        new = _MOVED[module.__name__.rpartition(".")[2]]
        warnings.warn(f"{module.__name__} is now {new}", DeprecationWarning, stacklevel=2)
        sys.modules[module.__name__] = importlib.import_module(new)


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())
