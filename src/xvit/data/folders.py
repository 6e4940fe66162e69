"""Class-folder datasets (``DIR/<class name>/<video>``) and a seeded, stratified holdout.

:func:`read_class_folders` turns a directory tree into the same :class:`Annotations` the list
readers return: classes are the sub-directory names sorted by name (label ``i`` is the
``i``-th name), videos are the files with a video extension found under each class folder
(sub-folders included), sorted by their path. Hidden files and folders (names starting with
``.``) and files of other types are skipped. :func:`stratified_split` holds out a fraction of
every class, reproducibly.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xvit.data.errors import AnnotationError, PathLike
from xvit.data.samples import Annotations, Sample

__all__ = [
    "VIDEO_EXTENSIONS",
    "is_class_folder_dir",
    "is_video_file",
    "read_class_folders",
    "split_counts",
    "stratified_split",
]

logger = logging.getLogger(__name__)

#: File extensions taken as videos (compared in lower case).
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".avi",
        ".mkv",
        ".webm",
        ".mpg",
        ".mpeg",
        ".m2v",
        ".wmv",
        ".asf",
        ".flv",
        ".f4v",
        ".ogv",
        ".3gp",
        ".3g2",
        ".ts",
        ".mts",
        ".m2ts",
        ".vob",
        ".mxf",
        ".dv",
        ".y4m",
    }
)


def is_video_file(name: PathLike) -> bool:
    """Whether a file name has a video extension (any case) and is not hidden."""
    base = os.path.basename(os.fspath(name))
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in VIDEO_EXTENSIONS


def is_class_folder_dir(path: PathLike) -> bool:
    """Whether ``path`` names a directory, i.e. must be read with :func:`read_class_folders`
    rather than as an annotation file (which then reports what is wrong with the tree)."""
    return Path(path).is_dir()


def _videos_under(folder: Path) -> list[str]:
    """Video files under ``folder`` (recursively, hidden entries skipped), as sorted
    POSIX paths relative to ``folder``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = os.path.relpath(dirpath, folder)
        for name in filenames:
            if is_video_file(name):
                rel = name if rel_dir == "." else os.path.join(rel_dir, name)
                found.append(Path(rel).as_posix())
    return sorted(found)


def read_class_folders(root: PathLike, class_names: Sequence[str] | None = None) -> Annotations:
    """Read a ``root/<class name>/<video>`` tree into :class:`Annotations`.

    Without ``class_names`` the classes are the sub-directories of ``root`` sorted by name.
    With ``class_names`` (a model's class list, for evaluation) every folder must name one of
    them and labels index that list. ``Sample.path`` is ``root/<class>/<file>``,
    ``Sample.id`` is ``<class>/<file>`` (relative, POSIX separators). Raises
    :class:`AnnotationError` naming the directory when it is missing, not a directory, holds
    no class folders, holds a class folder without videos, or (with ``class_names``) a
    folder that is not a known class.
    """
    root_path = Path(root)
    if not root_path.exists():
        raise AnnotationError(f"{root}: directory not found")
    if not root_path.is_dir():
        raise AnnotationError(f"{root}: not a directory")
    entries = sorted(os.listdir(root_path))
    classes = [e for e in entries if not e.startswith(".") and (root_path / e).is_dir()]
    if not classes:
        loose = [e for e in entries if is_video_file(e) and (root_path / e).is_file()]
        hint = (
            (f" ({len(loose)} videos lie directly in it: put each in a sub-folder named after its class)")
            if loose
            else ""
        )
        what = "is empty" if not entries else "has no class folders"
        raise AnnotationError(f"{root}: {what}; expected {root}/<class name>/<video file>{hint}")
    loose = [e for e in entries if is_video_file(e) and (root_path / e).is_file()]
    if loose:
        logger.warning(
            "%s: %d video(s) outside any class folder were left out (%s)",
            root,
            len(loose),
            ", ".join(loose[:3]) + (", ..." if len(loose) > 3 else ""),
        )

    if class_names is not None:
        names = list(class_names)
        index = {n: i for i, n in enumerate(names)}
        unknown = [c for c in classes if c not in index]
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            raise AnnotationError(f"{root}: class folder(s) {shown} not in the model's {len(names)} classes")
    else:
        names = classes
        index = {n: i for i, n in enumerate(names)}

    samples = []
    for cls in classes:
        videos = _videos_under(root_path / cls)
        if not videos:
            raise AnnotationError(
                f"{root_path / cls}: class folder holds no video files "
                f"(extensions: {', '.join(sorted(VIDEO_EXTENSIONS))})"
            )
        for rel in videos:
            samples.append(
                Sample(path=os.path.join(os.fspath(root), cls, rel), label=index[cls], id=f"{cls}/{rel}")
            )
    return Annotations(samples, names)


def split_counts(n: int, fraction: float) -> int:
    """How many of a class's ``n`` videos :func:`stratified_split` holds out.

    ``round(fraction * n)`` with halves rounded up, but at least 1 when ``fraction > 0``
    and at most ``n - 1``, so each class keeps a training video; a class with one video
    stays whole in training.
    """
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, math.floor(fraction * n + 0.5)))


def stratified_split(
    samples: Sequence[Sample], fraction: float, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Split ``samples`` into (train, val), holding out ``fraction`` of every class.

    Each class (int label) gets :func:`split_counts` videos in validation, drawn by a
    generator seeded with ``(seed, label)`` from the class's samples ordered by path, so the
    result depends on the seed and the set of samples only: not on their order, nor on the
    other classes. Both lists come back ordered by (label, path).
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"the validation fraction must be in [0, 1), got {fraction}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    by_label: dict[int, list[Sample]] = {}
    for s in samples:
        if not isinstance(s.label, int) or isinstance(s.label, bool):
            raise TypeError(f"{s.path}: stratified_split needs int labels, got {s.label!r}")
        if s.label < 0:
            raise ValueError(f"{s.path}: label {s.label} (unlabelled) cannot be split by class")
        by_label.setdefault(s.label, []).append(s)
    train: list[Sample] = []
    val: list[Sample] = []
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda s: (s.path, s.id))
        n_val = split_counts(len(group), fraction)
        held = set()
        if n_val:
            order = np.random.default_rng([seed, label]).permutation(len(group))
            held = {int(i) for i in order[:n_val]}
        for i, s in enumerate(group):
            (val if i in held else train).append(s)
    return train, val
