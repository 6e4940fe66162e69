"""Dense windows along a whole video, decoded once from start to end.

A window is the model's clip: ``num_frames`` frames ``sampling_rate`` apart, so it covers
``span = (num_frames - 1) * sampling_rate + 1`` frames; windows start every ``stride`` frames
(0, stride, 2 * stride, ...) while they fit in the video, and the frames past the last
window (fewer than ``stride``) are left out. A video shorter than one window gets one window
whose missing frames repeat its last frame.

Video files are decoded sequentially (:mod:`xvit.data.sequential`: one pass, no seek per
window, the frames ``read_frames`` returns); each decoded
frame that a window uses is transformed (short side, centre crop, normalisation: the test
transform of ``xvit eval``) as it arrives and kept only until the last window that uses it
has been assembled, so memory holds about one window of transformed frames whatever the
length of the video. Frame folders and HDF5 packs are read in consecutive chunks through
:func:`xvit.data.open_video`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from xvit.data.limits import MAX_FRAME_PIXELS
from xvit.data.sequential import VideoFrames as DecodedVideo
from xvit.data.video import HDF5_SUFFIXES, open_video

__all__ = ["VideoFrames", "WindowBatch", "WindowSpec", "default_stride", "iter_frames", "iter_windows"]

_CHUNK = 32  # frames per read for frame folders and HDF5 packs


def default_stride(num_frames: int, sampling_rate: int) -> int:
    """Half a clip on the sampling grid: ``num_frames // 2`` clip frames, i.e.
    ``(num_frames // 2) * sampling_rate`` video frames (at least 1). A multiple of
    ``sampling_rate``, so that successive windows share frames (and, where the model allows,
    segment features). The one default of `xvit predict --timeline`, `--stream` and
    `xvit extract`."""
    return max(1, (num_frames // 2) * sampling_rate)


@dataclass(frozen=True)
class WindowSpec:
    """Where windows sit: ``num_frames`` frames ``sampling_rate`` apart, every ``stride`` frames."""

    num_frames: int
    sampling_rate: int
    stride: int

    def __post_init__(self) -> None:
        for name in ("num_frames", "sampling_rate", "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    @property
    def span(self) -> int:
        """Frames one window covers, first to last inclusive."""
        return (self.num_frames - 1) * self.sampling_rate + 1

    def starts(self, total: int) -> list[int]:
        """First frame of every window of a ``total``-frame video."""
        if total <= 0:
            return []
        if total < self.span:
            return [0]
        return list(range(0, total - self.span + 1, self.stride))

    def frames(self, start: int, total: int | None = None) -> list[int]:
        """The frame indices of the window starting at ``start`` (clamped to ``total - 1``)."""
        idx = [start + j * self.sampling_rate for j in range(self.num_frames)]
        return idx if total is None else [min(i, total - 1) for i in idx]

    def used(self, i: int) -> bool:
        """Whether frame ``i`` belongs to some window (of a video long enough to hold it)."""
        first = max(0, -(-(i - self.span + 1) // self.stride))  # ceil, the first window reaching i
        return any((i - s) % self.sampling_rate == 0 for s in range(first * self.stride, i + 1, self.stride))


@dataclass
class VideoFrames:
    """What is known of a video while and after it is decoded."""

    path: str
    fps: float = 0.0
    frames: int = 0  # decoded so far; the total once decoding has ended
    duration: float = 0.0  # seconds, first frame to the end of the last one


@dataclass
class WindowBatch:
    """Consecutive windows of one video: clips ``(B, 3, T, h, w)`` and where they are."""

    clips: torch.Tensor
    start_frame: list[int]
    end_frame: list[int]  # exclusive: last frame + 1
    start_sec: list[float]
    end_sec: list[float]


def _video_file_frames(
    path: Path, info: VideoFrames, max_frame_pixels: int | None
) -> Iterator[tuple[torch.Tensor, float]]:
    """Every frame of a video file in presentation order, decoded once
    (:class:`xvit.data.sequential.VideoFrames`: the frames ``read_frames`` returns)."""
    frames = DecodedVideo(path, max_frame_pixels=max_frame_pixels)
    info.fps = frames.fps
    for f in frames:
        yield f.rgb, f.time


def _reader_frames(
    path: Path, info: VideoFrames, max_frame_pixels: int | None
) -> Iterator[tuple[torch.Tensor, float]]:
    """Frames of a frame folder or HDF5 pack, read in consecutive chunks."""
    with open_video(path, max_frame_pixels=max_frame_pixels) as reader:
        total = reader.num_frames
        info.fps = float(reader.fps or 0.0)
        for a in range(0, total, _CHUNK):
            chunk = reader.read(range(a, min(a + _CHUNK, total)))
            for k in range(chunk.shape[0]):
                yield chunk[k], ((a + k) / info.fps if info.fps else 0.0)


def iter_frames(
    path: str | Path, info: VideoFrames, max_frame_pixels: int | None = MAX_FRAME_PIXELS
) -> Iterator[tuple[torch.Tensor, float]]:
    """``(uint8 (3, H, W) frame, seconds)`` for every frame of ``path`` in order; ``info``
    (fps, frames, duration) is filled in as decoding goes. Raises ``VideoDecodeError``."""
    p = Path(path)
    inner = (
        _reader_frames(p, info, max_frame_pixels)
        if p.is_dir() or p.suffix.lower() in HDF5_SUFFIXES
        else _video_file_frames(p, info, max_frame_pixels)
    )
    last = 0.0
    for frame, t in inner:
        info.frames += 1
        last = t
        yield frame, t
    step = 1.0 / info.fps if info.fps else 0.0
    info.duration = last + step if info.frames else 0.0


def iter_windows(
    path: str | Path,
    spec: WindowSpec,
    transform: Callable[[torch.Tensor], torch.Tensor],
    batch: int,
    info: VideoFrames,
    max_frame_pixels: int | None = MAX_FRAME_PIXELS,
) -> Iterator[WindowBatch]:
    """The windows of ``path`` in order, up to ``batch`` at a time, from one decode.

    ``transform``: uint8 ``(T, 3, H, W)`` -> ``(1, 3, T, h, w)`` (an
    :class:`~xvit.data.transforms.EvalTransform` with one crop), applied frame by frame.
    """
    kept: dict[int, torch.Tensor] = {}  # transformed frames still needed, by index
    times: dict[int, float] = {}  # seconds of the frames from the next window's start on
    pending: list[tuple[int, int, float, float, torch.Tensor]] = []  # frames, seconds, clip
    last: tuple[int, torch.Tensor] | None = None
    next_start = 0

    def flush() -> WindowBatch:
        batch_ = WindowBatch(
            clips=torch.stack([w[4] for w in pending]),
            start_frame=[w[0] for w in pending],
            end_frame=[w[1] for w in pending],
            start_sec=[w[2] for w in pending],
            end_sec=[w[3] for w in pending],
        )
        pending.clear()
        return batch_

    def add(start: int, end: int, clip: torch.Tensor) -> None:
        step = 1.0 / info.fps if info.fps else 0.0
        pending.append((start, end, times[start], times[end - 1] + step, clip))

    for i, (frame, t) in enumerate(iter_frames(path, info, max_frame_pixels)):
        times[i] = t
        if spec.used(i):
            kept[i] = transform(frame[None])[0, :, 0]
        last = (i, frame)
        if i == next_start + spec.span - 1:  # the window from next_start is complete
            clip = torch.stack([kept[j] for j in spec.frames(next_start)], dim=1)
            add(next_start, i + 1, clip)
            if len(pending) == batch:
                yield flush()
            next_start += spec.stride
            for j in [j for j in kept if j < next_start]:
                del kept[j]
            for j in [j for j in times if j < next_start]:
                del times[j]
    if last is not None and next_start == 0:  # shorter than one window: repeat the last frame
        n = last[0] + 1
        if n - 1 not in kept:
            kept[n - 1] = transform(last[1][None])[0, :, 0]
        add(0, n, torch.stack([kept[j] for j in spec.frames(0, n)], dim=1))
    if pending:
        yield flush()
