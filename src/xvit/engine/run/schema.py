"""The configuration schema: a :class:`Config` with five sections as dataclasses, each field
with its default and a comment, the fields that take one of a few values (``choices``), the
built-in synthetic recipe, and the plain-dict form of a config.

A run is described by one :class:`Config` with four sections (``model``, ``data``, ``optim``,
``train``) and an ``eval`` section for the final multi-view test. The dataclass defaults
follow the released X-ViT recipe (SGD, base lr 0.03 per 64 clips, cosine with 5 warm-up
epochs); YAML recipes in ``configs/`` start from them. Without a config file, ``xvit train``
starts from :data:`SYNTHETIC_RECIPE` instead (the same values as ``configs/synthetic.yaml``):
a tiny X-ViT on the built-in synthetic temporal-reasoning dataset. How values are set by key
is :mod:`xvit.engine.run.coerce`, how a run's config is resolved from its layers is
:mod:`xvit.engine.run.config`, the range and model checks :mod:`xvit.engine.run.checks`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from xvit.data.cores import default_workers
from xvit.engine.run.metrics import FUSE_MODES
from xvit.engine.run.precision import AMP_MODES
from xvit.models.heads import HEAD_TYPES

__all__ = [
    "RELEASED_TRAIN_SCALE",
    "SCRATCH_RECIPE",
    "SYNTHETIC_RECIPE",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "config_to_dict",
    "copy_config",
    "derived_train_scale",
    "get_value",
    "parse_views",
    "sections",
    "valid_keys",
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
    head: str = field(default="ta", metadata=_choices(*HEAD_TYPES))
    # ImageNet / released weights: a weights file, a save_pretrained directory, a registry name
    # or tag (`xvit models --weights`) or hf-hub:ORG/NAME.
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
    # Clips per process and step; data loading worker processes (default: one core of this
    # process's share left for compute, at most 4; 2 cores -> 1 worker).
    batch_size: int = 8
    workers: int = field(default_factory=default_workers)
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
    # The head's learning rate as a multiple of the peak rate; null: the head's own
    # (xvit.models.heads.HEAD_LR_SCALE: 0.03 for the temporal-attention head, whose attention
    # block at the full rate collapses every video to one output; 1 for avg / linear).
    head_lr_scale: float | None = None
    # Layer-wise learning-rate decay (BEiT): block i of D at layer_decay ** (D - i), the
    # embeddings at layer_decay ** (D + 1); 1: off.
    layer_decay: float = 1.0
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
    amp: str = field(default="auto", metadata=_choices(*AMP_MODES))
    # Write a resumable checkpoint every N optimiser steps (0: only at epoch ends).
    checkpoint_every: int = 1000
    # How many step checkpoints to keep (0: all).
    keep_checkpoints: int = 2
    # Validate every N epochs (and always after the last one).
    eval_every: int = 1
    # Stop after this many collapsed epochs in a row (the loss at chance with one predicted
    # class or the same output for every video; each such epoch is reported); 0: never stop.
    collapse_patience: int = 3
    log_every: int = 20
    tensorboard: bool = True


@dataclass
class EvalConfig:
    """The final multi-view evaluation of a run (and the defaults of `xvit eval`)."""

    # t x s: t temporal clips evenly spread, s spatial crops.
    views: str = "1x1"
    fuse: str = field(default="prob", metadata=_choices(*FUSE_MODES))
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
    # Which recipe lies under the user's layers (RECIPES: "scratch", "fine-tune", "synthetic");
    # filled by load_config, "" for a config built in Python.
    recipe: str = field(default="", repr=False, compare=False)


# How a model trains from random weights (model.pretrained null): the layer load_config puts
# under a run's file, overrides and flags when the model starts from scratch, in place of the
# schema defaults' released recipe (SGD at 0.03 per 64 clips, 5 warm-up epochs and head
# dropout 0.5: a recipe for fine-tuning a backbone initialised from ImageNet-21k, on which a
# model from random weights stays at chance). AdamW with weight decay 0.05, warm-up, gradient
# clipping and no head dropout, as DeiT and timm train ViTs from scratch; the rate is scaled
# linearly with the total batch (1e-3 per 16 clips).
SCRATCH_RECIPE: dict[str, dict[str, Any]] = {
    "model": {"head_drop_rate": 0.0},
    "optim": {
        "name": "adamw",
        "base_lr": 1.0e-3,
        "base_batch_size": 16,
        "weight_decay": 0.05,
        "warmup_epochs": 1.0,
        "clip_grad": 1.0,
    },
}

# The recipe `xvit train` runs without a config file (configs/synthetic.yaml holds the same
# values): a tiny X-ViT (4 layers of width 96, 8x8 patches) on the built-in synthetic
# temporal-reasoning dataset, 8 frames of 32x32, 25 epochs, about six minutes on
# two CPU cores, trained with the from-scratch optimiser (SCRATCH_RECIPE).
SYNTHETIC_RECIPE: dict[str, dict[str, Any]] = {
    "model": {
        "name": "xvit_tiny_patch16",
        "head": "avg",
        **SCRATCH_RECIPE["model"],
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
    },
    "optim": dict(SCRATCH_RECIPE["optim"]),
    # 25 epochs: at 15, five seeds reached 91.0 / 93.0 / 88.5 / 90.5 / 99.0% (the cosine schedule
    # ends before the slower seeds have learned the time-reversed pairs); at 25, 98.0 / 100.0 /
    # 99.5 / 98.0 / 98.0% (docs/training.md)
    "train": {"out": "runs/default", "epochs": 25, "checkpoint_every": 0},
    "eval": {"views": "1x1"},
}


def sections() -> dict[str, type]:
    """The sections of :class:`Config` and their dataclasses, in order."""
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if f.name not in ("sources", "recipe")}


def valid_keys() -> list[str]:
    """Every dotted key of the schema, e.g. ``optim.lr``."""
    keys = []
    for section, cls in sections().items():
        keys += [f"{section}.{f.name}" for f in dataclasses.fields(cls)]
    return keys


def get_value(cfg: Config, key: str) -> Any:
    """The value of dotted key ``key`` (``section.name``)."""
    section, name = key.split(".", 1)
    return getattr(getattr(cfg, section), name)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The config as a nested dict of plain values (YAML/JSON ready)."""
    data = dataclasses.asdict(cfg)
    data.pop("sources", None)
    data.pop("recipe", None)
    return data


def copy_config(cfg: Config) -> Config:
    """A deep copy of ``cfg`` (no list or dict shared)."""
    data = config_to_dict(cfg)
    return Config(
        **{name: cls(**data[name]) for name, cls in sections().items()},
        sources=dict(cfg.sources),
        recipe=cfg.recipe,
    )


# The released recipe's training scale jitter for 224-pixel crops, in proportion to the crop.
RELEASED_TRAIN_SCALE = (256 / 224, 320 / 224)


def derived_train_scale(img_size: int) -> list[int]:
    """``data.train_scale`` when unset: the released 256-320 for 224, scaled to ``img_size``."""
    return [round(img_size * r) for r in RELEASED_TRAIN_SCALE]


def parse_views(views: str) -> tuple[int, int]:
    """``"3x2"`` -> (3 temporal clips, 2 spatial crops)."""
    try:
        t, s = (int(v) for v in views.lower().split("x"))
    except ValueError:
        raise ConfigError(f"views must look like TxS (e.g. 3x1), got {views!r}") from None
    if t < 1 or s < 1:
        raise ConfigError(f"views must be positive, got {views!r}")
    return t, s
