"""The model a :class:`~xvit.engine.run.schema.Config` describes: the keyword arguments of
``xvit.create_model`` (:func:`model_options`) and the model itself (:func:`build_model`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from xvit.engine.run.schema import Config, ConfigError
from xvit.models import create_model

__all__ = ["build_model", "model_options"]


def model_options(cfg: Config) -> dict[str, Any]:
    """The keyword arguments of ``xvit.create_model`` that ``cfg`` describes (besides name,
    classes and weights): frames, crop size, head, ``model.overrides``, the regularisers,
    multi-label outputs and the normalisation. ``data.mean``/``data.std`` set the model's normalisation, which the
    data pipeline then reads from the model config (one owner)."""
    kwargs: dict[str, Any] = dict(cfg.model.overrides)
    kwargs.update(num_frames=cfg.data.num_frames, img_size=cfg.data.img_size, head=cfg.model.head)
    if cfg.data.multi_label:  # how the saved model's outputs are read (sigmoid per class)
        kwargs["multi_label"] = True
    if cfg.model.head_drop_rate:
        kwargs.setdefault("head_drop_rate", cfg.model.head_drop_rate)
    if cfg.model.drop_path_rate:
        kwargs.setdefault("drop_path_rate", cfg.model.drop_path_rate)
    for name in ("mean", "std"):
        value = getattr(cfg.data, name)
        if value is None:
            continue
        if name in kwargs and [float(v) for v in kwargs[name]] != [float(v) for v in value]:
            raise ConfigError(
                f"data.{name}={value} and model.overrides.{name}={kwargs[name]} disagree; set one"
            )
        kwargs[name] = list(value)
    return kwargs


def build_model(cfg: Config, num_classes: int, class_names: list[str] | None = None) -> nn.Module:
    """``xvit.create_model`` from ``cfg`` (:func:`model_options`); the class names are stored
    in ``model.config`` so the saved model describes itself, and the normalisation it was
    built with is the one the data pipeline uses."""
    model = create_model(
        cfg.model.name,
        num_classes=num_classes,
        pretrained=cfg.model.pretrained,
        **model_options(cfg),
    )
    mcfg = getattr(model, "config", None)
    if mcfg is not None and class_names is not None and hasattr(mcfg, "class_names"):
        mcfg.class_names = list(class_names)
    if cfg.model.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model
