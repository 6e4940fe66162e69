"""Dataset annotation formats -> a list of `Sample`s plus class names.

Supported formats:

- list files (``path label`` per line, space or comma separated), as used by the released
  X-ViT code and mmaction2: :func:`read_list_file`;
- the official Kinetics-400/600/700 CSVs (``label,youtube_id,time_start,time_end,split``):
  :func:`read_kinetics_csv`;
- Something-Something-v2 JSON files (``labels.json`` + ``train.json`` / ``validation.json``):
  :func:`read_ssv2`;
- Epic-Kitchens-100 action segments (``EPIC_100_train.csv`` / ``EPIC_100_validation.csv``)
  over extracted frame folders: :func:`read_epic_kitchens`.

Every reader validates the whole file up front: a malformed line or a label outside the
class list raises :class:`AnnotationError` naming the file and the line, before any
training starts.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AnnotationError",
    "Annotations",
    "Sample",
    "epic_action_pairs",
    "kinetics_file_name",
    "read_annotations",
    "read_class_names",
    "read_epic_kitchens",
    "read_kinetics_csv",
    "read_list_file",
    "read_ssv2",
    "write_list_file",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike


class AnnotationError(ValueError):
    """An annotation file is malformed; the message names the file and line."""


@dataclass
class Sample:
    """One clip: a video file (or frame folder), its label and an optional frame/time range.

    ``label`` is an int, or for Epic-Kitchens a dict ``{"verb", "noun", "action"}``, or for
    multi-label list files a sorted tuple of class indices (one or more).
    ``start_frame``/``end_frame`` are 0-based frame indices in the reader's numbering,
    end exclusive; ``start_time``/``end_time`` are seconds (used when frames are not given).
    """

    path: str
    label: int | dict[str, int] | tuple[int, ...]
    id: str = ""
    start_frame: int | None = None
    end_frame: int | None = None
    start_time: float | None = None
    end_time: float | None = None


@dataclass
class Annotations:
    """The parsed samples, class names and the paths found missing on disk."""

    samples: list[Sample]
    class_names: list[str] | dict[str, list[str]] | None = None
    missing: list[str] = field(default_factory=list)

    @property
    def num_missing(self) -> int:
        """How many annotated videos were not found on disk (and were left out)."""
        return len(self.missing)

    @property
    def num_classes(self) -> int | dict[str, int] | None:
        """Number of classes (a dict per label kind for Epic-Kitchens)."""
        if self.class_names is None:
            return None
        if isinstance(self.class_names, dict):
            return {k: len(v) for k, v in self.class_names.items()}
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.samples)


def _error(file: PathLike, line: int | None, message: str) -> AnnotationError:
    where = f"{file}:{line}" if line is not None else f"{file}"
    return AnnotationError(f"{where}: {message}")


def _report_missing(source: PathLike, missing: list[str], total: int) -> None:
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        logger.warning(
            "%s: %d of %d videos are missing and were left out (%s)",
            source, len(missing), total, shown,
        )


def read_class_names(path: PathLike) -> list[str]:
    """Class names, one per line; line i (blank lines skipped) is class i."""
    names = [line.strip() for line in Path(path).read_text().splitlines()]
    names = [n for n in names if n]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise _error(path, None, f"duplicate class names: {dup[:5]}")
    if not names:
        raise _error(path, None, "no class names")
    return names


def _as_class_list(class_names: Sequence[str] | PathLike | None) -> list[str] | None:
    if class_names is None:
        return None
    if isinstance(class_names, (str, os.PathLike)):
        return read_class_names(class_names)
    return list(class_names)


# ---------------------------------------------------------------------------------------
# List files
# ---------------------------------------------------------------------------------------


def _parse_label(text: str, file: PathLike, line: int, names: list[str] | None,
                 index: dict[str, int] | None) -> int:
    text = text.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        label = int(text)
        if label < 0 or (names is not None and label >= len(names)):
            bound = f"[0, {len(names)})" if names is not None else ">= 0"
            raise _error(file, line, f"label {label} is outside the class list {bound}")
        return label
    if index is not None and text in index:
        return index[text]
    if index is not None:
        raise _error(file, line, f"label {text!r} is not in the class list")
    raise _error(file, line, f"label {text!r} is not an integer (give class names to use names)")


def _label_or_none(text: str, names: list[str] | None, index: dict[str, int] | None) -> int | None:
    """The class of ``text`` when it is a valid label, else None (no error)."""
    try:
        return _parse_label(text, "", 0, names, index)
    except AnnotationError:
        return None


def _split_multi_label(line: str, raw: str, file: PathLike, lineno: int, names: list[str] | None,
                       index: dict[str, int] | None) -> tuple[str, tuple[int, ...]]:
    """``path label1,label2,...`` -> the path and the sorted label set.

    The labels are the longest whitespace-separated tail of the line whose comma-separated
    items are all labels, so paths and class names may contain spaces.
    """
    cuts = [m.start() for m in re.finditer(r"\s+", line)]
    if not cuts:
        raise _error(file, lineno, f"expected 'path label1,label2,...', got {raw!r}")
    for cut in cuts:  # left to right: the longest label text first
        items = [t.strip() for t in line[cut:].split(",")]
        labels = [_label_or_none(t, names, index) for t in items]
        if all(v is not None for v in labels):
            return line[:cut].strip(), tuple(sorted(set(labels)))
    # nothing parses: report the first bad item of the shortest tail
    for item in line[cuts[-1]:].split(","):
        if not item.strip():
            raise _error(file, lineno, f"empty label in {raw!r}")
        _parse_label(item, file, lineno, names, index)
    raise _error(file, lineno, f"expected 'path label1,label2,...', got {raw!r}")


def read_list_file(
    path: PathLike,
    root: PathLike | None = None,
    class_names: Sequence[str] | PathLike | None = None,
    check_exists: bool = False,
    multi_label: bool = False,
) -> Annotations:
    """Read a list file with one clip per line: ``path label``.

    Fields are separated by a comma when the line has one, else by whitespace (the label
    is the last field, so paths may contain spaces). A three-field line ``path num label``
    (mmaction2's rawframe lists) is accepted and the middle field ignored. The label is a
    class index or, when ``class_names`` (a list or a file with one name per line) is
    given, a class name. Relative paths are joined to ``root``. Blank lines and lines
    starting with ``#`` are skipped. With ``check_exists`` missing files are left out and
    counted in ``missing``.

    ``multi_label``: each line is ``path label1,label2,...`` (Charades style: the path, white
    space, then one or more comma-separated class indices or names); the sample's label is
    the sorted tuple of its classes. ``path num_frames labels`` is accepted as above. In
    single-label mode such a line is an error that says so.
    """
    names = _as_class_list(class_names)
    index = {n: i for i, n in enumerate(names)} if names is not None else None
    samples, missing = [], []
    text = Path(path).read_text()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if multi_label:
            video, label_set = _split_multi_label(line, raw, path, lineno, names, index)
            tokens = video.split()
            if len(tokens) >= 2 and tokens[-1].isdigit():  # mmaction2 rawframes: dir num labels
                video = video.rsplit(None, 1)[0]
            rel = video
            if root is not None and not os.path.isabs(video):
                video = os.path.join(os.fspath(root), video)
            if check_exists and not os.path.exists(video):
                missing.append(video)
                continue
            samples.append(Sample(path=video, label=label_set, id=os.path.basename(rel)))
            continue
        if "," in line:
            fields = [f.strip() for f in line.split(",")]
            head = fields[0].split()
            if len(fields) >= 2 and len(head) >= 2 and _label_or_none(head[-1], names, index) is not None:
                raise _error(path, lineno, f"{raw!r} looks like several labels; multi-label list "
                                           "files need data.multi_label=true")
        else:
            tokens = line.split()
            # ``dir num_frames label`` (mmaction2 rawframes) vs a path with spaces.
            rawframes = len(tokens) >= 3 and tokens[-2].isdigit()
            fields = line.rsplit(None, 2 if rawframes else 1)
        if len(fields) == 3 and fields[1].isdigit():
            fields = [fields[0], fields[2]]
        if len(fields) != 2 or not fields[0]:
            raise _error(path, lineno, f"expected 'path label', got {raw!r}")
        label = _parse_label(fields[1], path, lineno, names, index)
        video = fields[0]
        if root is not None and not os.path.isabs(video):
            video = os.path.join(os.fspath(root), video)
        if check_exists and not os.path.exists(video):
            missing.append(video)
            continue
        samples.append(Sample(path=video, label=label, id=os.path.basename(fields[0])))
    _report_missing(path, missing, len(samples) + len(missing))
    return Annotations(samples, names, missing)


def write_list_file(path: PathLike, samples: Sequence[Sample], root: PathLike | None = None) -> None:
    """Write samples with int labels (``path label``) or label tuples (``path l1,l2``, a
    multi-label list) as a list file (paths relative to root)."""
    lines = []
    for s in samples:
        if isinstance(s.label, tuple) and s.label and all(isinstance(v, int) for v in s.label):
            label = ",".join(str(v) for v in s.label)
        elif isinstance(s.label, int):
            label = str(s.label)
        else:
            raise ValueError(f"{s.path}: list files hold int labels or tuples of them, got {s.label!r}")
        p = os.path.relpath(s.path, root) if root is not None else s.path
        lines.append(f"{p} {label}")
    Path(path).write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------
# Kinetics
# ---------------------------------------------------------------------------------------

_KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def kinetics_file_name(youtube_id: str, start: int, end: int, ext: str = ".mp4") -> str:
    """The usual trimmed-clip file name: ``{youtube_id}_{start:06d}_{end:06d}.mp4``."""
    return f"{youtube_id}_{start:06d}_{end:06d}{ext}"


def read_kinetics_csv(
    csv_path: PathLike,
    root: PathLike,
    class_names: Sequence[str] | PathLike | None = None,
    ext: str = ".mp4",
    check_exists: bool = True,
) -> Annotations:
    """Read an official Kinetics-400/600/700 CSV (``label,youtube_id,time_start,time_end,split``).

    Videos are the trimmed clips ``{root}/{youtube_id}_{start:06d}_{end:06d}{ext}``, or the
    same name in a per-label folder ``{root}/{label}/`` (either layout, or ``label`` with
    spaces replaced by underscores). Classes are the sorted label names of this CSV unless
    ``class_names`` is given (pass the training classes when reading the validation CSV).
    Missing videos are left out, counted in ``missing`` and reported once, here.
    A CSV without labels (the test split) gets label -1.
    """
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise _error(csv_path, None, "empty file")
    header = [h.strip() for h in rows[0]]
    has_label = "label" in header
    required = _KINETICS_COLUMNS if has_label else _KINETICS_COLUMNS[1:]
    for col in required:
        if col not in header:
            raise _error(csv_path, 1, f"missing column {col!r} (header is {header})")
    col = {name: header.index(name) for name in header}

    names = _as_class_list(class_names)
    if names is None and has_label:
        names = sorted({r[col["label"]].strip() for r in rows[1:] if len(r) == len(header)})
    index = {n: i for i, n in enumerate(names)} if names is not None else {}

    root = os.fspath(root)
    samples, missing = [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not any(x.strip() for x in row):
            continue
        if len(row) != len(header):
            raise _error(csv_path, lineno, f"expected {len(header)} fields, got {len(row)}: {row}")
        try:
            start = int(float(row[col["time_start"]]))
            end = int(float(row[col["time_end"]]))
        except ValueError:
            raise _error(csv_path, lineno, f"time_start/time_end are not numbers: {row}") from None
        yid = row[col["youtube_id"]].strip()
        name = kinetics_file_name(yid, start, end, ext)
        label, label_name = -1, None
        if has_label:
            label_name = row[col["label"]].strip()
            if label_name not in index:
                raise _error(csv_path, lineno, f"label {label_name!r} is not in the class list")
            label = index[label_name]
        candidates = [os.path.join(root, name)]
        if label_name is not None:
            candidates += [os.path.join(root, label_name, name),
                           os.path.join(root, label_name.replace(" ", "_"), name)]
        found = next((c for c in candidates if os.path.exists(c)), None)
        if found is None and check_exists:
            missing.append(candidates[0])
            continue
        samples.append(Sample(path=found or candidates[0], label=label, id=name[: -len(ext)]))
    _report_missing(csv_path, missing, len(samples) + len(missing))
    return Annotations(samples, names, missing)


# ---------------------------------------------------------------------------------------
# Something-Something-v2
# ---------------------------------------------------------------------------------------


def _load_json(path: PathLike):
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise _error(path, e.lineno, f"invalid JSON: {e.msg}") from None


def read_ssv2(
    labels_json: PathLike,
    split_json: PathLike,
    root: PathLike,
    ext: str = ".webm",
    check_exists: bool = False,
) -> Annotations:
    """Read Something-Something-v2: ``labels.json`` (template -> id) and a split file.

    Split entries are ``{"id", "label", "template", "placeholders"}``; the class is the
    template with its ``[something]`` brackets removed, looked up in ``labels.json``.
    Entries without a template (the test split) get label -1. Videos are
    ``{root}/{id}{ext}``. Errors name the entry (``file:entry N``).
    """
    templates = _load_json(labels_json)
    if not isinstance(templates, dict):
        raise _error(labels_json, None, "expected an object mapping templates to ids")
    names_by_id: dict[int, str] = {}
    for template, idx in templates.items():
        try:
            names_by_id[int(idx)] = template
        except (TypeError, ValueError):
            raise _error(labels_json, None, f"id {idx!r} of {template!r} is not an integer") from None
    ids = sorted(names_by_id)
    if ids != list(range(len(ids))):
        raise _error(labels_json, None, "class ids must be 0..N-1")
    names = [names_by_id[i] for i in ids]
    index = {n: i for i, n in enumerate(names)}

    entries = _load_json(split_json)
    if not isinstance(entries, list):
        raise _error(split_json, None, "expected a list of entries")
    root = os.fspath(root)
    samples, missing = [], []
    for n, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or "id" not in entry:
            raise _error(split_json, None, f"entry {n}: expected an object with an 'id', got {entry!r}")
        label = -1
        if "template" in entry:
            template = str(entry["template"]).replace("[", "").replace("]", "")
            if template not in index:
                raise _error(split_json, None,
                             f"entry {n} (id {entry['id']}): template {template!r} not in {labels_json}")
            label = index[template]
        path = os.path.join(root, f"{entry['id']}{ext}")
        if check_exists and not os.path.exists(path):
            missing.append(path)
            continue
        samples.append(Sample(path=path, label=label, id=str(entry["id"])))
    _report_missing(split_json, missing, len(samples) + len(missing))
    return Annotations(samples, names, missing)


# ---------------------------------------------------------------------------------------
# Epic-Kitchens-100
# ---------------------------------------------------------------------------------------

_EPIC_COLUMNS = ("narration_id", "participant_id", "video_id", "start_frame", "stop_frame",
                 "verb_class", "noun_class")


def _read_epic_class_csv(path: PathLike) -> list[str]:
    """``EPIC_100_verb_classes.csv`` / ``..._noun_classes.csv``: columns id, key, ..."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    names = {}
    for lineno, row in enumerate(rows, start=2):
        try:
            names[int(row["id"])] = row["key"]
        except (KeyError, ValueError, TypeError):
            raise _error(path, lineno, f"expected columns id,key: {row}") from None
    if sorted(names) != list(range(len(names))):
        raise _error(path, None, "class ids must be 0..N-1")
    return [names[i] for i in range(len(names))]


def _read_actions(actions: PathLike | Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    if not isinstance(actions, (str, os.PathLike)):
        return [(int(v), int(n)) for v, n in actions]
    with open(actions, newline="") as f:
        rows = list(csv.DictReader(f))
    pairs: dict[int, tuple[int, int]] = {}
    for lineno, row in enumerate(rows, start=2):
        try:
            key = int(row["id"]) if "id" in row else lineno - 2
            pairs[key] = (int(row["verb"]), int(row["noun"]))
        except (KeyError, ValueError, TypeError):
            raise _error(actions, lineno, f"expected columns [id,]verb,noun: {row}") from None
    if sorted(pairs) != list(range(len(pairs))):
        raise _error(actions, None, "action ids must be 0..N-1")
    return [pairs[i] for i in range(len(pairs))]


def read_epic_kitchens(
    csv_path: PathLike,
    root: PathLike,
    actions: PathLike | Sequence[tuple[int, int]] | None = None,
    verb_classes: PathLike | None = None,
    noun_classes: PathLike | None = None,
    num_verbs: int = 97,
    num_nouns: int = 300,
) -> Annotations:
    """Read Epic-Kitchens-100 action segments over extracted frame folders.

    Each row becomes a sample on ``{root}/{participant_id}/rgb_frames/{video_id}`` (frames
    ``frame_0000000001.jpg``...) with ``start_frame = start_frame - 1`` and
    ``end_frame = stop_frame`` (EPIC numbers frames from 1, inclusive; samples count from 0,
    end exclusive). The label is ``{"verb", "noun", "action"}``; the action id indexes
    ``actions`` (a list of (verb, noun) pairs or a CSV with columns ``[id,]verb,noun``),
    by default the sorted unique pairs of this file (read the training file first and pass
    its ``class_names["action"]`` pairs for validation). A pair not in the action list gets
    action -1 (it cannot be scored as an action). Verb/noun names come from the official
    class CSVs when given, else from ``num_verbs``/``num_nouns``.
    """
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise _error(csv_path, None, "empty file")
    header = [h.strip() for h in rows[0]]
    for c in _EPIC_COLUMNS:
        if c not in header:
            raise _error(csv_path, 1, f"missing column {c!r} (header is {header})")
    col = {name: header.index(name) for name in header}
    verbs = _read_epic_class_csv(verb_classes) if verb_classes else [str(i) for i in range(num_verbs)]
    nouns = _read_epic_class_csv(noun_classes) if noun_classes else [str(i) for i in range(num_nouns)]

    parsed = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not any(x.strip() for x in row):
            continue
        if len(row) != len(header):
            raise _error(csv_path, lineno, f"expected {len(header)} fields, got {len(row)}")
        try:
            start, stop = int(row[col["start_frame"]]), int(row[col["stop_frame"]])
            verb, noun = int(row[col["verb_class"]]), int(row[col["noun_class"]])
        except ValueError:
            raise _error(csv_path, lineno,
                         "start_frame, stop_frame, verb_class and noun_class must be integers") from None
        if start < 1 or stop < start:
            raise _error(csv_path, lineno, f"bad frame range start_frame={start} stop_frame={stop}")
        if not 0 <= verb < len(verbs):
            raise _error(csv_path, lineno, f"verb_class {verb} is outside the class list [0, {len(verbs)})")
        if not 0 <= noun < len(nouns):
            raise _error(csv_path, lineno, f"noun_class {noun} is outside the class list [0, {len(nouns)})")
        parsed.append((row, start, stop, verb, noun))

    pairs = _read_actions(actions) if actions is not None else sorted({(p[3], p[4]) for p in parsed})
    action_index = {p: i for i, p in enumerate(pairs)}
    root = os.fspath(root)
    samples = []
    for row, start, stop, verb, noun in parsed:
        folder = os.path.join(root, row[col["participant_id"]], "rgb_frames", row[col["video_id"]])
        samples.append(Sample(
            path=folder,
            label={"verb": verb, "noun": noun, "action": action_index.get((verb, noun), -1)},
            id=row[col["narration_id"]],
            start_frame=start - 1,
            end_frame=stop,
        ))
    names = {"verb": verbs, "noun": nouns, "action": [f"{v},{n}" for v, n in pairs]}
    return Annotations(samples, names)


def epic_action_pairs(annotations: Annotations) -> list[tuple[int, int]]:
    """The (verb, noun) pair of each action id of Epic-Kitchens annotations."""
    assert isinstance(annotations.class_names, dict)
    return [tuple(int(x) for x in a.split(",")) for a in annotations.class_names["action"]]


def read_annotations(path: PathLike, root: PathLike | None = None,
                     class_names: Sequence[str] | PathLike | None = None,
                     multi_label: bool = False) -> Annotations:
    """Read a list file, or a Kinetics CSV (by its header), with an optional root/class list.

    A list file next to a ``classnames.txt`` picks the class names up automatically.
    ``multi_label``: a multi-label list file (see :func:`read_list_file`).
    """
    path = Path(path)
    first = path.read_text().split("\n", 1)[0]
    if path.suffix == ".csv" and "youtube_id" in first:
        if multi_label:
            raise _error(path, None, "multi-label annotations are read from list files "
                                     "('path label1,label2,...'), not Kinetics CSVs")
        if root is None:
            root = path.parent
        return read_kinetics_csv(path, root, class_names)
    if class_names is None and (path.parent / "classnames.txt").exists():
        class_names = path.parent / "classnames.txt"
    if root is None:
        root = path.parent
    return read_list_file(path, root, class_names, multi_label=multi_label)
