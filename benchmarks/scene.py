"""The test scene the data benchmarks encode: a panning texture with moving blocks.

Shared by decode_speed.py and prepare_speed.py (imported as a sibling module when those run
as scripts: ``python benchmarks/decode_speed.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F


def scene_frames(count: int, height: int, width: int, seed: int) -> Iterator[np.ndarray]:
    """``count`` uint8 ``(height, width, 3)`` frames: a panning textured background with four
    moving blocks."""
    rng = np.random.default_rng(seed)
    tex = rng.integers(0, 256, size=(height // 16 + 8, width // 16 + 8, 3), dtype=np.uint8)
    tex = torch.from_numpy(tex).permute(2, 0, 1)[None].float()
    tex = F.interpolate(tex, scale_factor=24, mode="bicubic")[0].clamp(0, 255).byte()
    tex = tex.permute(1, 2, 0).numpy()
    for i in range(count):
        dy, dx = (i * 2) % (tex.shape[0] - height), (i * 3) % (tex.shape[1] - width)
        img = tex[dy : dy + height, dx : dx + width].copy()
        for k in range(4):
            y = int((np.sin(i / 20 + k) + 1) / 2 * (height - 120))
            x = int((np.cos(i / 25 + 2 * k) + 1) / 2 * (width - 120))
            img[y : y + 120, x : x + 120] = (60 * k, 255 - 50 * k, (i * 4) % 256)
        yield img


def write_h264(
    path: Path,
    frames: Iterator[np.ndarray],
    fps: int,
    height: int,
    width: int,
    gop: int,
    options: dict[str, str],
) -> None:
    """Encode RGB frames as H.264 (yuv420p, libx264 ``options``) with a GOP of ``gop``."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size = gop
        stream.options = options
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
