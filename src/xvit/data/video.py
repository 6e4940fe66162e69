"""Video decoding: ``read_frames`` and ``VideoReader`` (PyAV by default, torchcodec when usable).

Frames are counted in presentation order from 0, like a plain full decode. The PyAV reader
demuxes the video stream once (packets only, no decoding) to build a presentation-timestamp
index: frame ``i`` is the packet with the ``i``-th smallest pts. Reading seeks to the keyframe
before the first wanted frame, decodes forward, keeps frames whose pts is wanted and stops
after the last one. That index is what makes seeking exact with B-frames, variable frame rate
and containers whose stated frame count is wrong or missing.

AVI stores frames in decode order without presentation timestamps, so for an AVI that is not
intra-only the index comes from one full decode instead (:mod:`xvit.data.video_index`).

Decoding is bounded: a frame over ``max_frame_pixels`` and a read that would decode more than
``max_decode_mb`` of frames are refused from the stream header, before decoding (the one-off
AVI index pass is bounded by the pixel limit and the file's packet count only).

Rotation metadata (the display matrix) is applied as FFmpeg's command line does by default
(:mod:`xvit.data.rotation`). The frame index is :mod:`xvit.data.video_index`, the limits
:mod:`xvit.data.limits`, the optional torchcodec backend :mod:`xvit.data.video_torchcodec`.

Frame folders and HDF5 frame packs live in :mod:`xvit.data.frames`; :func:`open_video` and
:func:`read_frames` pick the reader from the path.

Length: over 500 lines because the PyAV reader is one class whose seek, decode-order and
fallback paths share one open container and one decode budget; the index, the limits, the
rotation and the torchcodec backend are in their own modules.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, NoReturn

import av
import av.logging
import numpy as np
import torch

from xvit.data.errors import PathLike, VideoDecodeError
from xvit.data.frames import FrameFolderReader, HDF5FrameReader
from xvit.data.limits import (
    MAX_DECODE_MB,
    MAX_FRAME_PIXELS,
    DecodeBudget,
    check_file,
    check_frame_size,
    check_indices,
    megapixels,
)
from xvit.data.reader_base import ReaderBase
from xvit.data.rotation import apply_rotation, display_matrix, rotation_ops, swaps_axes
from xvit.data.video_index import StreamIndex
from xvit.data.video_torchcodec import TorchCodecReader, torchcodec_available

__all__ = [
    "MAX_DECODE_MB",
    "MAX_FRAME_PIXELS",
    "VideoDecodeError",
    "VideoReader",
    "open_video",
    "read_frames",
    "torchcodec_available",
]

# ----------------------------------------------------------------------------------------------
# PyAV backend


def _keep(
    frame: av.VideoFrame,
    index: int | None,
    got: dict[int, np.ndarray],
    kept: list[int],
    todo: list[int],
    done: int,
) -> int:
    """Store ``frame`` as frame ``index`` (unless ``None`` or already read); return how many of
    ``todo`` are read, counting on from ``done``."""
    if index is not None and index not in got:
        got[index] = frame.to_ndarray(format="rgb24")
        kept.append(index)
    while done < len(todo) and todo[done] in got:
        done += 1
    return done


_INDEX_CACHE: OrderedDict[tuple[str, int, int], StreamIndex] = OrderedDict()
_INDEX_CACHE_SIZE = 4096


class _PyAVReader:
    backend = "pyav"

    def __init__(
        self,
        path: Path,
        threads: int = 1,
        apply_rotation: bool = True,
        max_frame_pixels: int | None = MAX_FRAME_PIXELS,
        max_decode_mb: int | None = MAX_DECODE_MB,
    ) -> None:
        self.path = path
        self.max_frame_pixels = max_frame_pixels
        self.max_decode_mb = max_decode_mb
        # max_pixels: the probe decode of avformat_find_stream_info refuses big frames too
        options = {"max_pixels": str(max_frame_pixels)} if max_frame_pixels else None
        try:
            self._container = av.open(str(path), metadata_errors="ignore", options=options)
        except av.error.FFmpegError as e:
            raise VideoDecodeError(
                path,
                f"cannot open as a video, the file is truncated, "
                f"damaged or not a video ({type(e).__name__}: {e})",
            ) from e
        try:
            if not self._container.streams.video:
                raise VideoDecodeError(path, "the file has no video stream")
            self._stream = self._container.streams.video[0]
            ctx = self._stream.codec_context
            if ctx is None:  # no decoder for the stream's codec (or a damaged codec tag)
                raise VideoDecodeError(path, "the video stream's codec is unknown or has no decoder here")
            check_frame_size(path, ctx.width or 0, ctx.height or 0, max_frame_pixels)
            if max_frame_pixels:  # the decoder refuses frames over the limit (size changes)
                ctx.options = {"max_pixels": str(max_frame_pixels)}
            self._stream.thread_type = "AUTO" if threads != 1 else "SLICE"
            self._stream.thread_count = threads
            self._last_error: str | None = None
            self._skip_nonref = True
            self._budget = DecodeBudget(path, max_decode_mb)
            self._index = self._cached_index()
        except BaseException:
            self._container.close()
            raise
        self._rotation: tuple[str, ...] | None = None if apply_rotation else ()

    def _cached_index(self) -> StreamIndex:
        st = self.path.stat()
        key = (str(self.path.resolve()), st.st_size, st.st_mtime_ns)
        index = _INDEX_CACHE.get(key)
        if index is None:
            index = StreamIndex.build(self._container, self._stream, self.path)
            if index.needs_order:
                self._learn_order(index)
            _INDEX_CACHE[key] = index
            if len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
                _INDEX_CACHE.popitem(last=False)
        return index

    def _learn_order(self, index: StreamIndex) -> None:
        """Decode the whole stream once (no RGB conversion) to learn the presentation order."""
        # One pass over the file's own packets, no RGB conversion and nothing kept: bounded
        # by the packet count and the pixel limit, not by the per-read max_decode_mb (which
        # would refuse every long HD AVI).
        self._budget = DecodeBudget(self.path, None)
        out_pts, out_key = [], []
        try:
            self._container.seek(index.start, backward=True, any_frame=False, stream=self._stream)
            for frame in self._decoded_frames({}, skip_nonref=False):
                out_pts.append(frame.pts)
                out_key.append(bool(frame.key_frame))
        except av.error.FFmpegError as e:
            raise VideoDecodeError(
                self.path,
                f"decoding the whole video to index it failed ({type(e).__name__}: {e}); the file is damaged",
            ) from e
        if not out_pts:
            detail = f" (decoder error: {self._last_error})" if self._last_error else ""
            raise VideoDecodeError(self.path, f"the video stream decodes to no frames{detail}")
        index.learn_order(out_pts, out_key)

    # -- metadata ------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return self._index.num_frames

    @property
    def stated_frames(self) -> int:
        """The frame count the container states (0 when it states none); not used to index."""
        return self._index.stated_frames

    @property
    def time_base(self) -> Fraction:
        return self._stream.time_base

    @property
    def timestamps(self) -> np.ndarray:
        """Presentation time of each frame in seconds, from the first frame."""
        pts = np.asarray(self._index.pts[: self.num_frames], dtype=np.float64)
        return (pts - pts[0]) * float(self.time_base)

    @property
    def duration(self) -> float:
        idx = self._index
        last = idx.last_duration or (idx.pts[-1] - idx.pts[0]) / max(len(idx.pts) - 1, 1)
        return float((idx.pts[-1] - idx.pts[0] + last) * self.time_base)

    @property
    def fps(self) -> float:
        """Frames per second measured from the timestamps (stated rates can be wrong)."""
        duration = self.duration
        if duration > 0:
            return self.num_frames / duration
        return float(self._stream.average_rate or self._stream.guessed_rate or 0.0)

    @property
    def height(self) -> int:
        return self._stream.width if swaps_axes(self._rotation_ops()) else self._stream.height

    @property
    def width(self) -> int:
        return self._stream.height if swaps_axes(self._rotation_ops()) else self._stream.width

    def _rotation_ops(self) -> tuple[str, ...]:
        if self._rotation is None:  # learn it from a decoded frame (side data)
            self._read_into([0], {})
        assert self._rotation is not None
        return self._rotation

    def _note_rotation(self, frame: av.VideoFrame) -> None:
        if self._rotation is None:
            tag = self._stream.metadata.get("rotate")
            self._rotation = rotation_ops(display_matrix(frame), tag)

    # -- decoding ------------------------------------------------------------------------------
    def read(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        stated = self._index.stated_frames
        what = (
            f"the video (its header claims {stated})" if stated not in (0, self.num_frames) else "the video"
        )
        order = check_indices(self.path, indices, self.num_frames, what)
        wanted = sorted(set(order))
        got: dict[int, np.ndarray] = {}
        self._read_into(wanted, got)
        slot = {i: k for k, i in enumerate(wanted)}
        unique = torch.from_numpy(np.stack([got[i] for i in wanted])).permute(0, 3, 1, 2)
        unique = apply_rotation(unique, self._rotation_ops())
        return unique[torch.tensor([slot[i] for i in order])].contiguous()

    def _read_into(self, wanted: list[int], got: dict[int, np.ndarray]) -> None:
        """Decode the sorted frames ``wanted`` into ``got``, within the decode budget."""
        order = self._index.order
        if order is None:
            pts = self._index.pts
            pts_of = {i: pts[i] for i in wanted}
            keys = [self._index.pts_to_index.get(self._index.keyframe_before(pts[i]), 0) for i in wanted]
        else:
            keys = [order.key_before(i)[0] for i in wanted]
        planned, covered = 0, -1  # frames from each wanted frame's keyframe on, counted once
        for key, i in zip(keys, wanted):
            planned += i - max(key, covered + 1) + 1
            covered = i
        self._budget = DecodeBudget(self.path, self.max_decode_mb)
        self._budget.plan(
            planned,
            self._stream.width,
            self._stream.height,
            f"reading frames {wanted[:8]}{'...' if len(wanted) > 8 else ''}",
        )
        pos = 0
        while pos < len(wanted):
            if order is None:
                pos += self._decode(pts_of, wanted[pos:], got)
            else:
                pos += self._decode_ordered(wanted[pos:], got)

    def _decode(self, pts_of: dict[int, int], todo: list[int], got: dict[int, np.ndarray]) -> int:
        """Seek before ``todo[0]``, decode forward; return how many of ``todo`` were read.

        Stops early when a keyframe lies between the last decoded frame and the next wanted one,
        so that the caller seeks again instead of decoding through. Falls back to earlier seek
        points (previous keyframe, then the stream start) when the decoder comes out past the
        first wanted frame, which happens when a container's keyframe index is wrong.
        """
        first = pts_of[todo[0]]
        targets = []  # keyframe pts, its dts, the keyframe before, the start of the stream
        key = self._index.keyframe_before(first)
        if key is not None:
            targets += [key, min(key, self._index.key_dts[key])]
            prev = self._index.keyframe_before(key - 1)
            if prev is not None:
                targets += [prev, min(prev, self._index.key_dts[prev])]
        targets.append(self._index.start)
        wanted_pts = {pts_of[i]: i for i in todo}
        for target in dict.fromkeys(targets):  # ordered, deduplicated
            done = self._attempt(
                functools.partial(self._decode_from, target, todo, pts_of, wanted_pts, got), todo, got
            )
            if done:
                return done
        self._not_produced(todo[0], f"pts {first}")

    def _not_produced(self, index: int, where: str) -> NoReturn:
        detail = f" (decoder error: {self._last_error})" if self._last_error else ""
        raise VideoDecodeError(
            self.path,
            f"frame {index} ({where}) was not produced by "
            f"the decoder, even when decoding from the start{detail}; the "
            "file is truncated or damaged",
        )

    def _decoded_frames(
        self, wanted_pts: dict[int, int], skip_nonref: bool = True
    ) -> Iterator[av.VideoFrame]:
        """Decode from the current position; a damaged packet is skipped, as ffmpeg does.

        Packets of frames nobody asked for are decoded with ``skip_frame="NONREF"``: the
        decoder drops them when no other frame references them (non-reference B-frames).
        Every frame is charged to the decode budget; a frame over the pixel limit is refused
        by the decoder (``max_pixels``) before it is allocated.
        """
        ctx = self._stream.codec_context
        skip_nonref = skip_nonref and self._skip_nonref
        for packet in self._container.demux(self._stream):
            skip = (
                "NONREF"
                if skip_nonref and packet.pts is not None and packet.pts not in wanted_pts
                else "DEFAULT"
            )
            if ctx.skip_frame != skip:
                ctx.skip_frame = skip
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as e:
                self._last_error = f"{type(e).__name__}: {e}"
                continue
            except av.error.ArgumentError as e:
                self._oversized(packet, e)
                raise
            for frame in frames:
                check_frame_size(self.path, frame.width, frame.height, self.max_frame_pixels)
                self._budget.spend(frame.width, frame.height)
                yield frame

    def _oversized(self, packet: av.Packet, error: Exception) -> None:
        """Raise the size error when the decoder refused a frame over ``max_pixels``.

        The header stated no size (image pipes state none before decoding), so the size comes
        from FFmpeg's own refusal message, caught by sending the packet once more with FFmpeg's
        log captured.
        """
        if not self.max_frame_pixels:
            return
        level, skip_repeated = av.logging.get_level(), av.logging.get_skip_repeated()
        try:
            av.logging.set_level(av.logging.ERROR)
            av.logging.set_skip_repeated(False)  # the same refusal may have been logged before
            with av.logging.Capture() as logs, contextlib.suppress(av.error.FFmpegError):
                packet.decode()
        finally:
            av.logging.set_level(level)
            av.logging.set_skip_repeated(skip_repeated)
        for _, _, message in logs:
            m = re.search(r"Picture size (\d+)x(\d+)", message)
            if m:
                check_frame_size(self.path, int(m[1]), int(m[2]), self.max_frame_pixels)
        if any("max pixel" in message for _, _, message in logs):
            raise VideoDecodeError(
                self.path,
                "a frame exceeds the limit of "
                f"{megapixels(self.max_frame_pixels)} MP "
                "(data.max_frame_pixels)",
            ) from error

    def _attempt(
        self, steps: Callable[[list[int]], Iterator[int]], todo: list[int], got: dict[int, np.ndarray]
    ) -> int:
        """Run one seek-and-decode attempt; return how many of ``todo`` it read.

        ``steps(kept)`` decodes into ``got`` (appending what it stores to ``kept``) and yields
        how many of ``todo`` are read so far. A decoder error before the first wanted frame is a
        damaged file; after it, the frames read so far count. An attempt that read none of
        ``todo`` landed past them: whatever it stored is distrusted and removed.
        """
        done, kept = 0, []
        try:
            for done in steps(kept):  # noqa: B007 -- the last count is the result
                pass
        except av.error.FFmpegError as e:
            if not done:
                raise VideoDecodeError(
                    self.path,
                    f"decoding failed near frame {todo[0]} ({type(e).__name__}: {e}); the file is damaged",
                ) from e
        if not done:
            for i in kept:
                del got[i]
        return done

    def _decode_from(
        self,
        target: int,
        todo: list[int],
        pts_of: dict[int, int],
        wanted_pts: dict[int, int],
        got: dict[int, np.ndarray],
        kept: list[int],
    ) -> Iterator[int]:
        done = 0
        self._container.seek(target, backward=True, any_frame=False, stream=self._stream)
        for frame in self._decoded_frames(wanted_pts):
            self._note_rotation(frame)
            p = frame.pts
            if p is None or p < target:  # e.g. open-GOP frames missing their references
                continue
            done = _keep(frame, wanted_pts.get(p), got, kept, todo, done)
            yield done
            if done == len(todo):
                return
            if p > pts_of[todo[done]]:  # passed a wanted frame without seeing it
                return
            key = self._index.keyframe_before(pts_of[todo[done]])
            if done and key is not None and key > p:  # cheaper to seek than decode through
                return

    # -- decoding by output order (AVI) --------------------------------------------------------
    def _decode_ordered(self, todo: list[int], got: dict[int, np.ndarray]) -> int:
        """Like ``_decode`` for a stream indexed by output order: seek to a keyframe whose
        output position is known, count output frames from it (each checked against the
        full decode's timestamps), falling back to the previous keyframe and the start."""
        order = self._index.order
        assert order is not None
        k = bisect.bisect_right(order.key_ord, todo[0]) - 1
        candidates = [c for c in (k, k - 1) if c >= 0] + [None]
        for c in candidates:
            done = self._attempt(functools.partial(self._decode_ordered_from, c, todo, got), todo, got)
            if done:
                return done
        self._not_produced(todo[0], "in decoder output order")

    def _decode_ordered_from(
        self, key: int | None, todo: list[int], got: dict[int, np.ndarray], kept: list[int]
    ) -> Iterator[int]:
        order = self._index.order
        assert order is not None
        target = self._index.start if key is None else order.key_seek[key]
        position = 0 if key is None else None  # output position of the next frame, once known
        wanted, done = set(todo), 0
        self._container.seek(target, backward=True, any_frame=False, stream=self._stream)
        for frame in self._decoded_frames({}, skip_nonref=False):
            self._note_rotation(frame)
            if position is None:  # frames before the keyframe (open GOP) are not counted
                if not frame.key_frame or frame.pts not in order.key_by_pts:
                    continue
                position = order.key_by_pts[frame.pts]
            if position > todo[done] or position >= len(order.out_pts):
                return  # landed past the wanted frame
            if order.verify and frame.pts != order.out_pts[position]:
                return  # not the frame the full decode gave here: distrust from here on
            done = _keep(frame, position if position in wanted else None, got, kept, todo, done)
            yield done
            if done == len(todo):
                return
            position += 1
            next_key = order.key_before(todo[done])[0]
            if next_key > position:  # cheaper to seek than decode through
                return

    def close(self) -> None:
        self._container.close()


# ----------------------------------------------------------------------------------------------
# Public API


class VideoReader(ReaderBase):
    """An open video file: frame count, fps, duration, size, and ``read(indices)``.

    ``backend``: ``"auto"`` (torchcodec when usable, else PyAV; always PyAV for ``.avi``,
    whose missing presentation timestamps only the PyAV reader handles), ``"pyav"`` or
    ``"torchcodec"``. ``threads``: decoder threads (1 suits DataLoader workers). The container
    stays open between ``read`` calls; use as a context manager or call ``close()``.

    ``max_frame_pixels``: frames larger than this are refused from the stream header, before
    decoding (default 7680x4320). ``max_decode_mb``: a read that would decode more than this
    many MiB of frames (``H x W x 3`` bytes each, counted from the keyframe each wanted frame
    is decoded from) is refused before decoding (default 16384). ``None`` or 0 turns a limit
    off.
    """

    def __init__(
        self,
        path: PathLike,
        backend: str = "auto",
        threads: int = 1,
        apply_rotation: bool = True,
        max_frame_pixels: int | None = MAX_FRAME_PIXELS,
        max_decode_mb: int | None = MAX_DECODE_MB,
    ) -> None:
        self.path = check_file(path)
        limits = {"max_frame_pixels": max_frame_pixels, "max_decode_mb": max_decode_mb}
        if backend not in ("auto", "pyav", "torchcodec"):
            raise ValueError(f"backend must be 'auto', 'pyav' or 'torchcodec', got {backend!r}")
        if backend == "torchcodec" and not torchcodec_available():
            raise RuntimeError(
                "backend='torchcodec' but torchcodec is not installed or cannot "
                "decode (it needs FFmpeg libraries and a matching torch build)"
            )
        self._impl: _PyAVReader | TorchCodecReader
        if backend == "torchcodec" or (
            backend == "auto" and self.path.suffix.lower() != ".avi" and torchcodec_available()
        ):
            self._impl = TorchCodecReader(self.path, threads, **limits)
            if backend == "auto" and apply_rotation and self._impl.rotation:
                self._impl.close()  # rotated file: keep PyAV's ffmpeg-like rotation
                self._impl = _PyAVReader(self.path, threads, apply_rotation, **limits)
        else:
            self._impl = _PyAVReader(self.path, threads, apply_rotation, **limits)

    backend = property(lambda self: self._impl.backend, doc="the backend in use")
    num_frames = property(lambda self: self._impl.num_frames, doc="frames in the video")
    fps = property(lambda self: self._impl.fps, doc="average frame rate (frames per second)")
    duration = property(lambda self: self._impl.duration, doc="duration in seconds")
    height = property(lambda self: self._impl.height, doc="displayed frame height")
    width = property(lambda self: self._impl.width, doc="displayed frame width")

    def read(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 ``(T, 3, H, W)`` RGB."""
        return self._impl.read(indices)

    def close(self) -> None:
        self._impl.close()

    def __repr__(self) -> str:
        return (
            f"VideoReader({str(self.path)!r}, backend={self.backend!r}, "
            f"num_frames={self.num_frames}, fps={self.fps:.3f})"
        )


HDF5_SUFFIXES = (".h5", ".hdf5")


def open_video(path: PathLike, backend: str = "auto", **kwargs: Any) -> Any:
    """Open a video file, a frame folder or an HDF5 frame pack; all share the reader API.

    Folders go to :class:`~xvit.data.frames.FrameFolderReader` (``template``, ``start_index``),
    ``.h5``/``.hdf5`` files to :class:`~xvit.data.frames.HDF5FrameReader` (``key``), anything
    else to :class:`VideoReader` (``backend``, ``threads``, ``apply_rotation``). All take
    ``max_frame_pixels`` and ``max_decode_mb``.
    """
    p = Path(path)
    if p.is_dir():
        return FrameFolderReader(p, **kwargs)
    if p.suffix.lower() in HDF5_SUFFIXES:
        return HDF5FrameReader(p, **kwargs)
    return VideoReader(p, backend=backend, **kwargs)


def read_frames(
    path: PathLike, indices: Sequence[int] | torch.Tensor | np.ndarray, **kwargs: Any
) -> torch.Tensor:
    """Frames ``indices`` of a video, frame folder or HDF5 pack: uint8 ``(T, 3, H, W)`` RGB."""
    with open_video(path, **kwargs) as reader:
        return reader.read(indices)
