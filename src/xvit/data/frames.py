"""Videos stored as images: folders of extracted frames and HDF5 frame packs.

Both decode JPEG/PNG with PyAV's image decoders (libavcodec ``mjpeg`` / ``png``), fed one
packet straight to a codec context: no demuxer, no temporary file, no extra dependency (PIL is
not a dependency of xvit). Both follow the :class:`~xvit.data.video.VideoReader` API.

Frame folders: ``img_00001.jpg``-style names (TSN, Epic-Kitchens ``frame_0000000001.jpg``), a
``str.format`` template and the number of the first frame (1 by default). Frame ``i`` of the
reader is file ``template.format(start_index + i)``.

HDF5 packs follow the released X-ViT code (PySlowFast fork): one ``.h5`` file per video holding
one dataset (Kinetics: the file's only key; SSv2: the video id) whose elements are the encoded
image bytes of consecutive frames (variable-length uint8 or opaque/bytes elements). The frame
rate is not stored in that format; pass ``fps`` or set a dataset/file attribute ``fps``.

Both are bounded like video files: an image over ``max_frame_pixels`` is refused by the decoder
from its header (FFmpeg's ``max_pixels``, before the picture is allocated), and one read stops
once it has decoded ``max_decode_mb`` of frames.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from xvit.data.errors import PathLike, VideoDecodeError
from xvit.data.limits import (
    MAX_DECODE_MB,
    MAX_FRAME_PIXELS,
    DecodeBudget,
    check_file,
    check_frame_size,
    check_indices,
)
from xvit.data.reader_base import ReaderBase

__all__ = ["FrameFolderReader", "HDF5FrameReader", "decode_image"]

_CODEC_BY_MAGIC = ((b"\xff\xd8", "mjpeg"), (b"\x89PNG\r\n\x1a\n", "png"))


def decode_image(
    data: bytes, source: PathLike = "<bytes>", max_frame_pixels: int | None = MAX_FRAME_PIXELS
) -> np.ndarray:
    """Decode one JPEG or PNG image to a uint8 ``(H, W, 3)`` RGB array with PyAV.

    An image over ``max_frame_pixels`` (``None``/0: no limit) is refused from its header.
    """
    codec = next((c for magic, c in _CODEC_BY_MAGIC if data.startswith(magic)), None)
    if codec is None:
        raise VideoDecodeError(source, f"not a JPEG or PNG image (unknown header bytes {data[:8]!r})")
    ctx = av.CodecContext.create(codec, "r")
    if max_frame_pixels:
        ctx.options = {"max_pixels": str(max_frame_pixels)}
    try:
        frames = ctx.decode(av.Packet(data)) + ctx.decode(None)
    except av.error.ArgumentError as e:
        size = _image_size(data, codec)
        if max_frame_pixels and size is not None:
            check_frame_size(source, size[0], size[1], max_frame_pixels)
        hint = (
            (
                "; the decoder refuses images over the limit of "
                f"{max_frame_pixels / 1e6:.1f} MP (data.max_frame_pixels)"
            )
            if max_frame_pixels
            else ""
        )
        raise VideoDecodeError(
            source, f"cannot decode the {codec} image ({type(e).__name__}: {e}){hint}"
        ) from e
    except av.error.FFmpegError as e:
        raise VideoDecodeError(source, f"cannot decode the {codec} image ({type(e).__name__}: {e})") from e
    if not frames:
        raise VideoDecodeError(source, f"the {codec} image decoded to no picture (truncated?)")
    return frames[0].to_ndarray(format="rgb24")


def _image_size(data: bytes, codec: str) -> tuple[int, int] | None:
    """Width and height stated by a PNG header (IHDR), for the error message of a refused
    image; ``None`` for JPEG, whose size FFmpeg reports only in its log."""
    if codec == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def _stack(images: dict[int, np.ndarray], order: list[int], source: PathLike) -> torch.Tensor:
    shapes = {images[i].shape for i in images}
    if len(shapes) > 1:
        raise VideoDecodeError(source, f"frames have different sizes {sorted(shapes)}")
    wanted = sorted(images)
    slot = {i: k for k, i in enumerate(wanted)}
    unique = torch.from_numpy(np.stack([images[i] for i in wanted])).permute(0, 3, 1, 2)
    return unique[torch.tensor([slot[i] for i in order])].contiguous()


class _ImageReaderBase(ReaderBase):
    """Shared metadata and context-manager plumbing of the image-based readers."""

    path: Path
    _fps: float | None
    _size: tuple[int, int] | None = None
    max_frame_pixels: int | None = MAX_FRAME_PIXELS
    max_decode_mb: int | None = MAX_DECODE_MB

    def _decode(self, data: bytes, source: PathLike, budget: DecodeBudget) -> np.ndarray:
        image = decode_image(data, source, self.max_frame_pixels)
        budget.spend(image.shape[1], image.shape[0])
        return image

    @property
    def num_frames(self) -> int:
        raise NotImplementedError

    @property
    def fps(self) -> float | None:
        """Frame rate when known (``fps=`` argument or stored attribute), else None."""
        return self._fps

    @property
    def duration(self) -> float | None:
        return self.num_frames / self._fps if self._fps else None

    @property
    def height(self) -> int:
        return self._frame_size()[0]

    @property
    def width(self) -> int:
        return self._frame_size()[1]

    def _frame_size(self) -> tuple[int, int]:
        if self._size is None:
            h, w = self.read([0]).shape[-2:]
            self._size = (int(h), int(w))
        return self._size

    def read(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        raise NotImplementedError


class FrameFolderReader(_ImageReaderBase):
    """A folder of extracted frames, ``template.format(start_index + i)`` being frame ``i``.

    ``template=None`` detects the pattern from the folder's file names (one common prefix,
    zero-padded number, ``.jpg``/``.jpeg``/``.png``). The frame count is the highest frame
    number present (listed once, lazily); a missing file below it is a gap and an error.
    """

    backend = "frames"
    _NAME = re.compile(r"^(?P<prefix>.*?)(?P<num>\d+)\.(?P<ext>jpe?g|png)$", re.IGNORECASE)

    def __init__(
        self,
        path: PathLike,
        template: str | None = None,
        start_index: int = 1,
        fps: float | None = None,
        max_frame_pixels: int | None = MAX_FRAME_PIXELS,
        max_decode_mb: int | None = MAX_DECODE_MB,
    ) -> None:
        self.path = Path(path)
        self.max_frame_pixels, self.max_decode_mb = max_frame_pixels, max_decode_mb
        if not self.path.is_dir():
            raise VideoDecodeError(self.path, "frame folder not found")
        self.start_index = start_index
        self._fps = fps
        self._numbers: list[int] | None = None
        self.template = template if template is not None else self._detect_template()

    def _detect_template(self) -> str:
        patterns = set()
        for name in os.listdir(self.path):
            m = self._NAME.match(name)
            if m:
                patterns.add((m["prefix"], len(m["num"]), m["ext"]))
        if len(patterns) != 1:
            found = sorted(patterns)[:5] if patterns else "no numbered .jpg/.png files"
            raise VideoDecodeError(
                self.path,
                f"cannot detect the frame file pattern (found "
                f"{found}); pass template=, e.g. 'img_{{:05d}}.jpg'",
            )
        prefix, width, ext = patterns.pop()
        return f"{prefix}{{:0{width}d}}.{ext}"

    def _frame_numbers(self) -> list[int]:
        if self._numbers is None:
            fmt = re.escape(self.template)
            fmt = re.sub(r"\\\{[^}]*\\\}", r"(\\d+)", fmt)
            rx = re.compile(f"^{fmt}$")
            self._numbers = sorted(
                int(m[1])
                for n in os.listdir(self.path)
                if (m := rx.match(n)) and int(m[1]) >= self.start_index
            )
            if not self._numbers:
                raise VideoDecodeError(
                    self.path, f"no frame files matching {self.template!r} numbered from {self.start_index}"
                )
        return self._numbers

    @property
    def num_frames(self) -> int:
        return self._frame_numbers()[-1] - self.start_index + 1

    def frame_path(self, index: int) -> Path:
        return self.path / self.template.format(self.start_index + index)

    def read(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 ``(T, 3, H, W)`` RGB."""
        if isinstance(indices, (torch.Tensor, np.ndarray)):
            indices = indices.tolist()
        order = [int(i) for i in indices]
        if any(i < 0 for i in order):
            check_indices(self.path, order, self.num_frames, "the frame folder")
        images = {}
        budget = DecodeBudget(self.path, self.max_decode_mb)
        for i in sorted(set(order)):
            file = self.frame_path(i)
            try:
                data = file.read_bytes()
            except FileNotFoundError:
                n = self.num_frames
                if i >= n:
                    check_indices(self.path, [i], n, "the frame folder")
                raise VideoDecodeError(
                    file,
                    f"frame file is missing: a gap in the frame "
                    f"folder, which has files up to frame {n - 1} "
                    f"({self.frame_path(n - 1).name})",
                ) from None
            if not data:
                raise VideoDecodeError(file, "frame file is empty (0 bytes)")
            images[i] = self._decode(data, file, budget)
        return _stack(images, order, self.path)


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as e:
        raise ImportError(
            "reading HDF5 frame packs needs h5py: pip install 'xvit[hdf5]' (or pip install h5py)"
        ) from e
    return h5py


class HDF5FrameReader(_ImageReaderBase):
    """Encoded frames of one video in an HDF5 dataset (the released X-ViT code's format).

    ``key``: the dataset holding the video; ``None`` takes the file's only dataset.
    """

    backend = "hdf5"

    def __init__(
        self,
        path: PathLike,
        key: str | None = None,
        fps: float | None = None,
        max_frame_pixels: int | None = MAX_FRAME_PIXELS,
        max_decode_mb: int | None = MAX_DECODE_MB,
    ) -> None:
        h5py = _import_h5py()
        self.path = check_file(path)
        self.max_frame_pixels, self.max_decode_mb = max_frame_pixels, max_decode_mb
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as e:
            raise VideoDecodeError(self.path, f"cannot open as HDF5 ({e})") from e
        try:
            if key is None:
                keys = list(self._file.keys())
                if len(keys) != 1:
                    raise VideoDecodeError(
                        self.path, f"holds {len(keys)} datasets {keys[:5]}; pass key= to choose the video"
                    )
                key = keys[0]
            if key not in self._file:
                raise VideoDecodeError(self.path, f"has no dataset {key!r}")
            self.key = key
            self._data = self._file[key]
            if not isinstance(self._data, h5py.Dataset) or self._data.ndim != 1:
                raise VideoDecodeError(self.path, f"{key!r} is not a 1-D dataset of encoded frames")
            stored = self._data.attrs.get("fps", self._file.attrs.get("fps"))
            self._fps = fps if fps is not None else (float(stored) if stored else None)
        except BaseException:
            self._file.close()
            raise

    @property
    def num_frames(self) -> int:
        return int(self._data.shape[0])

    def read(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 ``(T, 3, H, W)`` RGB."""
        order = check_indices(self.path, indices, self.num_frames, f"the HDF5 video {self.key!r}")
        images = {}
        budget = DecodeBudget(self.path, self.max_decode_mb)
        for i in sorted(set(order)):
            raw = self._data[i]
            data = raw if isinstance(raw, bytes) else np.asarray(raw).tobytes()
            images[i] = self._decode(data, f"{self.path}[{self.key!r}][{i}]", budget)
        return _stack(images, order, self.path)

    def close(self) -> None:
        self._file.close()
