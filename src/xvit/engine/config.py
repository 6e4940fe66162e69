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
import math
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
    # train list (a directory -> class folders DIR/<class name>/<video>, .csv -> kinetics or
    # epic100 by its header, .json -> ssv2, else a list file).
    format: str = field(
        default="auto",
        metadata=_choices("auto", "synth", "list", "folders", "kinetics", "ssv2", "epic100"),
    )
    train_list: str | None = None
    val_list: str | None = None
    # Directory that relative video paths in the lists are resolved against.
    root: str | None = None
    # Class names: one a line (list files) or the dataset's own label file (SSv2 labels.json).
    class_names: str | None = None
    # Epic-Kitchens-100: which label to train on.
    epic_label: str = field(default="verb", metadata=_choices("verb", "noun", "action"))
    # Multi-label list files ('path label1,label2,...'): multi-hot targets, a sigmoid +
    # binary cross-entropy loss, and mAP instead of top-1 in validation and evaluation.
    multi_label: bool = False
    # Where the synthetic dataset is generated (default: $XVIT_CACHE/synth or ~/.cache/xvit/synth).
    synth_dir: str | None = None
    num_frames: int = 8
    # dense: num_frames frames every sampling_rate frames; uniform: one frame per segment.
    sampling: str = field(default="uniform", metadata=_choices("dense", "uniform"))
    sampling_rate: int = 1
    img_size: int = 224
    # Training short-side scale jitter range (null: the released recipe's 256-320 for a crop
    # of 224, in proportion to img_size) and test short side (null: img_size). A value set
    # for one img_size and inherited by a run that changes img_size is scaled with it.
    train_scale: list[int] | None = None
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
    # Without data.val_list: hold out this share of the training videos (seeded by
    # train.seed, stratified per class) for validation; 0: no validation.
    val_split: float = 0.0
    # Decoding limits, checked from the stream header before decoding (0: no limit). A video
    # over them is a failed video with the reason. max_frame_pixels: width x height of one
    # frame (default 7680x4320, 8K). max_decode_mb: MiB of decoded frames (H x W x 3 bytes each,
    # counted from the keyframe each wanted frame is decoded from) one clip read may cost
    # (default 16384: about 650 frames of 4K).
    max_frame_pixels: int = 7680 * 4320
    max_decode_mb: int = 16384


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
    # Where each value came from (dotted key -> "default", "recipe", a config file, a flag,
    # an override, "derived ..."); filled by load_config, not part of the config itself.
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)


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
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if f.name != "sources"}


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
    return Config(**{name: cls(**data[name]) for name, cls in _sections().items()},
                  sources=dict(cfg.sources))


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The config as a nested dict of plain values (YAML/JSON ready)."""
    data = dataclasses.asdict(cfg)
    data.pop("sources", None)
    return data


def default_config() -> Config:
    """The configuration of ``xvit train`` without a config file: :data:`SYNTHETIC_RECIPE`."""
    return config_from_dict(SYNTHETIC_RECIPE, source="the built-in synthetic recipe")


# The released recipe's training scale jitter for 224-pixel crops, in proportion to the crop.
RELEASED_TRAIN_SCALE = (256 / 224, 320 / 224)


def derived_train_scale(img_size: int) -> list[int]:
    """``data.train_scale`` when unset: the released 256-320 for 224, scaled to ``img_size``."""
    return [round(img_size * r) for r in RELEASED_TRAIN_SCALE]


def _parse_item(item: str) -> tuple[str, Any]:
    """``section.key=value`` -> (key, value parsed as YAML, text kept for text fields)."""
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
    return key, value


def _dict_keys(data: dict[str, Any]) -> list[str]:
    """The dotted keys a YAML mapping sets (``model.overrides`` entries one by one)."""
    keys = []
    for section, values in (data or {}).items():
        for name, value in (values or {}).items() if isinstance(values, dict) else ():
            if section == "model" and name == "overrides" and isinstance(value, dict):
                keys += [f"model.overrides.{k}" for k in value]
            else:
                keys.append(f"{section}.{name}")
    return keys


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    flags: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
) -> Config:
    """Resolve a run's configuration from its layers and check it.

    Layers, each on top of the one before: the schema's defaults (the released recipe); then
    either the config file at ``path`` or, when there is no file and no annotation list is
    given, :data:`SYNTHETIC_RECIPE`; then the ``key=value`` ``overrides``; then ``flags``
    (``(flag, "key=value")`` pairs, e.g. ``("--img-size", "data.img_size=64")``). A flag and
    an override that set one key to different values are an error. The recipe's model
    options (``model.overrides``) apply only to the recipe's own model: a run that names
    another model gets that model as registered. Training and test scales that a lower layer
    set for another ``img_size`` are scaled to the final one. ``cfg.sources`` records where
    every value came from; :func:`check_config` runs last.
    """
    user: list[tuple[str, Any, str, str]] = []  # key, value, label, text
    for item in overrides:
        key, value = _parse_item(item)
        user.append((key, value, "override", item))
    for flag, item in flags:
        key, value = _parse_item(item)
        user.append((key, value, f"flag {flag}", item))
    seen: dict[str, tuple[Any, str]] = {}
    for key, value, label, item in user:
        if key in seen and seen[key][0] != value and label.startswith("flag") != seen[key][1].startswith("flag"):
            raise ConfigError(f"'{key}' is set twice with different values: {seen[key][1]} and {label} ({item})")
        seen[key] = (value, label)
    user_keys = {key for key, *_ in user}

    cfg = Config()
    sources = {key: "default" for key in valid_keys()}
    img_when_set = {key: cfg.data.img_size for key in sources}

    def mark(keys: list[str], label: str) -> None:
        for key in keys:
            sources[key] = label
            img_when_set[key] = cfg.data.img_size

    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
        cfg = config_from_dict(data or {}, source=str(path))
        mark(_dict_keys(data or {}), f"file {path}")
    elif not user_keys & {"data.train_list", "data.val_list"} and {
        k: v for k, v, *_ in user
    }.get("data.format", "auto") in ("auto", "synth"):
        recipe = {section: dict(values) for section, values in SYNTHETIC_RECIPE.items()}
        if "model.name" in user_keys:
            # the recipe's width, depth and patch size belong to its own model: a named model
            # is built as registered
            recipe["model"] = {k: v for k, v in recipe["model"].items() if k != "overrides"}
        cfg = config_from_dict(recipe, source="the built-in synthetic recipe")
        mark(_dict_keys(recipe), "recipe")
    for key, value, label, item in user:
        _set(cfg, key, value, source=f"{label} '{item}'" if label == "override" else f"{label} ({item})")
        mark([key], label)

    # Scales set for another crop size follow the crop size; unset ones are derived from it.
    d = cfg.data
    user_set = ("override", "flag")
    if d.train_scale is None:
        d.train_scale = derived_train_scale(d.img_size)
        sources["data.train_scale"] = "derived from data.img_size (released 256-320 per 224)"
    elif not sources["data.train_scale"].startswith(user_set) and img_when_set["data.train_scale"] != d.img_size:
        ratio = d.img_size / img_when_set["data.train_scale"]
        d.train_scale = [round(v * ratio) for v in d.train_scale]
        sources["data.train_scale"] += f", scaled to data.img_size={d.img_size}"
    if (d.test_scale is not None and not sources["data.test_scale"].startswith(user_set)
            and img_when_set["data.test_scale"] != d.img_size):
        d.test_scale = round(d.test_scale * d.img_size / img_when_set["data.test_scale"])
        sources["data.test_scale"] += f", scaled to data.img_size={d.img_size}"
    cfg.sources = sources
    check_config(cfg)
    return cfg


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Apply ``section.key=value`` strings (values parsed as YAML, then converted to the field type)."""
    cfg = _copy(cfg)
    for item in overrides:
        key, value = _parse_item(item)
        _set(cfg, key, value, source=f"override '{item}'")
        if cfg.sources:
            cfg.sources[key] = "override"
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
    """Write the resolved config as YAML (loadable with :func:`load_config`), atomically; each
    value carries a comment saying where it came from (``cfg.sources``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(config_text(cfg))
    tmp.replace(path)


def config_text(cfg: Config) -> str:
    """The config as YAML text, each value followed by a comment naming its source."""
    lines = []
    for section, values in config_to_dict(cfg).items():
        lines.append(f"{section}:")
        for name, value in values.items():
            key = f"{section}.{name}"
            if key == "model.overrides" and value:
                lines.append("  overrides:")
                for k, v in value.items():
                    src = cfg.sources.get(f"model.overrides.{k}")
                    lines.append(f"    {k}: {_yaml_value(v)}" + (f"  # {src}" if src else ""))
                continue
            src = cfg.sources.get(key)
            lines.append(f"  {name}: {_yaml_value(value)}" + (f"  # {src}" if src else ""))
    return "\n".join(lines) + "\n"


def _yaml_value(value: Any) -> str:
    """One value in YAML flow style on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip()
    return text.removesuffix("\n...")


# What each numeric key accepts (one table; check_config applies it). None is allowed
# wherever the schema allows it.
_LIMITS: dict[str, tuple[str, typing.Callable[[Any], bool]]] = {
    "model.head_drop_rate": ("in [0, 1)", lambda v: 0 <= v < 1),
    "model.drop_path_rate": ("in [0, 1)", lambda v: 0 <= v < 1),
    "data.num_frames": (">= 1", lambda v: v >= 1),
    "data.sampling_rate": (">= 1", lambda v: v >= 1),
    "data.img_size": (">= 1", lambda v: v >= 1),
    "data.test_scale": (">= data.img_size", None),
    "data.random_erase": ("in [0, 1]", lambda v: 0 <= v <= 1),
    "data.batch_size": (">= 1", lambda v: v >= 1),
    "data.workers": (">= 0", lambda v: v >= 0),
    "data.val_split": ("in [0, 1)", lambda v: 0 <= v < 1),
    "optim.lr": ("> 0", lambda v: v > 0),
    "optim.base_lr": ("> 0", lambda v: v > 0),
    "optim.base_batch_size": (">= 1", lambda v: v >= 1),
    "optim.momentum": ("in [0, 1)", lambda v: 0 <= v < 1),
    "optim.weight_decay": (">= 0", lambda v: v >= 0),
    "optim.warmup_epochs": (">= 0", lambda v: v >= 0),
    "optim.min_lr": (">= 0", lambda v: v >= 0),
    "optim.clip_grad": ("> 0 (or null: off)", lambda v: v > 0),
    "optim.accum_steps": (">= 1", lambda v: v >= 1),
    "optim.label_smoothing": ("in [0, 1)", lambda v: 0 <= v < 1),
    "optim.mixup": (">= 0", lambda v: v >= 0),
    "optim.cutmix": (">= 0", lambda v: v >= 0),
    "optim.ema_decay": ("in (0, 1)", lambda v: 0 < v < 1),
    "train.epochs": (">= 1", lambda v: v >= 1),
    "train.threads": (">= 0", lambda v: v >= 0),
    "train.checkpoint_every": (">= 0", lambda v: v >= 0),
    "train.keep_checkpoints": (">= 0", lambda v: v >= 0),
    "train.eval_every": (">= 1", lambda v: v >= 1),
    "train.log_every": (">= 1", lambda v: v >= 1),
    "eval.batch_size": (">= 1", lambda v: v >= 1),
}


def _get(cfg: Config, key: str) -> Any:
    section, name = key.split(".", 1)
    return getattr(getattr(cfg, section), name)


def _where(cfg: Config, key: str) -> str:
    src = cfg.sources.get(key)
    return f" (from {src})" if src and src != "default" else ""


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


def check_config(cfg: Config) -> None:
    """Raise one :class:`ConfigError` naming every key whose value is out of range, and the
    model settings the registered model cannot take (a patch size that does not divide the
    crop, an unknown option or head)."""
    problems = []
    for key, (desc, ok) in _LIMITS.items():
        value = _get(cfg, key)
        if value is None or ok is None:
            continue
        if isinstance(value, float) and not math.isfinite(value) or not ok(value):
            problems.append(f"{key}={value!r}{_where(cfg, key)} must be {desc}")
    d = cfg.data
    scale = d.train_scale
    if scale is not None:
        if len(scale) not in (1, 2) or not scale[0] <= scale[-1]:
            problems.append(f"data.train_scale={scale}{_where(cfg, 'data.train_scale')} must be [low, high] with low <= high")
        elif d.img_size >= 1 and scale[0] < d.img_size:
            problems.append(
                f"data.train_scale={scale}{_where(cfg, 'data.train_scale')} must not go below "
                f"data.img_size={d.img_size} (crops are taken from the resized frames)"
            )
    if d.test_scale is not None and d.test_scale < d.img_size:
        problems.append(f"data.test_scale={d.test_scale}{_where(cfg, 'data.test_scale')} must be >= data.img_size={d.img_size}")
    for name in ("mean", "std"):
        value = getattr(d, name)
        if value is not None and (len(value) != 3 or not all(math.isfinite(v) for v in value)):
            problems.append(f"data.{name}={value}{_where(cfg, 'data.' + name)} must be 3 finite numbers (R, G, B)")
    if d.std is not None and any(v <= 0 for v in d.std):
        problems.append(f"data.std={d.std}{_where(cfg, 'data.std')} must be > 0")
    b = cfg.optim.betas
    if len(b) != 2 or not all(0 <= v < 1 for v in b):
        problems.append(f"optim.betas={b}{_where(cfg, 'optim.betas')} must be two numbers in [0, 1)")
    try:
        parse_views(cfg.eval.views)
    except ConfigError as e:
        problems.append(f"eval.views: {e}")
    if problems:
        raise ConfigError("; ".join(problems))
    # The model: only once the numbers themselves are sane.
    from xvit.models.registry import model_config

    try:
        model_config(cfg.model.name, num_classes=1, **model_options(cfg))
    except (TypeError, ValueError) as e:
        keys = ", ".join(f"{k}={_get(cfg, k)!r}{_where(cfg, k)}" for k in ("model.name", "data.img_size", "data.num_frames"))
        overrides = f", model.overrides={cfg.model.overrides}" if cfg.model.overrides else ""
        raise ConfigError(f"{e} ({keys}{overrides})") from None


def parse_views(views: str) -> tuple[int, int]:
    """``"3x2"`` -> (3 temporal clips, 2 spatial crops)."""
    try:
        t, s = (int(v) for v in views.lower().split("x"))
    except ValueError:
        raise ConfigError(f"views must look like TxS (e.g. 3x1), got {views!r}") from None
    if t < 1 or s < 1:
        raise ConfigError(f"views must be positive, got {views!r}")
    return t, s
