"""A finished run or ``save_pretrained`` directory: its model, and the config to feed it."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from xvit.engine.run.coerce import apply_overrides
from xvit.engine.run.config import load_config
from xvit.engine.run.schema import Config
from xvit.models import load_model

__all__ = ["load_run"]


def load_run(checkpoint: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[nn.Module, Config]:
    """The model of a run / save_pretrained directory and the config to feed it.

    The sampling and preprocessing settings come from ``DIR/config.yaml`` when ``DIR`` is a
    training run, else from the defaults; frames, crop size, normalisation and multi-label
    mode always follow the model's own config. ``overrides`` (``key=value``) go on top.
    """
    directory = Path(checkpoint)
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
        f"data.num_frames={mc.num_frames}",
        f"data.img_size={mc.img_size}",
        f"data.mean={list(mc.mean)}",
        f"data.std={list(mc.std)}",
        f"data.multi_label={'true' if getattr(mc, 'multi_label', False) else 'false'}",
    ]
    return model, apply_overrides(cfg, fixed + list(overrides))
