"""Helpers that write small real test videos with PyAV and decode them the plain way.

Every frame carries its number as a binary bar code (8 blocks, white = 1) over a colour that
changes with the frame number, so consecutive frames differ everywhere and an off-by-one read
cannot pass an equality test.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np

# name -> (codec, pixel format, extra encoder options)
CODECS = {
    "mp4": ("libx264", "yuv420p", {"bf": "2"}),
    "webm": ("libvpx-vp9", "yuv420p", {"deadline": "realtime", "cpu-used": "8"}),
    "mkv": ("libx264", "yuv420p", {"bf": "3"}),
    "avi": ("mjpeg", "yuvj420p", {}),
    # MPEG-4 part 2 with B-frames in AVI: the demuxer seeks on dts, not pts
    "avi-mpeg4": ("mpeg4", "yuv420p", {"bf": "2"}),
}


def frame_pattern(i: int, height: int = 48, width: int = 64) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` picture of frame ``i``: colour ramp plus a binary code of ``i``."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack(
        [(x * 4 + i * 23) % 256, (y * 5 + i * 41) % 256, np.full_like(x, (i * 67) % 256)], axis=-1
    ).astype(np.uint8)
    block = width // 8
    for bit in range(8):
        img[: height // 3, bit * block : (bit + 1) * block] = 255 if (i >> bit) & 1 else 0
    return img


def write_video(
    path: str | Path,
    codec: str = "libx264",
    num_frames: int = 60,
    height: int = 48,
    width: int = 64,
    fps: int = 25,
    gop: int = 12,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    frame_ms: list[int] | None = None,
    rotation: float | None = None,
    container_format: str | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode ``frame_pattern`` frames into ``path``.

    ``frame_ms``: per-frame durations in milliseconds, giving a variable-frame-rate file.
    ``rotation``: counter-clockwise degrees stored as the stream's display matrix.
    """
    path = Path(path)
    with av.open(str(path), "w", format=container_format, options=container_options) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.gop_size = gop
        if options:
            stream.options = dict(options)
        if frame_ms is not None:
            stream.codec_context.time_base = fractions.Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        t = 0
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i, height, width), format="rgb24")
            if frame_ms is not None:
                frame.pts, frame.time_base = t, fractions.Fraction(1, 1000)
                t += frame_ms[i]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_test_video(path: str | Path, kind: str, **kwargs: object) -> Path:
    """``write_video`` with the codec of ``kind`` (a key of ``CODECS``)."""
    codec, pix_fmt, options = CODECS[kind]
    return write_video(path, codec=codec, pix_fmt=pix_fmt, options=options, **kwargs)


def full_decode(path: str | Path) -> np.ndarray:
    """All frames of the first video stream, in decoder output order: ``(N, H, W, 3)`` RGB."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def encode_image(img: np.ndarray, codec: str = "png") -> bytes:
    """Encode an RGB uint8 ``(H, W, 3)`` array as PNG (``png``) or JPEG (``mjpeg``) bytes."""
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height = img.shape[1], img.shape[0]
    ctx.pix_fmt = "rgb24" if codec == "png" else "yuvj420p"
    ctx.time_base = fractions.Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    if codec != "png":
        frame = frame.reformat(format="yuvj420p")
    return b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None))


def write_frame_folder(
    folder: str | Path,
    num_frames: int,
    template: str = "img_{:05d}.jpg",
    start_index: int = 1,
    height: int = 48,
    width: int = 64,
    codec: str | None = None,
) -> Path:
    """Write ``frame_pattern`` frames as image files named ``template.format(start + i)``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    codec = codec or ("png" if template.endswith(".png") else "mjpeg")
    for i in range(num_frames):
        data = encode_image(frame_pattern(i, height, width), codec)
        (folder / template.format(start_index + i)).write_bytes(data)
    return folder
