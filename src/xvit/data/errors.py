"""The errors of the data package and the path type they name.

Every module of :mod:`xvit.data` raises these; none of them imports another data module, so
readers, annotation parsers and the dataset preparation all import them from here.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["AnnotationError", "PathLike", "PrepareError", "VideoDecodeError"]

PathLike = str | os.PathLike


class VideoDecodeError(RuntimeError):
    """A video (file, frame folder or HDF5 pack) cannot be read; the message names the path."""

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across DataLoader workers
        return (type(self), (self.path, self.problem))


class AnnotationError(ValueError):
    """An annotation file is malformed; the message names the file and line."""


class PrepareError(ValueError):
    """Bad input to :func:`~xvit.data.prepare.prepare_dataset` (source, output directory or
    settings)."""
