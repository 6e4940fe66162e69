"""What annotation readers produce: :class:`Sample` (one clip) and :class:`Annotations`.

Also the helpers every reader shares: the error naming a file and line, the warning about
videos missing on disk, and class-name lists (:func:`read_class_names`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from xvit.data.errors import AnnotationError, PathLike
from xvit.data.text import read_user_lines

__all__ = [
    "Annotations",
    "Sample",
    "annotation_error",
    "as_class_list",
    "class_list_note",
    "read_class_names",
    "report_missing",
]

logger = logging.getLogger("xvit.data.annotations")


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
    """The parsed samples, class names and the paths found missing on disk; ``notes``: how
    the labels were read where that is not plain (mapped by name from the list's own
    class-name file), for the report."""

    samples: list[Sample]
    class_names: list[str] | dict[str, list[str]] | None = None
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

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


def annotation_error(file: PathLike, line: int | None, message: str) -> AnnotationError:
    where = f"{file}:{line}" if line is not None else f"{file}"
    return AnnotationError(f"{where}: {message}")


def report_missing(source: PathLike, missing: list[str], total: int) -> None:
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        logger.warning(
            "%s: %d of %d videos are missing and were left out (%s)",
            source,
            len(missing),
            total,
            shown,
        )


def class_list_note(names: Sequence[str] | None) -> str:
    """The class list an error names: `` (3 classes: a, b, c)``, the first eight of a long one."""
    if not names:
        return ""
    more = ", ..." if len(names) > 8 else ""
    return f" ({len(names)} classes: {', '.join(names[:8])}{more})"


def read_class_names(path: PathLike) -> list[str]:
    """Class names, one per line; line i (blank lines and ``#`` comment lines skipped, as in
    list files) is class i."""
    names = [line.strip() for line in read_user_lines(path)]
    names = [n for n in names if n and not n.startswith("#")]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise annotation_error(path, None, f"duplicate class names: {dup[:5]}")
    if not names:
        raise annotation_error(path, None, "no class names")
    return names


def as_class_list(class_names: Sequence[str] | PathLike | None) -> list[str] | None:
    if class_names is None:
        return None
    if isinstance(class_names, (str, os.PathLike)):
        return read_class_names(class_names)
    return list(class_names)
