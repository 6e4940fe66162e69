"""Re-encoding one video for fast clip sampling: the settings and :func:`encode_video`.

The source is decoded with PyAV and written as H.264 mp4 (yuv420p, x264 ``crf`` /
``preset``) with a keyframe every ``gop`` frames and no B-frames, its short side scaled down
to ``short_side`` (never up; both sides even), optionally resampled to ``fps``, audio dropped,
display rotation applied (:mod:`xvit.data.rotation`). :mod:`xvit.data.prepare` runs it over a
whole dataset.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import av

from xvit.data.errors import PathLike, VideoDecodeError
from xvit.data.limits import check_file
from xvit.data.rotation import display_matrix, rotation_ops, swaps_axes
from xvit.data.settings import VERSION, PrepareSettings, parse_fps

__all__ = ["VERSION", "PrepareSettings", "encode_video", "output_size", "parse_fps"]


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Output (width, height): the short side scaled to ``short_side`` keeping the aspect
    ratio, never enlarged (``0``: keep), each side rounded to an even number >= 2."""
    short = min(width, height)
    scale = short_side / short if 0 < short_side < short else 1.0

    def even(x: float) -> int:
        return max(2, 2 * math.floor(x / 2 + 0.5))

    if scale == 1.0:
        return max(2, width - width % 2), max(2, height - height % 2)
    return even(width * scale), even(height * scale)


# libavfilter ``transpose`` argument of each transposing rotation op (see xvit.data.rotation)
_TRANSPOSE = {"clock": "clock", "cclock": "cclock", "transpose": "cclock_flip", "clock_flip": "clock_flip"}


class _Pipeline:
    """decoded frames -> scale -> rotation -> [fps] -> yuv420p -> libx264 in an mp4."""

    def __init__(
        self,
        out: av.container.OutputContainer,
        first: av.VideoFrame,
        time_base: Fraction,
        rate: Fraction,
        settings: PrepareSettings,
        threads: int,
        rotate_tag: str | None,
    ) -> None:
        ops = rotation_ops(display_matrix(first)) or rotation_ops(None, rotate_tag)
        swap = swaps_axes(ops)
        w, h = output_size(first.width, first.height, settings.short_side)
        self.size, self.format = (first.width, first.height), first.format.name
        self.graph = av.filter.Graph()
        nodes = [
            self.graph.add_buffer(
                width=first.width, height=first.height, format=first.format, time_base=time_base
            ),
            self.graph.add("scale", f"{w}:{h}:flags=bicubic"),
        ]
        for op in ops:
            nodes.append(
                self.graph.add("transpose", _TRANSPOSE[op]) if op in _TRANSPOSE else self.graph.add(op)
            )
        fps = parse_fps(settings.fps) if settings.fps else None
        if fps is not None:
            nodes.append(self.graph.add("fps", f"{fps.numerator}/{fps.denominator}"))
        nodes += [self.graph.add("format", "yuv420p"), self.graph.add("buffersink")]
        self.graph.link_nodes(*nodes).configure()
        self.out = out
        self.stream = out.add_stream("libx264", rate=fps or rate)
        self.stream.width, self.stream.height = (h, w) if swap else (w, h)
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = Fraction(1, 1) / fps if fps else time_base
        self.stream.gop_size = settings.gop
        self.stream.options = {
            "crf": str(settings.crf),
            "preset": settings.preset,
            "x264-params": f"keyint={settings.gop}:min-keyint={settings.gop}:scenecut=0:bframes=0"
            f":threads={threads}",
        }
        self.frames = 0
        self._last_pts: int | None = None

    def push(self, frame: av.VideoFrame | None) -> None:
        if frame is not None and (
            (frame.width, frame.height) != self.size or frame.format.name != self.format
        ):
            frame = frame.reformat(width=self.size[0], height=self.size[1], format=self.format)
        self.graph.push(frame)
        while True:
            try:
                out = self.graph.pull()
            except (av.BlockingIOError, av.EOFError):
                break
            self._encode(out)
        if frame is None:
            self._encode(None)

    def _encode(self, frame: av.VideoFrame | None) -> None:
        if frame is not None:
            pts = int(frame.pts)
            if self._last_pts is not None and pts <= self._last_pts:
                pts = self._last_pts + 1  # x264 needs strictly increasing timestamps
            frame.pts, self._last_pts = pts, pts
            frame.time_base = self.stream.codec_context.time_base
            frame.pict_type = av.video.frame.PictureType.NONE
            self.frames += 1
        for packet in self.stream.encode(frame):
            self.out.mux(packet)


def encode_video(src: PathLike, dst: PathLike, settings: PrepareSettings, threads: int = 1) -> int:
    """Re-encode ``src`` into the mp4 ``dst`` (written directly; callers write to a
    temporary name). Returns the number of frames written; raises
    :class:`~xvit.data.errors.VideoDecodeError` when nothing can be read."""
    path = check_file(src)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise VideoDecodeError(
            path,
            f"cannot open as a video, the file is truncated, damaged "
            f"or not a video ({type(e).__name__}: {e})",
        ) from None
    with container:
        if not container.streams.video:
            raise VideoDecodeError(path, "the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO" if threads > 1 else "SLICE"
        stream.thread_count = threads
        time_base = stream.time_base or Fraction(1, 1000)
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        rotate_tag = stream.metadata.get("rotate")
        pipeline: _Pipeline | None = None
        first_pts: int | None = None
        errors = 0
        last_error = ""
        next_pts = 0
        with av.open(os.fspath(dst), "w", format="mp4") as out:

            def feed(frame: av.VideoFrame) -> None:
                nonlocal pipeline, first_pts, next_pts
                pts = frame.pts if frame.pts is not None else next_pts
                if first_pts is None:
                    first_pts = pts
                frame.pts = pts - first_pts
                next_pts = pts + 1
                if pipeline is None:
                    pipeline = _Pipeline(out, frame, time_base, Fraction(rate), settings, threads, rotate_tag)
                pipeline.push(frame)

            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError as e:  # a damaged packet: skip it, as ffmpeg does
                    errors += 1
                    last_error = str(e)
                    continue
                for frame in frames:
                    feed(frame)
            if pipeline is None:
                detail = f" ({errors} damaged packets, last error: {last_error})" if errors else ""
                raise VideoDecodeError(path, f"no video frames could be decoded{detail}")
            pipeline.push(None)
            return pipeline.frames
