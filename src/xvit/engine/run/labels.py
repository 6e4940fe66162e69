"""How a list's labels meet a model's classes.

Wherever a model meets a list (``xvit eval``, a training run's validation list, ``xvit
predict --list``, ``xvit extract --list``, ``xvit quantize --list``, fine-tuning from a saved
model) the two label spaces are compared before any work:

- :func:`label_space`: every label is one of the model's classes, else a
  :class:`~xvit.engine.run.schema.ConfigError` naming both sides; a list that uses fewer
  classes than the model (evaluating on a subset) is legitimate and described;
- :func:`own_class_map`: a list whose own ``classnames.txt`` (beside it) names its classes
  otherwise than the classes it is read against: its labels mean its own names, so they are
  mapped by name (a reordered or smaller class list: stated), and names the other side lacks
  are refused naming both;
- :func:`check_listed_labels`: the labels of a video list (``path label`` lines given to
  ``predict --list`` or ``extract --list``), by index or by name;
- :func:`pretrained_classes_note`: fine-tuning from a ``save_pretrained`` directory: its
  head is not loaded (a new head for the list's classes); the note names both class lists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xvit.data.samples import Sample, class_list_note, read_class_names
from xvit.engine.run.schema import ConfigError

__all__ = [
    "CLASS_NAMES_FILE",
    "check_listed_labels",
    "label_space",
    "own_class_map",
    "pretrained_classes_note",
]

# The class-name file a list file picks up from its own folder (xvit.data.annotations).
CLASS_NAMES_FILE = "classnames.txt"


def label_space(samples: list[Any], num_classes: int, list_file: Any, model_name: Any) -> dict[str, Any]:
    """How a list's labels meet a model's classes. A label the model cannot produce is a
    :class:`ConfigError` naming both sides; a list that uses fewer classes than the model has
    (evaluating on a subset: top-1 is still exact, mean class accuracy covers the list's
    classes) is legitimate and described in the returned dict (for the report and
    metrics.json): ``model_classes``, ``list_classes``, ``subset``."""
    used: set[int] = set()
    for s in samples:
        labels = s.label if isinstance(s.label, tuple) else (s.label,)
        used.update(int(v) for v in labels if isinstance(v, int) and not isinstance(v, bool))
    outside = sorted(v for v in used if not 0 <= v < num_classes)
    if outside:
        bad = next(
            s for s in samples if set(s.label if isinstance(s.label, tuple) else (s.label,)) & set(outside)
        )
        raise ConfigError(
            f"{list_file}: label {outside[-1]} (video {bad.path}) is outside the model's classes: "
            f"{model_name} has {num_classes} classes (0-{num_classes - 1}), the list uses labels "
            f"up to {max(used)} ({len(used)} distinct); use the model trained on these labels"
        )
    return {"model_classes": num_classes, "list_classes": len(used), "subset": len(used) < num_classes}


def own_class_map(
    list_file: str | Path, classes: Sequence[str], against: str
) -> tuple[list[str], dict[int, int], str] | None:
    """The list's own class names (``classnames.txt`` beside ``list_file``) against the
    ``classes`` it is read against (``against``: whose they are, for messages).

    None when there is no such file or it names the same classes in the same order. Else
    ``(own names, own index -> index in classes, note)``: its labels mean its own names, so
    they are mapped by name, and the note states it. Own names that ``classes`` lacks are a
    :class:`ConfigError` naming both lists.
    """
    own_file = Path(list_file).parent / CLASS_NAMES_FILE
    if not own_file.is_file():
        return None
    own = read_class_names(own_file)
    classes = [str(c) for c in classes]
    if own == classes:
        return None
    index = {name: i for i, name in enumerate(classes)}
    lacking = [n for n in own if n not in index]
    if lacking:
        shown = ", ".join(repr(n) for n in lacking[:5]) + (", ..." if len(lacking) > 5 else "")
        raise ConfigError(
            f"{list_file}: its class-name file {own_file} names classes that {against} does not "
            f"have ({shown}); the list has {_classes(own)}, {against} has {_classes(classes)}: use "
            f"the model trained on these classes, or a class-name file with {against}'s names"
        )
    how = (
        f"names {len(own)} of {against}'s {len(classes)} classes"
        if len(own) < len(classes)
        else f"orders {against}'s {len(classes)} classes otherwise"
    )
    note = f"{list_file}: its own {own_file} {how}; its labels were mapped to {against}'s classes by name"
    return own, {i: index[n] for i, n in enumerate(own)}, note


def check_listed_labels(
    listed: Sequence[Any],
    num_classes: int,
    class_names: Sequence[str] | None,
    list_file: Any,
    model_name: Any,
) -> dict[str, Any] | None:
    """The labels of a video list (``ListedVideo``: path, label texts, line) against a model:
    an index in range or one of its class names (an index means the list's own
    ``classnames.txt`` name when there is one, see :func:`own_class_map`). A label the model
    cannot produce is a :class:`ConfigError` naming the line, the label and the model's
    classes. Returns :func:`label_space`'s description, or None when no line has a label."""
    if not any(v.labels for v in listed):
        return None
    names = [str(c) for c in class_names] if class_names else None
    mapping = own_class_map(list_file, names, str(model_name)) if names else None
    own = mapping[0] if mapping else None
    index = {n: i for i, n in enumerate(names or [])}
    samples = []
    for video in listed:
        labels = []
        for text in video.labels:
            text = text.strip()
            if text.lstrip("+-").isdigit():
                value = int(text)
                if own is not None:
                    if not 0 <= value < len(own):
                        raise ConfigError(
                            f"{list_file}:{video.line}: label {value} (video {video.path}) is outside "
                            f"its class-name file {Path(list_file).parent / CLASS_NAMES_FILE} "
                            f"({_classes(own)})"
                        )
                    value = mapping[1][value]
                elif not 0 <= value < num_classes:
                    raise ConfigError(
                        f"{list_file}:{video.line}: label {value} (video {video.path}) is outside "
                        f"{model_name}'s classes: it has {num_classes} (0-{num_classes - 1})"
                        + (f": {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}" if names else "")
                    )
                labels.append(value)
            elif text in index:
                labels.append(index[text])
            else:
                theirs = _classes(names) if names else f"{num_classes} unnamed classes (0-{num_classes - 1})"
                raise ConfigError(
                    f"{list_file}:{video.line}: label {text!r} (video {video.path}) is not one of "
                    f"{model_name}'s classes: it has {theirs}"
                )
        samples.append(Sample(path=video.path, label=tuple(labels)))
    return label_space(samples, num_classes, list_file, model_name)


def pretrained_classes_note(pretrained: str | None, class_names: Sequence[str]) -> str | None:
    """Fine-tuning from a ``save_pretrained`` directory (a finished run, a converted model):
    a note saying that its head (``head.*``: the temporal head and the classifier) is not
    loaded, as for image weights, and, when the list's classes are not its classes, which they
    are on both sides. None for image weights and names."""
    if not pretrained:
        return None
    config = Path(pretrained) / "config.json"
    if not config.is_file():
        return None
    try:
        saved = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the weights loader reports the file
    if not isinstance(saved, dict) or "num_classes" not in saved:
        return None
    theirs = [str(c) for c in saved.get("class_names") or []]
    ours = [str(c) for c in class_names]
    if theirs == ours:
        return (
            f"model.pretrained {pretrained}: its backbone is loaded, its head (temporal head and "
            f"classifier) is not: a new head for the list's {len(ours)} classes, the same as its own"
        )
    described = _classes(theirs) if theirs else f"{saved['num_classes']} unnamed classes"
    return (
        f"model.pretrained {pretrained} was trained on {described}; the list has "
        f"{_classes(ours)}: its backbone is loaded, its head (temporal head and classifier) is "
        f"not: a new head for the list's classes"
    )


def _classes(names: Sequence[str]) -> str:
    """``3 classes: a, b, c`` (the first eight of a long list)."""
    return class_list_note(list(names))[2:-1]
