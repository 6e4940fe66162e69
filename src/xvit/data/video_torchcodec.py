"""The optional torchcodec backend of :class:`~xvit.data.video.VideoReader`.

Used only when torchcodec imports (its FFmpeg libraries load) and decodes a probe video made
here; frames are counted exactly (``seek_mode="exact"``). The frame-size limit is checked
from the stream metadata, the decode budget counts the wanted frames.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import torch

from xvit.data.errors import VideoDecodeError
from xvit.data.limits import (
    MAX_DECODE_MB,
    MAX_FRAME_PIXELS,
    DecodeBudget,
    check_frame_size,
    check_indices,
)

__all__ = ["TorchCodecReader", "torchcodec_available"]


def _probe_video_bytes() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for v in (0, 128):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), v, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


@functools.cache
def torchcodec_available() -> bool:
    """True when torchcodec imports (its FFmpeg libraries load) and decodes a probe video."""
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception:  # ImportError, or OSError/RuntimeError from FFmpeg libs
        return False
    try:
        frames = VideoDecoder(_probe_video_bytes(), seek_mode="exact").get_frames_at([0, 1]).data
        return tuple(frames.shape) == (2, 3, 32, 32) and frames[1].float().mean() > 64
    except Exception:  # any failure means: not usable here
        return False


class TorchCodecReader:
    backend = "torchcodec"

    def __init__(
        self,
        path: Path,
        threads: int = 1,
        max_frame_pixels: int | None = MAX_FRAME_PIXELS,
        max_decode_mb: int | None = MAX_DECODE_MB,
    ) -> None:
        from torchcodec.decoders import VideoDecoder

        self.path = path
        self.max_decode_mb = max_decode_mb
        try:
            self._decoder = VideoDecoder(
                str(path), seek_mode="exact", num_ffmpeg_threads=threads, dimension_order="NCHW"
            )
        except Exception as e:
            raise VideoDecodeError(path, f"torchcodec cannot open the video ({type(e).__name__}: {e})") from e
        meta = self._decoder.metadata
        self.num_frames = int(meta.num_frames)
        self.fps = float(meta.average_fps)
        self.duration = float(meta.duration_seconds)
        self.height, self.width = int(meta.height), int(meta.width)
        self.rotation = float(getattr(meta, "rotation", None) or 0.0)
        check_frame_size(path, self.width, self.height, max_frame_pixels)

    def read(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        order = check_indices(self.path, indices, self.num_frames)
        DecodeBudget(self.path, self.max_decode_mb).plan(  # a lower bound: the wanted frames
            len(set(order)), self.width, self.height, f"reading {len(set(order))} frames"
        )
        try:
            return self._decoder.get_frames_at(order).data.contiguous()
        except Exception as e:
            raise VideoDecodeError(
                self.path, f"torchcodec failed to decode frames {order} ({type(e).__name__}: {e})"
            ) from e

    def close(self) -> None:
        self._decoder = None
