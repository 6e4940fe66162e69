"""A finished run or ``save_pretrained`` directory: its model, and the config to feed it."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from xvit.data.cores import default_workers
from xvit.engine.run.coerce import apply_overrides
from xvit.engine.run.config import load_config
from xvit.engine.run.schema import Config
from xvit.models import load_model

__all__ = ["MACHINE_KEYS", "load_run", "machine_defaults"]

# Settings sized to the machine a process runs on, which a run's config.yaml records for the
# machine it was trained on.
MACHINE_KEYS = ("data.workers", "train.threads")


def machine_defaults() -> dict[str, int]:
    """:data:`MACHINE_KEYS` as this process would choose them: the loader workers of its share
    of the usable cores, and threads ``0`` (auto: the cores left to compute)."""
    return {"data.workers": default_workers(), "train.threads": 0}


def load_run(checkpoint: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[nn.Module, Config]:
    """The model of a run / save_pretrained directory and the config to feed it.

    The sampling and preprocessing settings come from ``DIR/config.yaml`` when ``DIR`` is a
    training run, else from the defaults; frames, crop size, normalisation and multi-label
    mode always follow the model's own config. Loader workers and compute threads
    (:data:`MACHINE_KEYS`) follow this machine, not the one the run was trained on: a run
    trained with 4 workers on 16 cores is evaluated with 1 on 2 cores. ``overrides``
    (``key=value``) go on top.
    """
    directory = Path(checkpoint)
    if not directory.exists():
        raise FileNotFoundError(f"--checkpoint {directory}: no such directory")
    if not directory.is_dir():
        raise FileNotFoundError(
            f"--checkpoint {directory}: a file; give the directory of a finished run or of save_pretrained"
        )
    if not (directory / "model.safetensors").is_file():
        hint = (
            " (training not finished? its checkpoints are in checkpoints/)"
            if (directory / "checkpoints").is_dir()
            else ""
        )
        raise FileNotFoundError(
            f"{directory}: no model.safetensors; expected a finished run directory or a "
            f"save_pretrained directory{hint}"
        )
    model = load_model(directory)
    run_cfg = directory / "config.yaml"
    cfg = load_config(run_cfg) if run_cfg.is_file() else Config()
    mc = model.config
    fixed = [
        *(f"{key}={value}" for key, value in machine_defaults().items()),
        f"data.num_frames={mc.num_frames}",
        f"data.img_size={mc.img_size}",
        f"data.mean={list(mc.mean)}",
        f"data.std={list(mc.std)}",
        f"data.multi_label={'true' if getattr(mc, 'multi_label', False) else 'false'}",
    ]
    return model, apply_overrides(cfg, fixed + list(overrides))
