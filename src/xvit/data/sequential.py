"""Every frame of a video file in presentation order, decoded once from start to end.

`xvit.data.read_frames` seeks to the frames it is asked for; a timeline over a long video
wants all of them, in order, so it decodes the file once with PyAV instead of seeking per
window. The file is first opened with `xvit.data.VideoReader`, which checks it (a missing,
empty or unreadable file, frames over the pixel limit) and counts its frames from a demux
pass; the decode then yields exactly the frames `read_frames` would return (same RGB
conversion, the display rotation applied), with their presentation times.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from xvit.data.errors import VideoDecodeError
from xvit.data.limits import MAX_FRAME_PIXELS, check_frame_size
from xvit.data.rotation import apply_rotation, display_matrix, rotation_ops
from xvit.data.video import VideoReader

__all__ = ["DecodedFrame", "VideoFrames"]


@dataclass
class DecodedFrame:
    """Frame `index` (from 0, presentation order), its time in seconds from the first frame,
    and its pixels: uint8 `(3, H, W)` RGB."""

    index: int
    time: float
    rgb: torch.Tensor


class VideoFrames:
    """A video file's frames in order: `num_frames` and `fps` up front (from the demux pass),
    then iterate once. Iteration raises `VideoDecodeError` when the decoder stops before
    `num_frames` frames (a damaged or truncated file); the frames before it were yielded."""

    def __init__(self, path: str | Path, max_frame_pixels: int | None = MAX_FRAME_PIXELS) -> None:
        self.path = Path(path)
        self.max_frame_pixels = max_frame_pixels
        with VideoReader(self.path, backend="pyav", max_frame_pixels=max_frame_pixels) as reader:
            self.num_frames = int(reader.num_frames)
            self.fps = float(reader.fps)
            self.width, self.height = int(reader.width), int(reader.height)

    def __len__(self) -> int:
        return self.num_frames

    def __iter__(self) -> Iterator[DecodedFrame]:
        try:
            container = av.open(str(self.path), metadata_errors="ignore")
        except av.error.FFmpegError as e:
            raise VideoDecodeError(self.path, f"cannot open as a video ({type(e).__name__}: {e})") from e
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            ops: tuple[str, ...] | None = None
            start: float | None = None
            index = 0
            last_error = ""
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError as e:  # a damaged packet: skipped, as ffmpeg does
                    last_error = f"{type(e).__name__}: {e}"
                    continue
                for frame in frames:
                    if index >= self.num_frames:
                        break
                    check_frame_size(self.path, frame.width, frame.height, self.max_frame_pixels)
                    if ops is None:
                        ops = rotation_ops(display_matrix(frame), stream.metadata.get("rotate"))
                    time = float(frame.time) if frame.time is not None else index / max(self.fps, 1e-9)
                    start = time if start is None else start
                    rgb = torch.from_numpy(np.ascontiguousarray(frame.to_ndarray(format="rgb24")))
                    yield DecodedFrame(index, time - start, apply_rotation(rgb.permute(2, 0, 1), ops))
                    index += 1
            if index < self.num_frames:
                detail = f" (decoder error: {last_error})" if last_error else ""
                raise VideoDecodeError(
                    self.path,
                    f"the decoder stopped after {index} of {self.num_frames} frames{detail}; "
                    "the file is truncated or damaged",
                )
