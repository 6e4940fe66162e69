"""Live frame sources: anything FFmpeg opens live, read frame by frame as the frames arrive.

:class:`LiveSource` opens an HTTP / HLS / RTSP / UDP URL, a v4l2 camera (``/dev/videoN``) or a
file, and yields :class:`StreamFrame` objects: RGB frames with their position in the stream,
their presentation time (seconds from the first frame) and the monotonic clock time at which
they were decoded. ``realtime=True`` paces the frames at their own timestamps (a file, or a
server that sends faster than real time, behaves like a camera).

There is no reconnection: when the source ends, or a read fails or stalls longer than
``timeout`` seconds, iteration stops and :attr:`LiveSource.end_reason` says why
(:attr:`LiveSource.failed` is true for a read error). A source that cannot be opened raises
:class:`~xvit.data.errors.VideoDecodeError` naming it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import torch

from xvit.data.errors import VideoDecodeError
from xvit.data.limits import MAX_FRAME_PIXELS, check_frame_size
from xvit.data.rotation import apply_rotation, display_matrix, rotation_ops

__all__ = ["END_OF_STREAM", "STOPPED", "LiveSource", "StreamFrame", "is_url"]

END_OF_STREAM = "end of stream"
STOPPED = "stopped"


@dataclass(frozen=True)
class StreamFrame:
    """One decoded frame of a live source."""

    index: int  # position in the stream: 0, 1, 2, ... over every decoded frame
    time: float  # presentation time in seconds from the first frame
    arrival: float  # time.monotonic() when the frame was decoded (after pacing, with realtime)
    image: torch.Tensor  # uint8 (3, H, W), RGB


def is_url(source: str) -> bool:
    """Whether ``source`` names a network or protocol URL (``scheme://...``)."""
    scheme, sep, _ = source.partition("://")
    return bool(sep) and scheme.replace("+", "").replace("-", "").isalnum()


class LiveSource:
    """Frames of a live source in arrival order (iterate once; :meth:`stop` ends it early).

    ``keep(index)`` (optional) says which frames the caller needs: the others are decoded and
    counted (:attr:`frames_read`) but never converted to RGB, which is the expensive part.
    ``timeout``: seconds to wait for the source to open and for each read.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        realtime: bool = False,
        timeout: float = 10.0,
        keep: Callable[[int], bool] | None = None,
        max_frame_pixels: int | None = MAX_FRAME_PIXELS,
    ) -> None:
        self.source = str(source)
        self.realtime = realtime
        self.keep = keep
        self.frames_read = 0
        self.end_reason: str | None = None
        self.failed = False
        self._stop = threading.Event()
        fmt = "v4l2" if self.source.startswith("/dev/video") else None
        if fmt is None and not is_url(self.source):
            p = Path(self.source)
            if not p.exists():
                raise VideoDecodeError(self.source, "no such file or device")
            if p.is_dir():
                raise VideoDecodeError(self.source, "is a directory, not a video source")
        options = {"max_pixels": str(max_frame_pixels)} if max_frame_pixels else {}
        try:
            self._container = av.open(
                self.source, format=fmt, options=options, timeout=(timeout, timeout), metadata_errors="ignore"
            )
        except (av.error.FFmpegError, OSError) as e:
            raise VideoDecodeError(
                self.source, f"cannot open as a video source ({type(e).__name__}: {_one_line(e)})"
            ) from e
        try:
            if not self._container.streams.video:
                raise VideoDecodeError(self.source, "the source has no video stream")
            self._stream = self._container.streams.video[0]
            ctx = self._stream.codec_context
            check_frame_size(self.source, ctx.width or 0, ctx.height or 0, max_frame_pixels)
            self._stream.thread_type = "SLICE"  # frame threads would delay every frame
            rate = self._stream.average_rate or self._stream.guessed_rate
            self.fps = float(rate) if rate else None
        except BaseException:
            self._container.close()
            raise
        self._rotation: tuple[str, ...] | None = None
        self._used = False

    def stop(self) -> None:
        """Ask the iteration to end after the frame being read (safe from another thread)."""
        self._stop.set()

    def __iter__(self) -> Iterator[StreamFrame]:
        if self._used:
            raise RuntimeError(f"{self.source}: a live source can be iterated once")
        self._used = True
        return self._frames()

    def _frames(self) -> Iterator[StreamFrame]:
        first_time: float | None = None
        wall_start = 0.0
        try:
            for frame in self._container.decode(self._stream):
                if self._stop.is_set():
                    self.end_reason = STOPPED
                    return
                index = self.frames_read
                self.frames_read += 1
                t = frame.time
                if t is None:
                    t = index / self.fps if self.fps else 0.0
                if first_time is None:
                    first_time, wall_start = t, time.monotonic()
                rel = float(t - first_time)
                if self.keep is not None and not self.keep(index):
                    continue
                if self.realtime:
                    delay = wall_start + rel - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        self.end_reason = STOPPED
                        return
                if self._rotation is None:
                    self._rotation = rotation_ops(display_matrix(frame), self._stream.metadata.get("rotate"))
                image = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
                image = apply_rotation(image, self._rotation)
                yield StreamFrame(index=index, time=rel, arrival=time.monotonic(), image=image)
            self.end_reason = END_OF_STREAM
        except av.error.ExitError:  # the read timed out (PyAV's interrupt callback)
            self.failed = True
            self.end_reason = "read error: no data for too long (timed out)"
        except (av.error.FFmpegError, OSError) as e:
            self.failed = True
            self.end_reason = f"read error: {type(e).__name__}: {_one_line(e)}"
        finally:
            self.close()

    def close(self) -> None:
        """Release the source (idempotent)."""
        container, self._container = getattr(self, "_container", None), None
        if container is not None:
            container.close()

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
