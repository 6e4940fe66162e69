"""Video decoding: ``read_frames`` and ``VideoReader`` (PyAV by default, torchcodec when usable).

Frames are counted in presentation order from 0, like a plain full decode. The PyAV reader
demuxes the video stream once (packets only, no decoding) to build a presentation-timestamp
index: frame ``i`` is the packet with the ``i``-th smallest pts. Reading seeks to the keyframe
before the first wanted frame, decodes forward, keeps frames whose pts is wanted and stops
after the last one. That index is what makes seeking exact with B-frames, variable frame rate
and containers whose stated frame count is wrong or missing.

AVI stores frames in decode order without presentation timestamps (the demuxer's "pts" are
decode-order chunk numbers or parser guesses), so for an AVI that is not intra-only the index
comes from one full decode instead: the output order of the decoder, with each output frame's
timestamp as its identity, and the output position of every keyframe as a seek point.

Decoding is bounded: a frame over ``max_frame_pixels`` and a read that would decode more than
``max_decode_mb`` of frames are refused from the stream header, before decoding (the one-off
AVI index pass is bounded by the pixel limit and the file's packet count only).

Rotation metadata (the display matrix) is applied as FFmpeg's command line does by default.

Frame folders and HDF5 frame packs live in :mod:`xvit.data.frames`; :func:`open_video` and
:func:`read_frames` pick the reader from the path.
"""

from __future__ import annotations

import bisect
import functools
import io
import os
import re
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, NoReturn, Self

import av
import av.logging
import numpy as np
import torch

__all__ = [
    "MAX_DECODE_MB",
    "MAX_FRAME_PIXELS",
    "VideoDecodeError",
    "VideoReader",
    "open_video",
    "read_frames",
    "torchcodec_available",
]

PathLike = str | os.PathLike

MAX_FRAME_PIXELS = 7680 * 4320  # 8K UHD (33.2 MP): larger frames are refused unread
MAX_DECODE_MB = 16384  # decoded RGB frames one read may produce, in MiB (4K: ~650 frames)


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


def check_frame_size(path: PathLike, width: int, height: int,
                     max_frame_pixels: int | None) -> None:
    """Raise ``VideoDecodeError`` when a ``width x height`` frame is over the pixel limit."""
    if max_frame_pixels and width * height > max_frame_pixels:
        raise VideoDecodeError(path, f"frame size {width}x{height} ({_mp(width * height)} MP) "
                               f"exceeds the limit of {_mp(max_frame_pixels)} MP "
                               "(data.max_frame_pixels)")


def _mp(pixels: int) -> str:
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
        return VideoDecodeError(self.path, f"{what} ({nbytes / 2**20:.1f} MiB of decoded frames) "
                                f"exceeds the limit of {self.max_decode_mb} MiB "
                                "(data.max_decode_mb)")

    def plan(self, frames: int, width: int, height: int, what: str) -> None:
        nbytes = frames * width * height * 3
        if self.limit is not None and nbytes > self.limit:
            raise self._error(f"{what} needs {frames} frames of {width}x{height} decoded", nbytes)

    def spend(self, width: int, height: int) -> None:
        self.spent += width * height * 3
        if self.limit is not None and self.spent > self.limit:
            raise self._error("decoding went past the budget", self.spent)


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

class _OrderIndex:
    """Frame order learnt from one full decode, for containers without presentation timestamps.

    ``out_pts[i]``: the timestamp the decoder gave output frame ``i`` (its identity when all are
    distinct). ``key_ord``/``key_seek``: output position and seek timestamp of each keyframe
    whose output frame was identified, sorted by position.
    """

    def __init__(self, out_pts: list[int | None], key_ord: list[int], key_seek: list[int],
                 verify: bool) -> None:
        self.out_pts = out_pts
        self.key_ord = key_ord
        self.key_seek = key_seek
        self.key_by_pts = {out_pts[o]: o for o in key_ord}
        self.verify = verify  # out_pts identify the frames: check every frame on the way


class _StreamIndex:
    """Presentation timestamps of every frame of a stream, from one demux pass (no decoding)."""

    def __init__(self, pts: list[int], key_pts: list[int], key_dts: dict[int, int],
                 start: int, last_duration: int, stated_frames: int,
                 read_error: str | None, key_seek_in_order: list[int],
                 needs_order: bool) -> None:
        self.pts = pts  # sorted: frame i has pts[i]
        self.key_pts = key_pts  # sorted pts of keyframe packets
        self.key_dts = key_dts  # keyframe pts -> its dts (demuxers often seek on dts)
        self.start = start  # smallest timestamp of the stream: seeking here starts at the top
        self.pts_to_index = {p: i for i, p in enumerate(pts)}
        self.last_duration = last_duration
        self.stated_frames = stated_frames
        self.read_error = read_error
        self.key_seek_in_order = key_seek_in_order  # seek timestamps of keyframes, demux order
        self.needs_order = needs_order  # packet timestamps are not presentation order
        self.order: _OrderIndex | None = None  # set when a full decode gave the real order

    @property
    def num_frames(self) -> int:
        return len(self.order.out_pts) if self.order is not None else len(self.pts)

    @classmethod
    def build(cls, container: av.container.InputContainer, stream: av.video.VideoStream,
              path: Path) -> _StreamIndex:
        pts, key_pts, key_dts, durations, read_error = [], [], {}, {}, None
        key_seek, start, missing_pts = [], None, False
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard or packet.is_corrupt:
                    continue  # flush packets, dropped-frame markers, pre-roll, torn last packet
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    raise VideoDecodeError(path, "video packets carry no timestamps (raw "
                                           "elementary stream?); remux it into mp4/mkv")
                missing_pts |= packet.pts is None
                dts = packet.dts if packet.dts is not None else ts
                start = min(ts, dts) if start is None else min(start, ts, dts)
                pts.append(ts)
                durations[ts] = packet.duration or 0
                if packet.is_keyframe:
                    key_pts.append(ts)
                    key_dts[ts] = dts
                    key_seek.append(dts)
        except av.error.FFmpegError as e:  # damaged tail: keep what demuxed cleanly
            read_error = f"{type(e).__name__}: {e}"
        if not pts:
            detail = f" ({read_error})" if read_error else ""
            raise VideoDecodeError(path, f"the video stream has no readable frames{detail}")
        # AVI has no presentation timestamps, and a badly muxed file may give several frames
        # one timestamp: the order then comes from one full decode. Intra-only streams need
        # none (decode order is presentation order).
        avi = "avi" in (container.format.name or "").split(",")
        shared_pts = len(set(pts)) != len(pts)
        needs_order = (avi or missing_pts or shared_pts) and len(key_pts) < len(pts)
        pts.sort()
        key_pts.sort()
        if shared_pts and not needs_order:
            raise VideoDecodeError(path, "several frames share one timestamp; cannot index "
                                   "frames exactly (remux the file)")
        return cls(pts, key_pts, key_dts, start, durations[pts[-1]], stream.frames or 0,
                   read_error, key_seek, needs_order)

    def learn_order(self, out_pts: list[int | None], out_key: list[bool]) -> None:
        """Take the frame order of a full decode (``out_pts``/``out_key`` per output frame)."""
        verify = None not in out_pts and len(set(out_pts)) == len(out_pts)
        if out_pts == self.pts and verify:
            return  # the packet timestamps were presentation timestamps after all
        key_ord = [o for o, k in enumerate(out_key) if k]
        if not verify or len(key_ord) != len(self.key_seek_in_order):
            key_ord, key_seek = [], []  # keyframes cannot be matched: decode from the start
        else:  # keyframes come out in decode order, relative to each other
            key_seek = list(self.key_seek_in_order)
        self.order = _OrderIndex(out_pts, key_ord, key_seek, verify)


_INDEX_CACHE: OrderedDict[tuple[str, int, int], _StreamIndex] = OrderedDict()
_INDEX_CACHE_SIZE = 4096


class _PyAVReader:
    backend = "pyav"

    def __init__(self, path: Path, threads: int = 1, apply_rotation: bool = True,
                 max_frame_pixels: int | None = MAX_FRAME_PIXELS,
                 max_decode_mb: int | None = MAX_DECODE_MB) -> None:
        self.path = path
        self.max_frame_pixels = max_frame_pixels
        self.max_decode_mb = max_decode_mb
        # max_pixels: the probe decode of avformat_find_stream_info refuses big frames too
        options = {"max_pixels": str(max_frame_pixels)} if max_frame_pixels else None
        try:
            self._container = av.open(str(path), metadata_errors="ignore", options=options)
        except av.error.FFmpegError as e:
            raise VideoDecodeError(path, f"cannot open as a video, the file is truncated, "
                                   f"damaged or not a video ({type(e).__name__}: {e})") from e
        try:
            if not self._container.streams.video:
                raise VideoDecodeError(path, "the file has no video stream")
            self._stream = self._container.streams.video[0]
            ctx = self._stream.codec_context
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

    def _cached_index(self) -> _StreamIndex:
        st = self.path.stat()
        key = (str(self.path.resolve()), st.st_size, st.st_mtime_ns)
        index = _INDEX_CACHE.get(key)
        if index is None:
            index = _StreamIndex.build(self._container, self._stream, self.path)
            if index.needs_order:
                self._learn_order(index)
            _INDEX_CACHE[key] = index
            if len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
                _INDEX_CACHE.popitem(last=False)
        return index

    def _learn_order(self, index: _StreamIndex) -> None:
        """Decode the whole stream once (no RGB conversion) to learn the presentation order."""
        # One pass over the file's own packets, no RGB conversion and nothing kept: bounded
        # by the packet count and the pixel limit, not by the per-read max_decode_mb (which
        # would refuse every long HD AVI).
        self._budget = DecodeBudget(self.path, None)
        out_pts, out_key = [], []
        try:
            self._container.seek(index.start, backward=True, any_frame=False,
                                 stream=self._stream)
            for frame in self._decoded_frames({}, skip_nonref=False):
                out_pts.append(frame.pts)
                out_key.append(bool(frame.key_frame))
        except av.error.FFmpegError as e:
            raise VideoDecodeError(self.path, f"decoding the whole video to index it failed "
                                   f"({type(e).__name__}: {e}); the file is damaged") from e
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
        pts = np.asarray(self._index.pts[:self.num_frames], dtype=np.float64)
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
            self._read_into([0], {})
        assert self._rotation is not None
        return self._rotation

    def _note_rotation(self, frame: av.VideoFrame) -> None:
        if self._rotation is None:
            tag = self._stream.metadata.get("rotate")
            self._rotation = rotation_ops(_display_matrix(frame), tag)

    # -- decoding ------------------------------------------------------------------------------
    def read(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        stated = self._index.stated_frames
        what = f"the video (its header claims {stated})" if stated not in (0, self.num_frames) \
            else "the video"
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
            keys = [self._index.pts_to_index.get(self._keyframe_before(pts[i]), 0)
                    for i in wanted]
        else:
            keys = [self._order_key_before(i)[0] for i in wanted]
        planned, covered = 0, -1  # frames from each wanted frame's keyframe on, counted once
        for key, i in zip(keys, wanted):
            planned += i - max(key, covered + 1) + 1
            covered = i
        self._budget = DecodeBudget(self.path, self.max_decode_mb)
        self._budget.plan(planned, self._stream.width, self._stream.height,
                          f"reading frames {wanted[:8]}{'...' if len(wanted) > 8 else ''}")
        pos = 0
        while pos < len(wanted):
            if order is None:
                pos += self._decode(pts_of, wanted[pos:], got)
            else:
                pos += self._decode_ordered(wanted[pos:], got)

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
        self._not_produced(todo[0], f"pts {first}")

    def _not_produced(self, index: int, where: str) -> NoReturn:
        detail = f" (decoder error: {self._last_error})" if self._last_error else ""
        raise VideoDecodeError(self.path, f"frame {index} ({where}) was not produced by "
                               f"the decoder, even when decoding from the start{detail}; the "
                               "file is truncated or damaged")

    def _decoded_frames(self, wanted_pts: dict[int, int],
                        skip_nonref: bool = True) -> Iterator[av.VideoFrame]:
        """Decode from the current position; a damaged packet is skipped, as ffmpeg does.

        Packets of frames nobody asked for are decoded with ``skip_frame="NONREF"``: the
        decoder drops them when no other frame references them (non-reference B-frames).
        Every frame is charged to the decode budget; a frame over the pixel limit is refused
        by the decoder (``max_pixels``) before it is allocated.
        """
        ctx = self._stream.codec_context
        skip_nonref = skip_nonref and self._skip_nonref
        for packet in self._container.demux(self._stream):
            skip = "NONREF" if skip_nonref and packet.pts is not None \
                and packet.pts not in wanted_pts else "DEFAULT"
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
            with av.logging.Capture() as logs:
                try:
                    packet.decode()
                except av.error.FFmpegError:
                    pass
        finally:
            av.logging.set_level(level)
            av.logging.set_skip_repeated(skip_repeated)
        for _, _, message in logs:
            m = re.search(r"Picture size (\d+)x(\d+)", message)
            if m:
                check_frame_size(self.path, int(m[1]), int(m[2]), self.max_frame_pixels)
        if any("max pixel" in message for _, _, message in logs):
            raise VideoDecodeError(self.path, "a frame exceeds the limit of "
                                   f"{_mp(self.max_frame_pixels)} MP "
                                   "(data.max_frame_pixels)") from error

    def _decode_from(self, target: int, todo: list[int], pts_of: dict[int, int],
                     wanted_pts: dict[int, int], got: dict[int, np.ndarray]) -> int:
        done, kept = 0, []
        try:
            self._container.seek(target, backward=True, any_frame=False, stream=self._stream)
            for frame in self._decoded_frames(wanted_pts):
                self._note_rotation(frame)
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

    # -- decoding by output order (AVI) --------------------------------------------------------
    def _order_key_before(self, i: int) -> tuple[int, int | None]:
        """Output position and seek timestamp of the last keyframe at or before frame ``i``
        (position 0 and ``None``, the stream start, when there is none)."""
        order = self._index.order
        assert order is not None
        k = bisect.bisect_right(order.key_ord, i) - 1
        return (order.key_ord[k], order.key_seek[k]) if k >= 0 else (0, None)

    def _decode_ordered(self, todo: list[int], got: dict[int, np.ndarray]) -> int:
        """Like ``_decode`` for a stream indexed by output order: seek to a keyframe whose
        output position is known, count output frames from it (each checked against the
        full decode's timestamps), falling back to the previous keyframe and the start."""
        order = self._index.order
        assert order is not None
        k = bisect.bisect_right(order.key_ord, todo[0]) - 1
        candidates = [c for c in (k, k - 1) if c >= 0] + [None]
        for c in candidates:
            done = self._decode_ordered_from(c, todo, got)
            if done:
                return done
        self._not_produced(todo[0], "in decoder output order")

    def _decode_ordered_from(self, key: int | None, todo: list[int],
                             got: dict[int, np.ndarray]) -> int:
        order = self._index.order
        assert order is not None
        target = self._index.start if key is None else order.key_seek[key]
        position = 0 if key is None else None  # output position of the next frame, once known
        wanted, done, kept = set(todo), 0, []
        try:
            self._container.seek(target, backward=True, any_frame=False, stream=self._stream)
            for frame in self._decoded_frames({}, skip_nonref=False):
                self._note_rotation(frame)
                if position is None:  # frames before the keyframe (open GOP) are not counted
                    if not frame.key_frame or frame.pts not in order.key_by_pts:
                        continue
                    position = order.key_by_pts[frame.pts]
                if position > todo[done] or position >= len(order.out_pts):
                    break  # landed past the wanted frame
                if order.verify and frame.pts != order.out_pts[position]:
                    break  # not the frame the full decode gave here: distrust from here on
                if position in wanted and position not in got:
                    got[position] = frame.to_ndarray(format="rgb24")
                    kept.append(position)
                while done < len(todo) and todo[done] in got:
                    done += 1
                if done == len(todo):
                    break
                position += 1
                next_key = self._order_key_before(todo[done])[0]
                if next_key > position:  # cheaper to seek than decode through
                    break
        except av.error.FFmpegError as e:
            if not done:
                raise VideoDecodeError(self.path, f"decoding failed near frame {todo[0]} "
                                       f"({type(e).__name__}: {e}); the file is damaged") from e
        if not done:
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


@functools.cache
def torchcodec_available() -> bool:
    """True when torchcodec imports (its FFmpeg libraries load) and decodes a probe video."""
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception:  # noqa: BLE001 -- ImportError, or OSError/RuntimeError from FFmpeg libs
        return False
    try:
        frames = VideoDecoder(_probe_video_bytes(), seek_mode="exact").get_frames_at([0, 1]).data
        return tuple(frames.shape) == (2, 3, 32, 32) and frames[1].float().mean() > 64
    except Exception:  # noqa: BLE001 -- any failure means: not usable here
        return False


class _TorchCodecReader:
    backend = "torchcodec"

    def __init__(self, path: Path, threads: int = 1,
                 max_frame_pixels: int | None = MAX_FRAME_PIXELS,
                 max_decode_mb: int | None = MAX_DECODE_MB) -> None:
        from torchcodec.decoders import VideoDecoder

        self.path = path
        self.max_decode_mb = max_decode_mb
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
        check_frame_size(path, self.width, self.height, max_frame_pixels)

    def read(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        order = check_indices(self.path, indices, self.num_frames)
        DecodeBudget(self.path, self.max_decode_mb).plan(  # a lower bound: the wanted frames
            len(set(order)), self.width, self.height, f"reading {len(set(order))} frames")
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

    def __init__(self, path: PathLike, backend: str = "auto", threads: int = 1,
                 apply_rotation: bool = True, max_frame_pixels: int | None = MAX_FRAME_PIXELS,
                 max_decode_mb: int | None = MAX_DECODE_MB) -> None:
        self.path = check_file(path)
        limits = {"max_frame_pixels": max_frame_pixels, "max_decode_mb": max_decode_mb}
        if backend not in ("auto", "pyav", "torchcodec"):
            raise ValueError(f"backend must be 'auto', 'pyav' or 'torchcodec', got {backend!r}")
        if backend == "torchcodec" and not torchcodec_available():
            raise RuntimeError("backend='torchcodec' but torchcodec is not installed or cannot "
                               "decode (it needs FFmpeg libraries and a matching torch build)")
        self._impl: _PyAVReader | _TorchCodecReader
        if backend == "torchcodec" or (backend == "auto" and self.path.suffix.lower() != ".avi"
                                       and torchcodec_available()):
            self._impl = _TorchCodecReader(self.path, threads, **limits)
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

    def __enter__(self) -> Self:
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
    else to :class:`VideoReader` (``backend``, ``threads``, ``apply_rotation``). All take
    ``max_frame_pixels`` and ``max_decode_mb``.
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
