"""Shared helpers for the engine and CLI tests (no tests here): tiny encoded videos and the
tiny-run configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

# A tiny X-ViT (D=64, depth 2, 32x32 input, 4 frames) on a handful of clips.
TINY_MODEL = [
    "model.name=xvit_tiny_patch16",
    "model.head=avg",
    "model.overrides.embed_dim=64",
    "model.overrides.depth=2",
    "model.overrides.num_heads=2",
    "data.num_frames=4",
    "data.img_size=32",
    "data.train_scale=[32,36]",
]


def write_video(path: Path, frames: np.ndarray, fps: int = 8) -> None:
    """Encode uint8 ``(T, H, W, 3)`` frames as H.264 mp4."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def make_dataset(
    root: Path,
    n_train: int = 12,
    n_val: int = 6,
    classes: int = 3,
    frames: int = 8,
    size: int = 32,
    broken_val: int = 0,
) -> dict[str, Path]:
    """Videos of a bright square moving in a class-specific direction, with list files
    ``train.txt`` / ``val.txt`` and ``classnames.txt``; ``broken_val`` garbage files are
    appended to the validation list."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    moves = [(1, 0), (-1, 0), (0, 1), (0, -1)]

    def clip(label: int) -> np.ndarray:
        x = np.zeros((frames, size, size, 3), np.uint8)
        x[:] = rng.integers(0, 60, size=3, dtype=np.uint8)
        y0, x0 = rng.integers(8, size - 16, size=2)
        dy, dx = moves[label % 4]
        for t in range(frames):
            yy, xx = y0 + 2 * dy * t, x0 + 2 * dx * t
            x[t, max(yy, 0) : yy + 8, max(xx, 0) : xx + 8] = 230
        return x

    lists = {}
    for split, n in (("train", n_train), ("val", n_val)):
        lines = []
        for i in range(n):
            label = i % classes
            name = f"{split}_{i:03d}.mp4"
            write_video(root / name, clip(label))
            lines.append(f"{name} {label}")
        if split == "val":
            for j in range(broken_val):
                name = f"broken_{j}.mp4"
                (root / name).write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 3)
                lines.append(f"{name} {j % classes}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
        lists[split] = root / f"{split}.txt"
    (root / "classnames.txt").write_text("\n".join(f"class_{c}" for c in range(classes)) + "\n")
    lists["classnames"] = root / "classnames.txt"
    return lists


def run_xvit(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the `xvit` command in a subprocess (1 thread, no TensorBoard import cost)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "xvit.cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one intra-op thread, above all on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
