"""Display rotation (the display matrix side data, or an old ``rotate`` tag), applied the way
the ffmpeg command line does by default.

:func:`rotation_ops` turns the metadata into transpose/flip operations, :func:`apply_rotation`
applies them to decoded frames, :func:`swaps_axes` tells whether they exchange height and
width. The decoder (:mod:`xvit.data.video`) and the re-encoder (:mod:`xvit.data.encode`) use
the same operations.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import av
import numpy as np
import torch

__all__ = ["TRANSPOSING_OPS", "apply_rotation", "display_matrix", "rotation_ops", "swaps_axes"]

#: The operations that exchange height and width.
TRANSPOSING_OPS = ("clock", "cclock", "transpose", "clock_flip")


def display_matrix(frame: av.VideoFrame) -> np.ndarray | None:
    """The 3x3 display matrix of a decoded frame (9 int32, row-major), or ``None``."""
    for sd in frame.side_data:
        if sd.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
            return np.frombuffer(bytes(sd), dtype=np.int32)[:9].copy()
    return None


def rotation_ops(matrix: np.ndarray | None, rotate_tag: str | None = None) -> tuple[str, ...]:
    """The ops ffmpeg inserts for a display matrix: 'clock', 'cclock', 'transpose', 'hflip'...

    Mirrors ``configure_input_video_filter`` of fftools (FFmpeg 7): the clockwise angle is
    ``-av_display_rotation_get(matrix)`` rounded and folded into [0, 360). Without a matrix, an
    old-style ``rotate`` stream tag (clockwise degrees) is honoured.
    """
    if matrix is None:
        if rotate_tag is None:
            return ()
        try:
            deg = int(float(rotate_tag)) % 360
        except ValueError:
            return ()
        return {90: ("clock",), 180: ("hflip", "vflip"), 270: ("cclock",)}.get(deg, ())
    m = matrix.astype(np.float64)
    scale0, scale1 = np.hypot(m[0], m[3]), np.hypot(m[1], m[4])
    if scale0 == 0 or scale1 == 0:
        return ()
    ccw = -np.degrees(np.arctan2(m[1] / scale1, m[0] / scale0))  # av_display_rotation_get
    theta = -round(ccw)
    theta -= 360 * np.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return ("transpose",) if m[3] > 0 else ("clock",)  # transpose=cclock_flip : clock
    if abs(theta - 180) < 1:
        return tuple(op for op, flip in (("hflip", m[0] < 0), ("vflip", m[4] < 0)) if flip)
    if abs(theta - 270) < 1:
        return ("clock_flip",) if m[3] < 0 else ("cclock",)
    if abs(theta) < 1:
        return ("vflip",) if m[4] < 0 else ()
    warnings.warn(f"display rotation of {theta:.1f} degrees is not a multiple of 90; ignored", stacklevel=2)
    return ()


def apply_rotation(frames: torch.Tensor, ops: Sequence[str]) -> torch.Tensor:
    """Apply ``rotation_ops`` to ``(..., H, W)`` frames (libavfilter transpose/flip semantics)."""
    for op in ops:
        if op == "clock":
            frames = frames.transpose(-2, -1).flip(-1)
        elif op == "cclock":
            frames = frames.transpose(-2, -1).flip(-2)
        elif op == "transpose":  # transpose=cclock_flip
            frames = frames.transpose(-2, -1)
        elif op == "clock_flip":
            frames = frames.transpose(-2, -1).flip(-2, -1)
        elif op == "hflip":
            frames = frames.flip(-1)
        elif op == "vflip":
            frames = frames.flip(-2)
        else:
            raise ValueError(f"unknown rotation op {op!r}")
    return frames


def swaps_axes(ops: Sequence[str]) -> bool:
    """Whether ``ops`` exchange the frame's height and width."""
    return sum(op in TRANSPOSING_OPS for op in ops) % 2 == 1
