"""What a reader accepts: an existing file, frame indices in range, frames under the pixel
limit, and reads within the decode budget.

Shared by the video readers (:mod:`xvit.data.video`) and the image-based ones
(:mod:`xvit.data.frames`), so that every reader refuses the same input with the same message.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from xvit.data.errors import PathLike, VideoDecodeError

__all__ = [
    "MAX_DECODE_MB",
    "MAX_FRAME_PIXELS",
    "DecodeBudget",
    "check_file",
    "check_frame_size",
    "check_indices",
    "megapixels",
]

MAX_FRAME_PIXELS = 7680 * 4320  # 8K UHD (33.2 MP): larger frames are refused unread
MAX_DECODE_MB = 16384  # decoded RGB frames one read may produce, in MiB (4K: ~650 frames)


def check_file(path: PathLike) -> Path:
    """Raise ``VideoDecodeError`` if ``path`` is missing, not a regular file or empty."""
    p = Path(path)
    if not p.exists():
        raise VideoDecodeError(p, "file not found")
    if not p.is_file():
        raise VideoDecodeError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise VideoDecodeError(p, "file is empty (0 bytes)")
    return p


def check_indices(
    path: PathLike,
    indices: Sequence[int] | torch.Tensor | np.ndarray,
    num_frames: int,
    what: str = "the video",
) -> list[int]:
    """Indices as a list of ints in ``[0, num_frames)``; a clear error names the file otherwise."""
    if isinstance(indices, (torch.Tensor, np.ndarray)):
        indices = indices.tolist()
    out = [int(i) for i in indices]
    if not out:
        raise ValueError(f"{path}: no frame indices given")
    bad = [i for i in out if i < 0 or i >= num_frames]
    if bad:
        raise VideoDecodeError(
            path,
            f"frame index {bad[0]} is out of range: {what} has {num_frames} frames "
            f"(valid indices 0..{num_frames - 1}); the video is shorter than the clip",
        )
    return out


def check_frame_size(path: PathLike, width: int, height: int, max_frame_pixels: int | None) -> None:
    """Raise ``VideoDecodeError`` when a ``width x height`` frame is over the pixel limit."""
    if max_frame_pixels and width * height > max_frame_pixels:
        raise VideoDecodeError(
            path,
            f"frame size {width}x{height} "
            f"({megapixels(width * height)} MP) exceeds the limit of "
            f"{megapixels(max_frame_pixels)} MP (data.max_frame_pixels)",
        )


def megapixels(pixels: int) -> str:
    """Megapixels with one decimal, or enough digits to tell small values apart."""
    return f"{pixels / 1e6:.1f}" if pixels >= 100_000 else f"{pixels / 1e6:.2g}"


class DecodeBudget:
    """Bytes of decoded frames (``H x W x 3``, the RGB size) allowed to one read; ``None``: no
    limit. ``plan`` refuses a read before decoding, ``spend`` guards while decoding."""

    def __init__(self, path: PathLike, max_decode_mb: int | None) -> None:
        self.path = path
        self.limit = max_decode_mb * 2**20 if max_decode_mb else None
        self.max_decode_mb = max_decode_mb
        self.spent = 0

    def _error(self, what: str, nbytes: int) -> VideoDecodeError:
        return VideoDecodeError(
            self.path,
            f"{what} ({nbytes / 2**20:.1f} MiB of decoded frames) "
            f"exceeds the limit of {self.max_decode_mb} MiB "
            "(data.max_decode_mb)",
        )

    def plan(self, frames: int, width: int, height: int, what: str) -> None:
        nbytes = frames * width * height * 3
        if self.limit is not None and nbytes > self.limit:
            raise self._error(f"{what} needs {frames} frames of {width}x{height} decoded", nbytes)

    def spend(self, width: int, height: int) -> None:
        self.spent += width * height * 3
        if self.limit is not None and self.spent > self.limit:
            raise self._error("decoding went past the budget", self.spent)
