"""Video decoding: ``read_frames`` and ``VideoReader`` (PyAV by default, torchcodec when usable).

Frames are counted in presentation order from 0, like a plain full decode. The PyAV reader
demuxes the video stream once (packets only, no decoding) to build a presentation-timestamp
index: frame ``i`` is the packet with the ``i``-th smallest pts. Reading seeks to the keyframe
before the first wanted frame, decodes forward, keeps frames whose pts is wanted and stops
after the last one. That index is what makes seeking exact with B-frames, variable frame rate
and containers whose stated frame count is wrong or missing.

Rotation metadata (the display matrix) is applied as FFmpeg's command line does by default.

Frame folders and HDF5 frame packs live in :mod:`xvit.data.frames`; :func:`open_video` and
:func:`read_frames` pick the reader from the path.
"""

from __future__ import annotations

import bisect
import functools
import io
import os
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

__all__ = [
    "VideoDecodeError",
    "VideoReader",
    "open_video",
    "read_frames",
    "torchcodec_available",
]

PathLike = str | os.PathLike


class VideoDecodeError(RuntimeError):
    """A video (file, frame folder or HDF5 pack) cannot be read; the message names the path."""

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across DataLoader workers
        return (type(self), (self.path, self.problem))


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


def check_indices(path: PathLike, indices: Sequence[int] | torch.Tensor | np.ndarray,
                  num_frames: int, what: str = "the video") -> list[int]:
    """Indices as a list of ints in ``[0, num_frames)``; a clear error names the file otherwise."""
    if isinstance(indices, (torch.Tensor, np.ndarray)):
        indices = indices.tolist()
    out = [int(i) for i in indices]
    if not out:
        raise ValueError(f"{path}: no frame indices given")
    bad = [i for i in out if i < 0 or i >= num_frames]
    if bad:
        raise VideoDecodeError(
            path, f"frame index {bad[0]} is out of range: {what} has {num_frames} frames "
            f"(valid indices 0..{num_frames - 1}); the video is shorter than the clip")
    return out


# ----------------------------------------------------------------------------------------------
# Rotation (display matrix), applied the way the ffmpeg command line does by default

def _display_matrix(frame: av.VideoFrame) -> np.ndarray | None:
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
    warnings.warn(f"display rotation of {theta:.1f} degrees is not a multiple of 90; ignored")
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


def _swaps_axes(ops: Sequence[str]) -> bool:
    return sum(op in ("clock", "cclock", "transpose", "clock_flip") for op in ops) % 2 == 1


# ----------------------------------------------------------------------------------------------
# PyAV backend

class _StreamIndex:
    """Presentation timestamps of every frame of a stream, from one demux pass (no decoding)."""

    def __init__(self, pts: list[int], key_pts: list[int], key_dts: dict[int, int],
                 start: int, last_duration: int, stated_frames: int,
                 read_error: str | None) -> None:
        self.pts = pts  # sorted: frame i has pts[i]
        self.key_pts = key_pts  # sorted pts of keyframe packets
        self.key_dts = key_dts  # keyframe pts -> its dts (demuxers often seek on dts)
        self.start = start  # smallest timestamp of the stream: seeking here starts at the top
        self.pts_to_index = {p: i for i, p in enumerate(pts)}
        self.last_duration = last_duration
        self.stated_frames = stated_frames
        self.read_error = read_error

    @classmethod
    def build(cls, container: av.container.InputContainer, stream: av.video.VideoStream,
              path: Path) -> "_StreamIndex":
        pts, key_pts, key_dts, durations, read_error = [], [], {}, {}, None
        start = None
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard or packet.is_corrupt:
                    continue  # flush packets, dropped-frame markers, pre-roll, torn last packet
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    raise VideoDecodeError(path, "video packets carry no timestamps (raw "
                                           "elementary stream?); remux it into mp4/mkv")
                dts = packet.dts if packet.dts is not None else ts
                start = min(ts, dts) if start is None else min(start, ts, dts)
                pts.append(ts)
                durations[ts] = packet.duration or 0
                if packet.is_keyframe:
                    key_pts.append(ts)
                    key_dts[ts] = dts
        except av.error.FFmpegError as e:  # damaged tail: keep what demuxed cleanly
            read_error = f"{type(e).__name__}: {e}"
        if not pts:
            detail = f" ({read_error})" if read_error else ""
            raise VideoDecodeError(path, f"the video stream has no readable frames{detail}")
        pts.sort()
        key_pts.sort()
        if len(set(pts)) != len(pts):
            raise VideoDecodeError(path, "several frames share one timestamp; cannot index "
                                   "frames exactly (remux the file)")
        return cls(pts, key_pts, key_dts, start, durations[pts[-1]], stream.frames or 0,
                   read_error)


_INDEX_CACHE: "OrderedDict[tuple[str, int, int], _StreamIndex]" = OrderedDict()
_INDEX_CACHE_SIZE = 4096


class _PyAVReader:
    backend = "pyav"

    def __init__(self, path: Path, threads: int = 1, apply_rotation: bool = True) -> None:
        self.path = path
        try:
            self._container = av.open(str(path), metadata_errors="ignore")
        except av.error.FFmpegError as e:
            raise VideoDecodeError(path, f"cannot open as a video, the file is truncated, "
                                   f"damaged or not a video ({type(e).__name__}: {e})") from e
        try:
            if not self._container.streams.video:
                raise VideoDecodeError(path, "the file has no video stream")
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO" if threads != 1 else "SLICE"
            self._stream.thread_count = threads
            self._index = self._cached_index()
        except BaseException:
            self._container.close()
            raise
        self._last_error: str | None = None
        self._skip_nonref = True
        self._rotation: tuple[str, ...] | None = None if apply_rotation else ()

    def _cached_index(self) -> _StreamIndex:
        st = self.path.stat()
        key = (str(self.path.resolve()), st.st_size, st.st_mtime_ns)
        index = _INDEX_CACHE.get(key)
        if index is None:
            index = _StreamIndex.build(self._container, self._stream, self.path)
            _INDEX_CACHE[key] = index
            if len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
                _INDEX_CACHE.popitem(last=False)
        return index

    # -- metadata ------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return len(self._index.pts)

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
        pts = np.asarray(self._index.pts, dtype=np.float64)
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
        return self._stream.width if _swaps_axes(self._rotation_ops()) else self._stream.height

    @property
    def width(self) -> int:
        return self._stream.height if _swaps_axes(self._rotation_ops()) else self._stream.width

    def _rotation_ops(self) -> tuple[str, ...]:
        if self._rotation is None:  # learn it from a decoded frame (side data)
            self._decode({0: self._index.pts[0]}, [0], {})
        assert self._rotation is not None
        return self._rotation

    # -- decoding ------------------------------------------------------------------------------
    def read(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        stated = self._index.stated_frames
        what = f"the video (its header claims {stated})" if stated not in (0, self.num_frames) \
            else "the video"
        order = check_indices(self.path, indices, self.num_frames, what)
        wanted = sorted(set(order))
        pts = self._index.pts
        got: dict[int, np.ndarray] = {}
        pos = 0
        while pos < len(wanted):
            pos = self._decode({i: pts[i] for i in wanted}, wanted[pos:], got) + pos
        slot = {i: k for k, i in enumerate(wanted)}
        unique = torch.from_numpy(np.stack([got[i] for i in wanted])).permute(0, 3, 1, 2)
        unique = apply_rotation(unique, self._rotation_ops())
        return unique[torch.tensor([slot[i] for i in order])].contiguous()

    def _keyframe_before(self, p: int) -> int | None:
        k = bisect.bisect_right(self._index.key_pts, p) - 1
        return self._index.key_pts[k] if k >= 0 else None

    def _decode(self, pts_of: dict[int, int], todo: list[int], got: dict[int, np.ndarray]) -> int:
        """Seek before ``todo[0]``, decode forward; return how many of ``todo`` were read.

        Stops early when a keyframe lies between the last decoded frame and the next wanted one,
        so that the caller seeks again instead of decoding through. Falls back to earlier seek
        points (previous keyframe, then the stream start) when the decoder comes out past the
        first wanted frame, which happens when a container's keyframe index is wrong.
        """
        first = pts_of[todo[0]]
        targets = []  # keyframe pts, its dts, the keyframe before, the start of the stream
        key = self._keyframe_before(first)
        if key is not None:
            targets += [key, min(key, self._index.key_dts[key])]
            prev = self._keyframe_before(key - 1)
            if prev is not None:
                targets += [prev, min(prev, self._index.key_dts[prev])]
        targets.append(self._index.start)
        wanted_pts = {pts_of[i]: i for i in todo}
        for target in dict.fromkeys(targets):  # ordered, deduplicated
            done = self._decode_from(target, todo, pts_of, wanted_pts, got)
            if done:
                return done
        detail = f" (decoder error: {self._last_error})" if self._last_error else ""
        raise VideoDecodeError(self.path, f"frame {todo[0]} (pts {first}) was not produced by "
                               f"the decoder, even when decoding from the start{detail}; the "
                               "file is truncated or damaged")

    def _decoded_frames(self, wanted_pts: dict[int, int]) -> Iterator[av.VideoFrame]:
        """Decode from the current position; a damaged packet is skipped, as ffmpeg does.

        Packets of frames nobody asked for are decoded with ``skip_frame="NONREF"``: the
        decoder drops them when no other frame references them (non-reference B-frames).
        """
        ctx = self._stream.codec_context
        for packet in self._container.demux(self._stream):
            skip = "NONREF" if self._skip_nonref and packet.pts is not None \
                and packet.pts not in wanted_pts else "DEFAULT"
            if ctx.skip_frame != skip:
                ctx.skip_frame = skip
            try:
                yield from packet.decode()
            except av.error.InvalidDataError as e:
                self._last_error = f"{type(e).__name__}: {e}"

    def _decode_from(self, target: int, todo: list[int], pts_of: dict[int, int],
                     wanted_pts: dict[int, int], got: dict[int, np.ndarray]) -> int:
        done, kept = 0, []
        try:
            self._container.seek(target, backward=True, any_frame=False, stream=self._stream)
            for frame in self._decoded_frames(wanted_pts):
                if self._rotation is None:
                    tag = self._stream.metadata.get("rotate")
                    self._rotation = rotation_ops(_display_matrix(frame), tag)
                p = frame.pts
                if p is None or p < target:  # e.g. open-GOP frames missing their references
                    continue
                i = wanted_pts.get(p)
                if i is not None and i not in got:
                    got[i] = frame.to_ndarray(format="rgb24")
                    kept.append(i)
                while done < len(todo) and todo[done] in got:
                    done += 1
                if done == len(todo):
                    break
                if p > pts_of[todo[done]]:  # passed a wanted frame without seeing it
                    break
                key = self._keyframe_before(pts_of[todo[done]])
                if done and key is not None and key > p:  # cheaper to seek than decode through
                    break
        except av.error.FFmpegError as e:
            if not done:
                raise VideoDecodeError(self.path, f"decoding failed near frame {todo[0]} "
                                       f"({type(e).__name__}: {e}); the file is damaged") from e
        if not done:  # landed past the first wanted frame: distrust whatever came out
            for i in kept:
                del got[i]
        return done

    def close(self) -> None:
        self._container.close()


# ----------------------------------------------------------------------------------------------
# torchcodec backend (optional; used only when it imports and decodes a probe video)

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


@functools.lru_cache(maxsize=None)
def torchcodec_available() -> bool:
    """True when torchcodec imports (its FFmpeg libraries load) and decodes a probe video."""
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception:  # ImportError, or OSError/RuntimeError from missing FFmpeg libraries
        return False
    try:
        frames = VideoDecoder(_probe_video_bytes(), seek_mode="exact").get_frames_at([0, 1]).data
        return tuple(frames.shape) == (2, 3, 32, 32) and frames[1].float().mean() > 64
    except Exception:
        return False


class _TorchCodecReader:
    backend = "torchcodec"

    def __init__(self, path: Path, threads: int = 1) -> None:
        from torchcodec.decoders import VideoDecoder

        self.path = path
        try:
            self._decoder = VideoDecoder(str(path), seek_mode="exact", num_ffmpeg_threads=threads,
                                         dimension_order="NCHW")
        except Exception as e:
            raise VideoDecodeError(path, f"torchcodec cannot open the video "
                                   f"({type(e).__name__}: {e})") from e
        meta = self._decoder.metadata
        self.num_frames = int(meta.num_frames)
        self.fps = float(meta.average_fps)
        self.duration = float(meta.duration_seconds)
        self.height, self.width = int(meta.height), int(meta.width)
        self.rotation = float(getattr(meta, "rotation", None) or 0.0)

    def read(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        order = check_indices(self.path, indices, self.num_frames)
        try:
            return self._decoder.get_frames_at(order).data.contiguous()
        except Exception as e:
            raise VideoDecodeError(self.path, f"torchcodec failed to decode frames {order} "
                                   f"({type(e).__name__}: {e})") from e

    def close(self) -> None:
        self._decoder = None


# ----------------------------------------------------------------------------------------------
# Public API

class VideoReader:
    """An open video file: frame count, fps, duration, size, and ``read(indices)``.

    ``backend``: ``"auto"`` (torchcodec when usable, else PyAV), ``"pyav"`` or
    ``"torchcodec"``. ``threads``: decoder threads (1 suits DataLoader workers). The container
    stays open between ``read`` calls; use as a context manager or call ``close()``.
    """

    def __init__(self, path: PathLike, backend: str = "auto", threads: int = 1,
                 apply_rotation: bool = True) -> None:
        self.path = check_file(path)
        if backend not in ("auto", "pyav", "torchcodec"):
            raise ValueError(f"backend must be 'auto', 'pyav' or 'torchcodec', got {backend!r}")
        if backend == "torchcodec" and not torchcodec_available():
            raise RuntimeError("backend='torchcodec' but torchcodec is not installed or cannot "
                               "decode (it needs FFmpeg libraries and a matching torch build)")
        self._impl: _PyAVReader | _TorchCodecReader
        if backend == "torchcodec" or (backend == "auto" and torchcodec_available()):
            self._impl = _TorchCodecReader(self.path, threads)
            if backend == "auto" and apply_rotation and self._impl.rotation:
                self._impl.close()  # rotated file: keep PyAV's ffmpeg-like rotation
                self._impl = _PyAVReader(self.path, threads, apply_rotation)
        else:
            self._impl = _PyAVReader(self.path, threads, apply_rotation)

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

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return (f"VideoReader({str(self.path)!r}, backend={self.backend!r}, "
                f"num_frames={self.num_frames}, fps={self.fps:.3f})")


HDF5_SUFFIXES = (".h5", ".hdf5")


def open_video(path: PathLike, backend: str = "auto", **kwargs: Any) -> Any:
    """Open a video file, a frame folder or an HDF5 frame pack; all share the reader API.

    Folders go to :class:`~xvit.data.frames.FrameFolderReader` (``template``, ``start_index``),
    ``.h5``/``.hdf5`` files to :class:`~xvit.data.frames.HDF5FrameReader` (``key``), anything
    else to :class:`VideoReader` (``backend``, ``threads``, ``apply_rotation``).
    """
    p = Path(path)
    if p.is_dir():
        from xvit.data.frames import FrameFolderReader

        return FrameFolderReader(p, **kwargs)
    if p.suffix.lower() in HDF5_SUFFIXES:
        from xvit.data.frames import HDF5FrameReader

        return HDF5FrameReader(p, **kwargs)
    return VideoReader(p, backend=backend, **kwargs)


def read_frames(path: PathLike, indices: Sequence[int] | torch.Tensor | np.ndarray,
                **kwargs: Any) -> torch.Tensor:
    """Frames ``indices`` of a video, frame folder or HDF5 pack: uint8 ``(T, 3, H, W)`` RGB."""
    with open_video(path, **kwargs) as reader:
        return reader.read(indices)
