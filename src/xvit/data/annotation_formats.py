"""Readers of the public datasets' own annotation files.

- the official Kinetics-400/600/700 CSVs (``label,youtube_id,time_start,time_end,split``):
  :func:`read_kinetics_csv`;
- Something-Something-v2 JSON files (``labels.json`` + ``train.json`` / ``validation.json``):
  :func:`read_ssv2`;
- Epic-Kitchens-100 action segments (``EPIC_100_train.csv`` / ``EPIC_100_validation.csv``)
  over extracted frame folders: :func:`read_epic_kitchens`.

Each validates the whole file up front (:class:`~xvit.data.errors.AnnotationError` naming
the file and line) and returns :class:`~xvit.data.samples.Annotations`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence

from xvit.data.errors import PathLike
from xvit.data.samples import (
    Annotations,
    Sample,
    annotation_error,
    as_class_list,
    class_list_note,
    report_missing,
)
from xvit.data.text import read_user_text

__all__ = [
    "epic_action_pairs",
    "kinetics_file_name",
    "read_epic_kitchens",
    "read_kinetics_csv",
    "read_ssv2",
]


def _read_table(csv_path: PathLike) -> tuple[list[list[str]], list[str]]:
    """The rows of a CSV file, every cell stripped, and its header; an empty file is an error.
    A space after a comma (as people type CSV) is not part of the next field, so a quoted
    field after it stays one field (``a, "b, c"``: two fields)."""
    text = read_user_text(csv_path)
    rows = [[c.strip() for c in row] for row in csv.reader(io.StringIO(text), skipinitialspace=True)]
    if not rows:
        raise annotation_error(csv_path, None, "empty file")
    return rows, rows[0]


def _columns(csv_path: PathLike, header: list[str], required: Sequence[str]) -> dict[str, int]:
    """Column name -> index; a missing ``required`` column is an error on line 1."""
    for c in required:
        if c not in header:
            raise annotation_error(csv_path, 1, f"missing column {c!r} (header is {header})")
    return {name: header.index(name) for name in header}


def _data_rows(
    csv_path: PathLike, rows: list[list[str]], header: list[str], show_row: bool
) -> Iterator[tuple[int, list[str]]]:
    """The non-blank rows after the header with their line numbers; a row with another number
    of fields than the header is an error (quoting the row when ``show_row``)."""
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not any(x.strip() for x in row):
            continue
        if len(row) != len(header):
            shown = f": {row}" if show_row else ""
            raise annotation_error(csv_path, lineno, f"expected {len(header)} fields, got {len(row)}{shown}")
        yield lineno, row


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
    rows, header = _read_table(csv_path)
    has_label = "label" in header
    col = _columns(csv_path, header, _KINETICS_COLUMNS if has_label else _KINETICS_COLUMNS[1:])

    names = as_class_list(class_names)
    if names is None and has_label:
        names = sorted({r[col["label"]].strip() for r in rows[1:] if len(r) == len(header)})
    index = {n: i for i, n in enumerate(names)} if names is not None else {}

    root = os.fspath(root)
    samples, missing = [], []
    for lineno, row in _data_rows(csv_path, rows, header, show_row=True):
        try:
            start = int(float(row[col["time_start"]]))
            end = int(float(row[col["time_end"]]))
        except ValueError:
            raise annotation_error(csv_path, lineno, f"time_start/time_end are not numbers: {row}") from None
        yid = row[col["youtube_id"]].strip()
        name = kinetics_file_name(yid, start, end, ext)
        label, label_name = -1, None
        if has_label:
            label_name = row[col["label"]].strip()
            if label_name not in index:
                raise annotation_error(
                    csv_path, lineno, f"label {label_name!r} is not in the class list{class_list_note(names)}"
                )
            label = index[label_name]
        candidates = [os.path.join(root, name)]
        if label_name is not None:
            candidates += [
                os.path.join(root, label_name, name),
                os.path.join(root, label_name.replace(" ", "_"), name),
            ]
        found = next((c for c in candidates if os.path.exists(c)), None)
        if found is None and check_exists:
            missing.append(candidates[0])
            continue
        samples.append(Sample(path=found or candidates[0], label=label, id=name[: -len(ext)]))
    report_missing(csv_path, missing, len(samples) + len(missing))
    return Annotations(samples, names, missing)


# ---------------------------------------------------------------------------------------
# Something-Something-v2
# ---------------------------------------------------------------------------------------


def _load_json(path: PathLike):
    try:
        return json.loads(read_user_text(path))
    except json.JSONDecodeError as e:
        raise annotation_error(path, e.lineno, f"invalid JSON: {e.msg}") from None


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
        raise annotation_error(labels_json, None, "expected an object mapping templates to ids")
    names_by_id: dict[int, str] = {}
    for template, idx in templates.items():
        text = str(idx).strip() if isinstance(idx, (int, str)) and not isinstance(idx, bool) else ""
        if not (text.isascii() and text.isdigit()):  # "3" or 3; not 1.5, true or null (int() truncates)
            raise annotation_error(labels_json, None, f"id {idx!r} of {template!r} is not an integer")
        if int(text) in names_by_id:
            raise annotation_error(
                labels_json,
                None,
                f"id {int(text)} is given to both {names_by_id[int(text)]!r} and {template!r}",
            )
        names_by_id[int(text)] = template
    ids = sorted(names_by_id)
    if ids != list(range(len(ids))):
        raise annotation_error(labels_json, None, "class ids must be 0..N-1")
    names = [names_by_id[i] for i in ids]
    index = {n: i for i, n in enumerate(names)}

    entries = _load_json(split_json)
    if not isinstance(entries, list):
        raise annotation_error(split_json, None, "expected a list of entries")
    root = os.fspath(root)
    samples, missing = [], []
    for n, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or "id" not in entry:
            raise annotation_error(
                split_json, None, f"entry {n}: expected an object with an 'id', got {entry!r}"
            )
        label = -1
        if "template" in entry:
            template = str(entry["template"]).replace("[", "").replace("]", "")
            if template not in index:
                raise annotation_error(
                    split_json,
                    None,
                    f"entry {n} (id {entry['id']}): template {template!r} not in {labels_json}",
                )
            label = index[template]
        path = os.path.join(root, f"{entry['id']}{ext}")
        if check_exists and not os.path.exists(path):
            missing.append(path)
            continue
        samples.append(Sample(path=path, label=label, id=str(entry["id"])))
    report_missing(split_json, missing, len(samples) + len(missing))
    return Annotations(samples, names, missing)


# ---------------------------------------------------------------------------------------
# Epic-Kitchens-100
# ---------------------------------------------------------------------------------------

_EPIC_COLUMNS = (
    "narration_id",
    "participant_id",
    "video_id",
    "start_frame",
    "stop_frame",
    "verb_class",
    "noun_class",
)


def _read_epic_class_csv(path: PathLike) -> list[str]:
    """``EPIC_100_verb_classes.csv`` / ``..._noun_classes.csv``: columns id, key, ..."""
    rows = list(csv.DictReader(io.StringIO(read_user_text(path)), skipinitialspace=True))
    names = {}
    for lineno, row in enumerate(rows, start=2):
        try:
            names[int(row["id"])] = row["key"]
        except (KeyError, ValueError, TypeError):
            raise annotation_error(path, lineno, f"expected columns id,key: {row}") from None
    if sorted(names) != list(range(len(names))):
        raise annotation_error(path, None, "class ids must be 0..N-1")
    return [names[i] for i in range(len(names))]


def _read_actions(actions: PathLike | Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    if not isinstance(actions, (str, os.PathLike)):
        return [(int(v), int(n)) for v, n in actions]
    rows = list(csv.DictReader(io.StringIO(read_user_text(actions)), skipinitialspace=True))
    pairs: dict[int, tuple[int, int]] = {}
    for lineno, row in enumerate(rows, start=2):
        try:
            key = int(row["id"]) if "id" in row else lineno - 2
            pairs[key] = (int(row["verb"]), int(row["noun"]))
        except (KeyError, ValueError, TypeError):
            raise annotation_error(actions, lineno, f"expected columns [id,]verb,noun: {row}") from None
    if sorted(pairs) != list(range(len(pairs))):
        raise annotation_error(actions, None, "action ids must be 0..N-1")
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
    rows, header = _read_table(csv_path)
    col = _columns(csv_path, header, _EPIC_COLUMNS)
    verbs = _read_epic_class_csv(verb_classes) if verb_classes else [str(i) for i in range(num_verbs)]
    nouns = _read_epic_class_csv(noun_classes) if noun_classes else [str(i) for i in range(num_nouns)]

    parsed = []
    for lineno, row in _data_rows(csv_path, rows, header, show_row=False):
        try:
            start, stop = int(row[col["start_frame"]]), int(row[col["stop_frame"]])
            verb, noun = int(row[col["verb_class"]]), int(row[col["noun_class"]])
        except ValueError:
            raise annotation_error(
                csv_path, lineno, "start_frame, stop_frame, verb_class and noun_class must be integers"
            ) from None
        if start < 1 or stop < start:
            raise annotation_error(csv_path, lineno, f"bad frame range start_frame={start} stop_frame={stop}")
        if not 0 <= verb < len(verbs):
            raise annotation_error(
                csv_path, lineno, f"verb_class {verb} is outside the class list [0, {len(verbs)})"
            )
        if not 0 <= noun < len(nouns):
            raise annotation_error(
                csv_path, lineno, f"noun_class {noun} is outside the class list [0, {len(nouns)})"
            )
        parsed.append((row, start, stop, verb, noun))

    pairs = _read_actions(actions) if actions is not None else sorted({(p[3], p[4]) for p in parsed})
    action_index = {p: i for i, p in enumerate(pairs)}
    root = os.fspath(root)
    samples = []
    for row, start, stop, verb, noun in parsed:
        folder = os.path.join(root, row[col["participant_id"]], "rgb_frames", row[col["video_id"]])
        samples.append(
            Sample(
                path=folder,
                label={"verb": verb, "noun": noun, "action": action_index.get((verb, noun), -1)},
                id=row[col["narration_id"]],
                start_frame=start - 1,
                end_frame=stop,
            )
        )
    names = {"verb": verbs, "noun": nouns, "action": [f"{v},{n}" for v, n in pairs]}
    return Annotations(samples, names)


def epic_action_pairs(annotations: Annotations) -> list[tuple[int, int]]:
    """The (verb, noun) pair of each action id of Epic-Kitchens annotations."""
    assert isinstance(annotations.class_names, dict)
    return [tuple(int(x) for x in a.split(",")) for a in annotations.class_names["action"]]
