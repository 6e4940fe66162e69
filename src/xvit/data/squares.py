"""The moving-squares dataset: four directions of one bright square, two time-reversed twin
pairs (right/left, down/up), learnable from scratch in a few epochs.

It is not :mod:`xvit.data.synth`'s renderer on purpose: its squares are hard-edged, move a
whole number of pixels per frame and may come with static distractor squares, and the
ablation figures of docs/results.md were measured on exactly these videos; the encoding is
synth's :func:`~xvit.data.synth.write_mp4` (yuv444p, crf 10, default GOP).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xvit.data.synth import write_mp4

__all__ = ["SQUARES_CLASSES", "render_squares_clip", "write_squares_dataset"]


SQUARES_CLASSES = ("moving right", "moving left", "moving down", "moving up")
_SQUARES_MOVES = ((0, 1), (0, -1), (1, 0), (-1, 0))


def render_squares_clip(
    label: int,
    rng: np.random.Generator,
    frames: int = 8,
    size: int = 32,
    square: int = 8,
    speed: int = 2,
    noise: float = 8.0,
    distractors: int = 0,
) -> np.ndarray:
    """uint8 ``(frames, size, size, 3)``: a bright square (colour 150-255 per channel) moving
    ``speed`` pixels per frame in the class's direction, wrapping around (so its position at
    any frame is uniform whatever the class), plus ``distractors`` static bright squares, on a
    dark flat colour (0-119 per channel) with Gaussian pixel noise. No single frame tells the
    class."""
    x = np.empty((frames, size, size, 3), np.float32)
    x[:] = rng.integers(0, 120, size=3)
    x += rng.normal(0.0, noise, size=x.shape)

    def paint(t: int, y: int, x0: int, c: np.ndarray) -> None:
        rows, cols = (y + np.arange(square)) % size, (x0 + np.arange(square)) % size
        x[t][np.ix_(rows, cols)] = c

    for _ in range(distractors):
        c, (y, x0) = rng.integers(150, 256, size=3), rng.integers(0, size, size=2)
        for t in range(frames):
            paint(t, y, x0, c)
    c, (y, x0) = rng.integers(150, 256, size=3), rng.integers(0, size, size=2)
    dy, dx = _SQUARES_MOVES[label]
    for t in range(frames):
        paint(t, y + dy * speed * t, x0 + dx * speed * t, c)
    return np.clip(x, 0, 255).round().astype(np.uint8)


def write_squares_dataset(
    root: str | Path, num_train: int = 256, num_val: int = 50, seed: int = 0, **render: Any
) -> dict[str, Path]:
    """Write the moving-squares dataset (``num_train`` / ``num_val`` videos per class, H.264
    mp4, lossless-ish crf 10) with ``train.txt``, ``val.txt`` and ``classnames.txt``.

    Four classes in two time-reversed twin pairs (right/left, down/up); ``render`` goes to
    :func:`render_squares_clip`. Returns the list files.
    """
    root = Path(root)
    lists: dict[str, Path] = {}
    for split, n, split_seed in (("train", num_train, 0), ("val", num_val, 1)):
        (root / split).mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, split_seed])
        lines = []
        for i in range(n * len(SQUARES_CLASSES)):
            label = i % len(SQUARES_CLASSES)
            frames = render_squares_clip(label, rng, **render)
            name = f"{split}/{i:05d}.mp4"
            write_mp4(root / name, frames, fps=8, crf=10, pix_fmt="yuv444p", keyint=None)
            lines.append(f"{name} {label}")
        lists[split] = root / f"{split}.txt"
        lists[split].write_text("\n".join(lines) + "\n")
    lists["classnames"] = root / "classnames.txt"
    lists["classnames"].write_text("\n".join(SQUARES_CLASSES) + "\n")
    return lists
