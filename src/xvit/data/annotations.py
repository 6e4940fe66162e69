"""Dataset annotation formats -> a list of `Sample`s plus class names.

Supported formats:

- list files (``path label`` per line, space or comma separated), as used by the released
  X-ViT code and mmaction2: :func:`read_list_file` (here);
- the official Kinetics-400/600/700 CSVs, Something-Something-v2 JSON files and
  Epic-Kitchens-100 action segments: :mod:`xvit.data.annotation_formats`, re-exported here.

Every reader validates the whole file up front: a malformed line or a label outside the
class list raises :class:`AnnotationError` naming the file and the line, before any
training starts. :func:`read_annotations` picks the reader of a file. The result types are
:mod:`xvit.data.samples`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from xvit.data.annotation_formats import (
    epic_action_pairs,
    kinetics_file_name,
    read_epic_kitchens,
    read_kinetics_csv,
    read_ssv2,
)
from xvit.data.errors import AnnotationError, PathLike
from xvit.data.samples import (
    Annotations,
    Sample,
    annotation_error,
    as_class_list,
    class_list_note,
    read_class_names,
    report_missing,
)
from xvit.data.text import read_user_lines, read_user_text, split_fields

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


# ---------------------------------------------------------------------------------------
# List files
# ---------------------------------------------------------------------------------------


def _parse_label(
    text: str, file: PathLike, line: int, names: list[str] | None, index: dict[str, int] | None
) -> int:
    text = text.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        label = int(text)
        if label < 0 or (names is not None and label >= len(names)):
            bound = f"[0, {len(names)})" if names is not None else ">= 0"
            raise annotation_error(
                file, line, f"label {label} is outside the class list {bound}{class_list_note(names)}"
            )
        return label
    if index is not None and text in index:
        return index[text]
    if index is not None:
        raise annotation_error(file, line, f"label {text!r} is not in the class list{class_list_note(names)}")
    raise annotation_error(
        file,
        line,
        f"label {text!r} is not an integer: to label by name, list the class names one a line in "
        f"classnames.txt beside the list (or give data.class_names=FILE)",
    )


def _label_or_none(text: str, names: list[str] | None, index: dict[str, int] | None) -> int | None:
    """The class of ``text`` when it is a valid label, else None (no error)."""
    try:
        return _parse_label(text, "", 0, names, index)
    except AnnotationError:
        return None


def _split_multi_label(
    line: str, raw: str, file: PathLike, lineno: int, names: list[str] | None, index: dict[str, int] | None
) -> tuple[str, tuple[int, ...]]:
    """``path label1,label2,...`` -> the path and the sorted label set.

    The labels are the longest whitespace-separated tail of the line whose comma-separated
    items are all labels, so paths and class names may contain spaces.
    """
    cuts = [m.start() for m in re.finditer(r"\s+", line)]
    if not cuts:
        raise annotation_error(file, lineno, f"expected 'path label1,label2,...', got {raw!r}")
    for cut in cuts:  # left to right: the longest label text first
        items = [t.strip() for t in line[cut:].split(",")]
        labels = [_label_or_none(t, names, index) for t in items]
        if all(v is not None for v in labels):
            return line[:cut].strip(), tuple(sorted(set(labels)))
    # nothing parses: report the first bad item of the shortest tail
    for item in line[cuts[-1] :].split(","):
        if not item.strip():
            raise annotation_error(file, lineno, f"empty label in {raw!r}")
        _parse_label(item, file, lineno, names, index)
    raise annotation_error(file, lineno, f"expected 'path label1,label2,...', got {raw!r}")


def _spaced_name_lengths(names: Sequence[str] | None) -> list[int]:
    """The word counts (> 1) of the class names that have spaces, ascending: the tails of a
    ``path label`` line that may be a class name (one pass per file, not per line)."""
    return sorted({len(n.split()) for n in names or () if len(n.split()) > 1})


def _split_path_label(
    line: str,
    raw: str,
    file: PathLike,
    lineno: int,
    names: list[str] | None,
    index: dict[str, int] | None,
    spaced: list[int],
) -> list[str]:
    """A whitespace-separated single-label line -> ``[path, label]`` or, for mmaction2's
    rawframes line ``dir num_frames label``, ``[dir, num, label]``.

    The label is the last word, or, where class names have spaces ("playing guitar"), the
    tail of the line that is such a name (`spaced`: :func:`_spaced_name_lengths`). A line
    ending in two class names ("moving left" and "left" both classes) is ambiguous and
    refused with its line."""
    words = line.split()
    label_words = 1
    if spaced and index is not None:
        tails = [k for k in spaced if k < len(words) and " ".join(words[-k:]) in index]
        found = [" ".join(words[-k:]) for k in tails]
        if _label_or_none(words[-1], names, index) is not None:
            found.append(words[-1])
        if len(found) > 1:
            raise annotation_error(
                file,
                lineno,
                f"{raw.strip()!r} ends in several class names ({', '.join(repr(n) for n in found)}); "
                f"write it as 'path,label' to say which",
            )
        if tails:
            label_words = tails[0]
    if len(words) <= label_words:
        return [line]  # no path: the caller says what a line must hold
    head = line.rsplit(None, label_words)[0].strip()
    label = " ".join(words[-label_words:])
    rest = head.split()
    if len(rest) >= 2 and rest[-1].isdigit():  # ``dir num_frames label`` vs a path with spaces
        return [head.rsplit(None, 1)[0], rest[-1], label]
    return [head, label]


def read_list_file(
    path: PathLike,
    root: PathLike | None = None,
    class_names: Sequence[str] | PathLike | None = None,
    check_exists: bool = False,
    multi_label: bool = False,
) -> Annotations:
    """Read a list file with one clip per line: ``path label``.

    Fields are separated by a comma when the line has one, else by whitespace (the label
    is the last field, so paths may contain spaces; with class names that have spaces, the
    tail of the line that is one, and a line ending in two is refused). A three-field line ``path num label``
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
    names = as_class_list(class_names)
    index = {n: i for i, n in enumerate(names)} if names is not None else None
    spaced = _spaced_name_lengths(names)
    samples, missing = [], []
    for lineno, raw in enumerate(read_user_lines(path), start=1):
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
            fields = split_fields(line, raw=raw, file=path, lineno=lineno)
            head = fields[0].split()
            if len(fields) >= 2 and len(head) >= 2 and _label_or_none(head[-1], names, index) is not None:
                raise annotation_error(
                    path,
                    lineno,
                    f"{raw!r} looks like several labels; multi-label list files need data.multi_label=true",
                )
        else:
            fields = _split_path_label(line, raw, path, lineno, names, index, spaced)
        if len(fields) == 3 and fields[1].isdigit():
            fields = [fields[0], fields[2]]
        if len(fields) != 2 or not fields[0]:
            raise annotation_error(path, lineno, f"expected 'path label', got {raw!r}")
        label = _parse_label(fields[1], path, lineno, names, index)
        video = fields[0]
        if root is not None and not os.path.isabs(video):
            video = os.path.join(os.fspath(root), video)
        if check_exists and not os.path.exists(video):
            missing.append(video)
            continue
        samples.append(Sample(path=video, label=label, id=os.path.basename(fields[0])))
    report_missing(path, missing, len(samples) + len(missing))
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


def read_annotations(
    path: PathLike,
    root: PathLike | None = None,
    class_names: Sequence[str] | PathLike | None = None,
    multi_label: bool = False,
) -> Annotations:
    """Read a list file, or a Kinetics CSV (by its header), with an optional root/class list.

    A list file next to a ``classnames.txt`` picks the class names up automatically.
    ``multi_label``: a multi-label list file (see :func:`read_list_file`).
    """
    path = Path(path)
    first = read_user_text(path).split("\n", 1)[0]
    if path.suffix == ".csv" and "youtube_id" in first:
        if multi_label:
            raise annotation_error(
                path,
                None,
                "multi-label annotations are read from list files "
                "('path label1,label2,...'), not Kinetics CSVs",
            )
        if root is None:
            root = path.parent
        return read_kinetics_csv(path, root, class_names)
    if class_names is None and (path.parent / "classnames.txt").exists():
        class_names = path.parent / "classnames.txt"
    if root is None:
        root = path.parent
    return read_list_file(path, root, class_names, multi_label=multi_label)
