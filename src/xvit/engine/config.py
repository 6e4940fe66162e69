"""Training configuration: a dataclass schema, YAML loading with validation, key=value overrides.

A run is described by one :class:`Config` with four sections (``model``, ``data``, ``optim``,
``train``) and an ``eval`` section for the final multi-view test. The dataclass defaults
follow the released X-ViT recipe (SGD, base lr 0.03 per 64 clips, cosine with 5 warm-up
epochs); YAML recipes in ``configs/`` start from them. Without a config file, ``xvit train``
starts from :data:`SYNTHETIC_RECIPE` instead (the same values as ``configs/synthetic.yaml``):
a tiny X-ViT on the built-in synthetic temporal-reasoning dataset. YAML files and ``key=value`` overrides are checked
against the schema: an unknown or misspelt key is an error that names the closest valid key,
and values are converted to the field's type (``optim.lr=1e-3``, ``data.hflip=false``,
``data.mean=[0.5,0.5,0.5]``, ``model.pretrained=none``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "default_config",
    "load_config",
    "parse_views",
    "save_config",
]


class ConfigError(ValueError):
    """A configuration file or override that does not fit the schema."""


def _choices(*values: str) -> dict[str, tuple[str, ...]]:
    return {"choices": values}


@dataclass
class ModelConfig:
    """Which network to build and how to initialise it."""

    name: str = "xvit_base_patch16"
    # Temporal aggregation head: average of per-frame predictions, temporal attention, linear.
    head: str = field(default="ta", metadata=_choices("avg", "ta", "linear"))
    # ImageNet / released weights: a weights file or a save_pretrained directory.
    pretrained: str | None = None
    # Dropout before the classifier (the recipe's 0.5) and the stochastic depth rate.
    head_drop_rate: float = 0.5
    drop_path_rate: float = 0.0
    # Trade compute for memory: recompute block activations in the backward pass.
    grad_checkpointing: bool = False
    # Further keyword arguments of xvit.create_model (embed_dim, depth, num_heads, patch_size,
    # attention options, ...).
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Where the clips come from and how they are sampled and augmented."""

    # auto: the built-in synthetic dataset when no lists are given, otherwise inferred from the
    # train list (.csv -> kinetics or epic100 by its header, .json -> ssv2, else a list file).
    format: str = field(
        default="auto", metadata=_choices("auto", "synth", "list", "kinetics", "ssv2", "epic100")
    )
    train_list: str | None = None
    val_list: str | None = None
    # Directory that relative video paths in the lists are resolved against.
    root: str | None = None
    # Class names: one a line (list files) or the dataset's own label file (SSv2 labels.json).
    class_names: str | None = None
    # Epic-Kitchens-100: which label to train on.
    epic_label: str = field(default="verb", metadata=_choices("verb", "noun", "action"))
    # Where the synthetic dataset is generated (default: $XVIT_CACHE/synth or ~/.cache/xvit/synth).
    synth_dir: str | None = None
    num_frames: int = 8
    # dense: num_frames frames every sampling_rate frames; uniform: one frame per segment.
    sampling: str = field(default="uniform", metadata=_choices("dense", "uniform"))
    sampling_rate: int = 1
    img_size: int = 224
    # Training short-side scale jitter range and test short side (null: img_size).
    train_scale: list[int] = field(default_factory=lambda: [256, 320])
    test_scale: int | None = None
    # Horizontal flips: off for data whose labels say left/right (SSv2, the synthetic set).
    hflip: bool = True
    # autoaugment, randaugment or rand-mM-nN (e.g. rand-m9-n2); null: off.
    auto_augment: str | None = None
    random_erase: float = 0.0
    # Normalisation; null: the model's own (model.config.mean / std).
    mean: list[float] | None = None
    std: list[float] | None = None
    # Clips per process and step; data loading worker processes.
    batch_size: int = 8
    workers: int = 4


@dataclass
class OptimConfig:
    """Optimiser, learning-rate schedule and the loss-side regularisers."""

    name: str = field(default="sgd", metadata=_choices("sgd", "adamw"))
    # Absolute learning rate; null: base_lr * total_batch / base_batch_size, where total_batch
    # = batch_size x processes x accum_steps (the released recipe: 0.03 for a batch of 64).
    lr: float | None = None
    base_lr: float = 0.03
    base_batch_size: int = 64
    momentum: float = 0.9
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1e-4
    # Cosine schedule with a linear warm-up, both per optimiser step.
    warmup_epochs: float = 5.0
    min_lr: float = 0.0
    clip_grad: float | None = None
    accum_steps: int = 1
    label_smoothing: float = 0.0
    # Batch mixing (alpha of the Beta distribution; 0 = off). With both on, each batch picks
    # one of them with probability 0.5.
    mixup: float = 0.0
    cutmix: float = 0.0
    # Exponential moving average of the weights (validation and the final model use it).
    ema: bool = False
    ema_decay: float = 0.999


@dataclass
class TrainConfig:
    """The run: length, seed, precision, devices, checkpoints and logging."""

    out: str = "runs/default"
    epochs: int = 30
    seed: int = 0
    device: str = "auto"  # auto (cuda when available), cpu, cuda, cuda:N
    # Intra-op CPU threads per process; 0: auto (on CPU, the cores left after the data workers
    # and the other local processes, so that nothing is oversubscribed; never raised).
    threads: int = 0
    # Mixed precision: auto = bf16 on CUDA when supported (fp16 + grad scaler otherwise), off
    # on CPU; bf16 / fp16 / none force it (fp16 is CUDA only).
    amp: str = field(default="auto", metadata=_choices("auto", "none", "bf16", "fp16"))
    # Write a resumable checkpoint every N optimiser steps (0: only at epoch ends).
    checkpoint_every: int = 1000
    # How many step checkpoints to keep (0: all).
    keep_checkpoints: int = 2
    # Validate every N epochs (and always after the last one).
    eval_every: int = 1
    log_every: int = 20
    tensorboard: bool = True


@dataclass
class EvalConfig:
    """The final multi-view evaluation of a run (and the defaults of `xvit eval`)."""

    # t x s: t temporal clips evenly spread, s spatial crops.
    views: str = "1x1"
    fuse: str = field(default="prob", metadata=_choices("prob", "logits"))
    batch_size: int = 8


@dataclass
class Config:
    """A complete, validated run description."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# The recipe `xvit train` runs without a config file (configs/synthetic.yaml holds the same
# values): a tiny X-ViT (4 layers of width 96, 8x8 patches) on the built-in synthetic
# temporal-reasoning dataset, 8 frames of 32x32, about ten minutes on two CPU cores.
SYNTHETIC_RECIPE: dict[str, dict[str, Any]] = {
    "model": {
        "name": "xvit_tiny_patch16",
        "head": "avg",
        "head_drop_rate": 0.0,
        "overrides": {"embed_dim": 96, "depth": 4, "num_heads": 3, "patch_size": 8},
    },
    "data": {
        "format": "auto",
        "num_frames": 8,
        "sampling": "uniform",
        "img_size": 32,
        "train_scale": [32, 36],
        "hflip": False,  # motion direction is a label
        "batch_size": 16,
        "workers": 1,
    },
    "optim": {
        "name": "adamw",
        "lr": 1.0e-3,
        "weight_decay": 0.05,
        "warmup_epochs": 1.0,
        "clip_grad": 1.0,
    },
    "train": {"out": "runs/default", "epochs": 10, "checkpoint_every": 0},
    "eval": {"views": "1x1"},
}


# ----------------------------------------------------------------------------- schema helpers


def _sections() -> dict[str, type]:
    return {f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)}


def valid_keys() -> list[str]:
    """Every dotted key of the schema, e.g. ``optim.lr``."""
    keys = []
    for section, cls in _sections().items():
        keys += [f"{section}.{f.name}" for f in dataclasses.fields(cls)]
    return keys


def _closest_key(key: str) -> str | None:
    keys = valid_keys()
    leaf = key.rsplit(".", 1)[-1]
    leaves = {k.rsplit(".", 1)[-1]: k for k in keys}
    # A known name in the wrong place ("lr", "model.epochs"): point at where it lives.
    if leaf in leaves:
        return leaves[leaf]
    if "." not in key:  # a misspelt section
        match = difflib.get_close_matches(key, list(_sections()), n=1, cutoff=0.6)
        if match:
            return match[0]
    match = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if match:
        return match[0]
    match = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)
    if match:
        return leaves[match[0]]
    match = difflib.get_close_matches(key, list(_sections()), n=1, cutoff=0.6)
    return match[0] if match else None


def _unknown_key(key: str, source: str) -> ConfigError:
    hint = _closest_key(key)
    where = f" in {source}" if source else ""
    msg = f"unknown config key '{key}'{where}"
    if hint:
        msg += f"; did you mean '{hint}'?"
    return ConfigError(msg)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Convert ``value`` (parsed YAML) to the annotated type ``tp`` or raise a ConfigError."""
    where = f" in {source}" if source else ""

    def fail() -> ConfigError:
        return ConfigError(
            f"config key '{key}'{where}: expected {_type_name(tp)}, got {value!r}"
        )

    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
            if type(None) in args:
                return None
            raise fail()
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except ConfigError:
                pass
        raise fail()
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "off", "0"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise fail()
    if tp is int:
        if isinstance(value, bool):
            raise fail()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise fail() from None
        raise fail()
    if tp is float:
        if isinstance(value, bool):
            raise fail()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                raise fail() from None
        raise fail()
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise fail()
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.strip("[]").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise fail()
        return [_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise fail()
        return {str(k): v for k, v in value.items()}
    raise fail()


def _check_choice(cls: type, f: dataclasses.Field, value: Any, key: str, source: str) -> None:
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        where = f" in {source}" if source else ""
        hint = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        msg = f"config key '{key}'{where}: {value!r} is not one of {', '.join(choices)}"
        raise ConfigError(msg + (f"; did you mean '{hint[0]}'?" if hint else ""))


def _set(cfg: Config, key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    sections = _sections()
    if len(parts) != 2 or parts[0] not in sections:
        # model.overrides.<name>=value sets one create_model keyword argument.
        if len(parts) == 3 and parts[:2] == ["model", "overrides"]:
            cfg.model.overrides[parts[2]] = value
            return
        raise _unknown_key(key, source)
    section, name = parts
    cls = sections[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise _unknown_key(key, source)
    tp = typing.get_type_hints(cls)[name]
    value = _coerce(value, tp, key, source)
    _check_choice(cls, fields[name], value, key, source)
    setattr(getattr(cfg, section), name, value)


# ----------------------------------------------------------------------------- public API


def config_from_dict(data: dict[str, Any], source: str = "", base: Config | None = None) -> Config:
    """Build a Config from a nested dict (YAML layout), on top of ``base`` (default: defaults)."""
    cfg = _copy(base) if base is not None else Config()
    if not data:
        return cfg
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source or 'config'}: expected a mapping of sections, got {type(data).__name__}"
        )
    for section, values in data.items():
        if section not in _sections():
            raise _unknown_key(str(section), source)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(
                f"config section '{section}' in {source or 'config'} must be a mapping, "
                f"got {values!r}"
            )
        for name, value in values.items():
            _set(cfg, f"{section}.{name}", value, source)
    return cfg


def _copy(cfg: Config) -> Config:
    """A deep copy of ``cfg`` (no list or dict shared)."""
    data = config_to_dict(cfg)
    return Config(**{name: cls(**data[name]) for name, cls in _sections().items()})


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The config as a nested dict of plain values (YAML/JSON ready)."""
    return dataclasses.asdict(cfg)


def default_config() -> Config:
    """The configuration of ``xvit train`` without a config file: :data:`SYNTHETIC_RECIPE`."""
    return config_from_dict(SYNTHETIC_RECIPE, source="the built-in synthetic recipe")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (:func:`default_config` when ``path`` is None) and apply
    ``key=value`` overrides."""
    cfg = default_config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        cfg = config_from_dict(data or {}, source=str(path))
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Apply ``section.key=value`` strings (values parsed as YAML, then converted to the field type)."""
    cfg = _copy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        # Keep the text as written for string-valued fields ("007" must stay "007").
        if isinstance(value, (int, float)) and not isinstance(value, bool) and _field_is_str(key):
            value = raw
        _set(cfg, key, value, source=f"override '{item}'")
    return cfg


def _field_is_str(key: str) -> bool:
    """Whether ``key`` names a field holding text (str or str | None)."""
    section, _, name = key.partition(".")
    cls = _sections().get(section)
    if cls is None or name not in {f.name for f in dataclasses.fields(cls)}:
        return False
    tp = typing.get_type_hints(cls)[name]
    return tp is str or set(typing.get_args(tp)) == {str, type(None)}


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable with :func:`load_config`)."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def parse_views(views: str) -> tuple[int, int]:
    """``"3x2"`` -> (3 temporal clips, 2 spatial crops)."""
    try:
        t, s = (int(v) for v in views.lower().split("x"))
    except ValueError:
        raise ConfigError(f"views must look like TxS (e.g. 3x1), got {views!r}") from None
    if t < 1 or s < 1:
        raise ConfigError(f"views must be positive, got {views!r}")
    return t, s
