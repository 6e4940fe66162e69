"""From a :class:`~xvit.engine.run.schema.Config` to datasets: annotation formats, the built-in
synthetic data, training / validation / multi-view test datasets."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from xvit.data.text import read_user_text
from xvit.engine.run.labels import label_space, own_class_map, pretrained_classes_note
from xvit.engine.run.model import model_options
from xvit.engine.run.schema import Config, ConfigError, derived_train_scale
from xvit.models.registry import model_config

__all__ = [
    "TrainData",
    "build_datasets",
    "build_eval_dataset",
    "build_train_dataset",
    "cache_dir",
    "label_space",  # from xvit.engine.run.labels, where the label checks live
    "mirrored_class",
    "read_split",
    "resolve_format",
]


@dataclass
class TrainData:
    """The datasets of a run: training clips, per-epoch validation (one view) and the final
    multi-view test set (None: the validation set, when the views are 1x1)."""

    train: Dataset
    class_names: list[str]
    val: Dataset | None = None
    test: Dataset | None = None
    # How the validation set was made when it was held out of the training list (data.val_split).
    held_out: str = ""
    # What the data changed or warns of in the config (flips off for direction classes).
    notes: list[str] = field(default_factory=list)


def cache_dir() -> Path:
    """Where generated data goes: ``$XVIT_CACHE`` or ``~/.cache/xvit``."""
    return Path(os.environ.get("XVIT_CACHE") or Path.home() / ".cache" / "xvit")


def resolve_format(cfg: Config, path: str | None = None) -> str:
    """``data.format``, with ``auto`` resolved from the list file (synth when there is none)."""
    fmt = cfg.data.format
    path = path or cfg.data.train_list or cfg.data.val_list
    if fmt != "auto":
        return fmt
    if path is None:
        return "synth"
    p = Path(path)
    if p.is_dir():
        return "folders"
    if p.suffix == ".json":
        return "ssv2"
    if p.suffix == ".csv" and p.is_file():
        header = read_user_text(p).split("\n", 1)[0]
        if "narration_id" in header:
            return "epic100"
        if "youtube_id" in header:
            return "kinetics"
    return "list"


def _synth_lists(cfg: Config) -> tuple[str, str]:
    """The built-in synthetic dataset's list files, generated on first use."""
    from xvit.data.synth import ensure_synth

    root = Path(cfg.data.synth_dir) if cfg.data.synth_dir else cache_dir() / "synth"
    if not (root / "synth.json").exists():
        print(f"generating the synthetic dataset in {root} (once)", flush=True)
    info = ensure_synth(root, seed=0)
    return str(info.train_list), str(info.val_list)


def read_split(
    cfg: Config,
    path: str,
    class_names: list[str] | None = None,
    train_annotations: Any = None,
    against: str = "the training list",
) -> tuple[list[Any], list[str], Any]:
    """Samples (with int labels), class names and the parsed annotations of one file.

    ``class_names``: the model's classes (validation lists are read against them; ``against``
    says whose they are). A list file with its own ``classnames.txt`` that names them
    otherwise has its labels mapped by name (stated in the annotations' ``notes``) or is
    refused (names the other side lacks; :func:`~xvit.engine.run.labels.own_class_map`).
    ``train_annotations``: the training annotations (Epic-Kitchens action ids for validation).
    """
    from xvit.data import annotations as ann

    d = cfg.data
    fmt = resolve_format(cfg, path)
    if fmt == "folders":
        from xvit.data.folders import read_class_folders

        if d.multi_label:
            raise ConfigError(
                "data.multi_label=true reads list files ('path label1,label2,...'), not class folders"
            )
        result = read_class_folders(path, class_names=class_names)
        return list(result.samples), list(result.class_names), result
    if not Path(path).is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    if d.multi_label and fmt not in ("list", "synth"):
        raise ConfigError(
            f"data.multi_label=true reads list files ('path label1,label2,...'), not data.format={fmt}"
        )
    if fmt in ("list", "synth", "kinetics"):
        names = class_names if class_names is not None else d.class_names
        own = None
        if class_names is not None and fmt != "kinetics":
            own = own_class_map(path, class_names, against)
        if own is not None:
            return _read_mapped(cfg, path, list(class_names), own)
        result = ann.read_annotations(path, root=d.root, class_names=names, multi_label=d.multi_label)
    elif fmt == "ssv2":
        if not d.class_names:
            raise ConfigError("data.format=ssv2 needs data.class_names=path/to/labels.json")
        result = ann.read_ssv2(d.class_names, path, root=d.root or Path(path).parent)
    elif fmt == "epic100":
        if not d.root:
            raise ConfigError("data.format=epic100 needs data.root (the EPIC-KITCHENS frame folders)")
        actions = None
        if train_annotations is not None:
            actions = ann.epic_action_pairs(train_annotations)
        result = ann.read_epic_kitchens(path, root=d.root, actions=actions)
        names = result.class_names[d.epic_label]
        samples = [dataclasses.replace(s, label=int(s.label[d.epic_label])) for s in result.samples]
        return samples, list(names), result
    else:
        raise ConfigError(f"unknown data.format {fmt!r}")
    names = result.class_names
    if names is None:
        labels = [max(s.label) if isinstance(s.label, tuple) else s.label for s in result.samples]
        names = [str(i) for i in range(max(labels) + 1)] if labels else []
    return list(result.samples), list(names), result


def _read_mapped(
    cfg: Config, path: str, class_names: list[str], own: tuple[list[str], dict[int, int], str]
) -> tuple[list[Any], list[str], Any]:
    """A list read with its own class names, its labels mapped by name to ``class_names``."""
    from xvit.data.annotations import Annotations, read_annotations

    names, to_theirs, note = own
    result = read_annotations(path, root=cfg.data.root, class_names=names, multi_label=cfg.data.multi_label)
    samples = [
        dataclasses.replace(
            s,
            label=tuple(sorted(to_theirs[v] for v in s.label))
            if isinstance(s.label, tuple)
            else to_theirs[s.label],
        )
        for s in result.samples
    ]
    return samples, class_names, Annotations(samples, class_names, result.missing, notes=[note])


def _mean_std(cfg: Config) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation of the model ``cfg`` builds (its config is the one owner: the data
    side reads it; ``data.mean``/``data.std`` and ``model.overrides`` set it there)."""
    mc = model_config(cfg.model.name, num_classes=1, **model_options(cfg))
    return tuple(mc.mean), tuple(mc.std)


def build_train_dataset(cfg: Config, samples: list[Any], num_classes: int | None = None) -> Dataset:
    """Random clips with the training augmentation of ``cfg.data`` (``num_classes``: for
    multi-label samples, whose targets are multi-hot)."""
    from xvit.data.dataset import VideoDataset
    from xvit.data.transforms import TrainTransform

    d = cfg.data
    mean, std = _mean_std(cfg)
    transform = TrainTransform(
        crop_size=d.img_size,
        scale=tuple((d.train_scale or derived_train_scale(d.img_size))[i] for i in (0, -1)),
        flip=d.hflip,
        augment=d.auto_augment,
        erase_prob=d.random_erase,
        mean=mean,
        std=std,
    )
    return VideoDataset(
        samples,
        num_frames=d.num_frames,
        sampler=d.sampling,
        sampling_rate=d.sampling_rate,
        transform=transform,
        mode="train",
        num_classes=num_classes,
        reader_kwargs=reader_limits(cfg),
    )


def reader_limits(cfg: Config) -> dict[str, int | None]:
    """The decoding limits of ``cfg.data`` as reader arguments (0 in the config: no limit)."""
    return {
        "max_frame_pixels": cfg.data.max_frame_pixels or None,
        "max_decode_mb": cfg.data.max_decode_mb or None,
    }


def build_eval_dataset(
    cfg: Config,
    samples: list[Any],
    views: tuple[int, int],
    num_classes: int | None = None,
    *,
    log_failures: bool = True,
) -> Dataset:
    """``t x s`` test views per video (one decode per video), failures reported per item
    (``num_classes``: for multi-label samples, whose targets are multi-hot; ``log_failures``
    False: no warning logged per failure, for callers that report them themselves)."""
    from xvit.data.dataset import VideoDataset
    from xvit.data.transforms import EvalTransform

    d = cfg.data
    mean, std = _mean_std(cfg)
    transform = EvalTransform(
        crop_size=d.img_size, resize=d.test_scale or d.img_size, num_crops=views[1], mean=mean, std=std
    )
    return VideoDataset(
        samples,
        num_frames=d.num_frames,
        sampler=d.sampling,
        sampling_rate=d.sampling_rate,
        transform=transform,
        mode="eval",
        views=views,
        num_classes=num_classes,
        reader_kwargs=reader_limits(cfg),
        log_failures=log_failures,
    )


def build_datasets(cfg: Config, views: tuple[int, int]) -> TrainData:
    """Training, validation and test datasets of a run (the synthetic set when no lists)."""
    d = cfg.data
    train_list, val_list = d.train_list, d.val_list
    if resolve_format(cfg) == "synth":
        if train_list or val_list:
            raise ConfigError(
                "data.format=synth uses the built-in lists; do not set data.train_list/val_list"
            )
        train_list, val_list = _synth_lists(cfg)
    if not train_list:
        raise ConfigError("data.train_list is required (or leave both lists unset for the synthetic data)")
    samples, names, train_ann = read_split(cfg, train_list)
    if not samples:
        raise ConfigError(f"data.train_list {train_list}: no training videos in it")
    num_classes = len(names) if d.multi_label else None
    notes = _check_flips(cfg, names)
    fine_tune = pretrained_classes_note(cfg.model.pretrained, names)
    if fine_tune:
        notes.append(fine_tune)
    val_samples, held_out = None, ""
    if val_list:
        val_samples, _, val_ann = read_split(cfg, val_list, class_names=names, train_annotations=train_ann)
        notes += getattr(val_ann, "notes", [])
        if not val_samples:
            raise ConfigError(f"data.val_list {val_list}: no validation videos in it")
    elif d.val_split > 0:
        samples, val_samples = split_holdout(cfg, samples)
        held_out = (
            f"validation: {len(val_samples)} of the {len(samples) + len(val_samples)} "
            f"training videos held out (data.val_split={d.val_split}, per class, "
            f"seed train.seed={cfg.train.seed})"
        )
    data = TrainData(
        train=build_train_dataset(cfg, samples, num_classes),
        class_names=names,
        held_out=held_out,
        notes=notes,
    )
    if val_samples:
        data.val = build_eval_dataset(cfg, val_samples, (1, 1), num_classes)
        if views != (1, 1):
            data.test = build_eval_dataset(cfg, val_samples, views, num_classes)
    return data


# Words of a class name that a horizontal flip turns into another class's (left <-> right,
# clockwise <-> anticlockwise), as in Something-Something's "from left to right".
_MIRRORED_WORDS = re.compile(
    r"\b(left|right|leftwards?|rightwards?|clockwise|anti-?clockwise|counter-?clockwise)\b", re.IGNORECASE
)


def mirrored_class(names: list[str]) -> str | None:
    """The first class name that says left/right or a sense of rotation, or None."""
    for name in names:
        if _MIRRORED_WORDS.search(str(name).replace("_", " ")):
            return str(name)
    return None


def _check_flips(cfg: Config, names: list[str]) -> list[str]:
    """Horizontal flips swap left and right: off where a class name says a direction and the
    user did not ask for them (a note), kept with a warning where the user did."""
    d = cfg.data
    named = mirrored_class(names) if d.hflip else None
    if named is None:
        return []
    source = cfg.sources.get("data.hflip", "default")
    if source.startswith(("override", "flag", "file")):
        return [
            f"warning: data.hflip is on ({source}), but class {named!r} names a direction that a "
            f"horizontal flip reverses: flipped clips teach the wrong label; set data.hflip=false"
        ]
    d.hflip = False
    cfg.sources["data.hflip"] = f"off: class names say a direction ({named!r})"
    return [f"data.hflip off: class {named!r} names a direction that a horizontal flip would reverse"]


def split_holdout(cfg: Config, samples: list[Any]) -> tuple[list[Any], list[Any]]:
    """``data.val_split`` of the training samples held out per class, seeded by
    ``train.seed``: (train, val)."""
    from xvit.data.folders import stratified_split

    if not all(isinstance(s.label, int) and not isinstance(s.label, bool) for s in samples):
        raise ConfigError("data.val_split needs one class label per video; give data.val_list instead")
    train, val = stratified_split(samples, cfg.data.val_split, seed=cfg.train.seed)
    if not val:
        raise ConfigError(
            f"data.val_split={cfg.data.val_split} holds out no video (no class has two videos); "
            f"give data.val_list or more videos"
        )
    return train, val
