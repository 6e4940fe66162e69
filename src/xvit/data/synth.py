"""The built-in temporal-reasoning dataset: classes that only frame order can tell apart.

Eight classes in four time-reversed twin pairs (label ``2k`` and ``2k + 1``):

=====  ========================  ===================================================
label  class                     what happens
=====  ========================  ===================================================
0 / 1  moving right / left       a shape glides horizontally (wrapping around the frame)
2 / 3  growing / shrinking       a shape grows (shrinks) steadily, then a new one starts
4 / 5  rotating clockwise / anti an asymmetric shape turns about a point near the frame centre
6 / 7  appearing / disappearing  shapes fade in slowly, then vanish (the reverse)
=====  ========================  ===================================================

Shapes, sizes, colours, positions, speeds and the background shade are random, and every
frame gets independent pixel noise. A video of the second twin is the exact time reversal
of an independently drawn video of the first.

No single frame tells a twin from the other, *at any time index*. Every animation is
stationary: its state at frame ``i`` (position on a torus, angle, or the phase of an object's
life cycle) is uniformly distributed whatever ``i`` is, because the phase at frame 0 is
uniform and objects that end a life cycle are replaced by freshly drawn ones. So frame ``i``
of a forward video and frame ``i`` of a reversed one (frame ``T-1-i`` of a forward video)
have the same distribution. :func:`xvit.benchmarks.leak_check.leak_check` measures it: a per-frame classifier with
one head per time index stays at chance inside twin pairs, a model that sees frame
differences does not.

:func:`generate` writes real H.264 mp4 files (PyAV) plus ``train.txt``, ``val.txt`` and
``classnames.txt`` in the list-file format; :func:`ensure_synth` generates once per
parameter set and reuses the files (a ``synth.json`` marker holds the parameters).
Horizontal flipping must stay off for this dataset (it swaps left/right and the sense of
rotation).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
import torch

from xvit.data.cores import default_processes
from xvit.data.settings import SynthConfig
from xvit.data.video import VideoReader

__all__ = [
    "CLASS_NAMES",
    "SynthConfig",
    "SynthInfo",
    "ensure_synth",
    "generate",
    "load_split",
    "render_split",
    "render_video",
    "twin_of",
    "write_mp4",
]

CLASS_NAMES = (
    "moving right",
    "moving left",
    "growing",
    "shrinking",
    "rotating clockwise",
    "rotating anticlockwise",
    "appearing",
    "disappearing",
)
VERSION = 3  # bump when the rendering changes, so cached datasets are regenerated


def twin_of(label: int) -> int:
    """The time-reversed twin class of ``label``."""
    return label ^ 1


@dataclass
class SynthInfo:
    """Where a generated dataset lives."""

    root: Path
    train_list: Path
    val_list: Path
    class_names_file: Path
    class_names: list[str]
    config: SynthConfig


# ---------------------------------------------------------------------------------------
# Rendering (numpy, anti-aliased via signed distances)
# ---------------------------------------------------------------------------------------

_PLAIN_SHAPES = ("circle", "square", "triangle", "diamond")
_ASYMMETRIC_SHAPES = ("hand", "L", "flag")


def _box(px: np.ndarray, py: np.ndarray, hx: float, hy: float) -> np.ndarray:
    qx, qy = np.abs(px) - hx, np.abs(py) - hy
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _shape_sdf(shape: str, px: np.ndarray, py: np.ndarray, r: np.ndarray | float) -> np.ndarray:
    """Signed distance (pixels, < 0 inside) of a shape of radius ``r`` in local coordinates."""
    if shape == "circle":
        return np.hypot(px, py) - r
    if shape == "square":
        return _box(px, py, 0.8 * r, 0.8 * r)
    if shape == "diamond":
        return (np.abs(px) + np.abs(py) - r) / math.sqrt(2)
    if shape == "triangle":  # equilateral, pointing up (y down)
        k = math.sqrt(3)
        x, y = np.abs(px), -py + 0.25 * r
        d1 = (k * x + y - r) / 2
        return np.maximum(d1, -y - 0.5 * r)
    if shape == "hand":  # a clock hand: bar from the centre with a disc at the tip
        bar = _box(px - 0.45 * r, py, 0.5 * r, 0.14 * r)
        tip = np.hypot(px - 0.85 * r, py) - 0.28 * r
        hub = np.hypot(px, py) - 0.22 * r
        return np.minimum(np.minimum(bar, tip), hub)
    if shape == "L":
        return np.minimum(
            _box(px, py - 0.1 * r, 0.18 * r, 0.75 * r), _box(px + 0.3 * r, py - 0.72 * r, 0.48 * r, 0.18 * r)
        )
    if shape == "flag":
        return np.minimum(
            _box(px, py, 0.12 * r, 0.9 * r), _box(px + 0.42 * r, py + 0.58 * r, 0.42 * r, 0.3 * r)
        )
    raise ValueError(f"unknown shape {shape!r}")


def _rotate(dx: np.ndarray, dy: np.ndarray, angle: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Frame offsets into the local coordinates of a shape turned by ``angle`` (y down)."""
    c, s = np.cos(angle), np.sin(angle)
    return c * dx + s * dy, -s * dx + c * dy


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A bright object colour (150-255 per channel): high contrast on the dark background."""
    return rng.uniform(150, 255, 3)


def _composite(frames: np.ndarray, sdf: np.ndarray, alpha: np.ndarray | float, colour: np.ndarray) -> None:
    """Paint a shape (coverage from its signed distance, times ``alpha``) into ``frames`` (T, H, W, 3)."""
    a = np.clip(0.5 - sdf, 0.0, 1.0) * alpha
    frames += a[..., None] * (colour - frames)


def _lifecycles(
    rng: np.random.Generator, num_frames: int, period: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Phase ``u`` in [0, 1) and life number of one object at every frame.

    The phase at frame 0 is uniform and advances by ``1 / period`` per frame, so ``u`` is
    uniform at every frame; each new life gets freshly drawn appearance parameters.
    """
    t = rng.uniform(0, 1) + np.arange(num_frames) / rng.uniform(*period)
    return t % 1.0, np.floor(t).astype(int)


def render_video(
    label: int, rng: np.random.Generator, size: int = 32, num_frames: int = 8, stationary: bool = True
) -> np.ndarray:
    """Render one video of class ``label`` as uint8 ``(T, H, W, 3)``: bright objects on a dark
    flat background with pixel noise.

    Odd labels are the time reversal of an independently drawn video of ``label - 1``.
    Lengths are for 32 x 32 frames (scaled with ``size``); speeds are per frame.
    ``stationary=False`` starts every animation at phase 0 (a deliberately leaky variant,
    used only to show that :func:`xvit.benchmarks.leak_check.leak_check` detects per-frame
    leaks).
    """
    if not 0 <= label < len(CLASS_NAMES):
        raise ValueError(f"label must be in [0, {len(CLASS_NAMES)}), got {label}")
    kind = label // 2
    k = size / 32.0
    frames = np.empty((num_frames, size, size, 3))
    frames[:] = rng.uniform(0, 100, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    t = np.arange(num_frames)[:, None, None]
    start = (lambda lo, hi: rng.uniform(lo, hi)) if stationary else (lambda lo, hi: lo)

    if kind == 0:  # moving right on a torus: x is uniform at every frame
        shape, r = rng.choice(_PLAIN_SHAPES), rng.uniform(4, 6) * k
        x0, y0 = start(0, size), rng.uniform(r, size - r)
        v = rng.uniform(2.0, 3.0) * k
        dx = (xx - (x0 + v * t) + size / 2) % size - size / 2
        _composite(frames, _shape_sdf(shape, dx, yy - y0, r), 1.0, _colour(rng))
    elif kind == 2:  # clockwise rotation (angle grows; y points down) about a point near the centre
        shape, r = rng.choice(_ASYMMETRIC_SHAPES), rng.uniform(9, 12) * k
        xc, yc = size / 2 + rng.uniform(-2, 2, 2) * k
        theta = start(0, 2 * math.pi) + rng.uniform(0.25, 0.4) * t
        px, py = _rotate(xx - xc, yy - yc, theta)
        _composite(frames, _shape_sdf(shape, px, py, r), 1.0, _colour(rng))
    else:  # kind 1 (growing) and 3 (appearing): objects with short life cycles
        for _ in range(1 if kind == 1 else 2):
            u, life = _lifecycles(rng, num_frames, (6.0, 8.0))
            if not stationary:
                u, life = np.arange(num_frames) / 7.0 % 1.0, np.zeros(num_frames, dtype=int)
            lives = {}
            for n in np.unique(life):  # appearance of each life, drawn in order
                r_max = (rng.uniform(11, 14) if kind == 1 else rng.uniform(4, 6)) * k
                lives[n] = (
                    rng.choice(_PLAIN_SHAPES),
                    r_max,
                    rng.uniform(r_max * 0.6, size - r_max * 0.6),
                    rng.uniform(r_max * 0.6, size - r_max * 0.6),
                    _colour(rng),
                )
            for i in range(num_frames):
                shape, r_max, x0, y0, colour = lives[life[i]]
                if kind == 1:  # the radius grows linearly from 1.5 px to r_max, then a new object
                    r, alpha = 1.5 * k + (r_max - 1.5 * k) * u[i], 1.0
                else:  # constant size, fades in from nothing to full brightness, then gone
                    r, alpha = r_max, u[i]
                _composite(frames[i : i + 1], _shape_sdf(shape, xx - x0, yy - y0, r)[None], alpha, colour)

    frames += rng.normal(0.0, 8.0, frames.shape)
    video = np.clip(np.round(frames), 0, 255).astype(np.uint8)
    return video[::-1].copy() if label % 2 else video


# ---------------------------------------------------------------------------------------
# Writing the dataset
# ---------------------------------------------------------------------------------------


def _slug(name: str) -> str:
    return name.replace(" ", "_")


def _video_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, {"train": 0, "val": 1}[split], index])


def write_mp4(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: int = 8,
    crf: int = 18,
    pix_fmt: str = "yuv420p",
    keyint: int | None = 1,
) -> None:
    """Encode uint8 ``(T, H, W, 3)`` RGB frames as H.264 (``pix_fmt``) in an mp4.

    ``keyint``: a keyframe every that many frames (``None``: x264's default). The synthetic
    dataset makes every frame a keyframe: no frame is coded from its neighbours, so the codec
    cannot leave a trace of the time direction in a single decoded frame.
    """
    with av.open(os.fspath(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.options = {
            "crf": str(crf),
            "preset": "veryfast",
            **({"x264-params": f"keyint={keyint}"} if keyint else {}),
        }
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _write_chunk(args: tuple[SynthConfig, str, list[tuple[int, int]], str]) -> None:
    cfg, split, jobs, root = args
    torch.set_num_threads(1)
    for index, label in jobs:
        video = render_video(label, _video_rng(cfg.seed, split, index), cfg.size, cfg.num_frames)
        path = Path(root) / split / _slug(CLASS_NAMES[label]) / f"{index:05d}.mp4"
        write_mp4(path, video, cfg.fps, cfg.crf)


def _split_jobs(cfg: SynthConfig, split: str) -> list[tuple[int, int]]:
    per_class = cfg.num_train if split == "train" else cfg.num_val
    return [(i, i % len(CLASS_NAMES)) for i in range(per_class * len(CLASS_NAMES))]


def generate(
    root: str | os.PathLike, config: SynthConfig | None = None, workers: int | None = None, **overrides: int
) -> SynthInfo:
    """Write the dataset into ``root`` (videos, ``train.txt``, ``val.txt``, ``classnames.txt``,
    ``synth.json``). ``overrides`` replace fields of ``config`` (``seed=1, num_train=50``...)."""
    cfg = config or SynthConfig()
    if overrides:
        cfg = SynthConfig(**{**asdict(cfg), **overrides})
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "synth.json").unlink(missing_ok=True)
    for split in ("train", "val"):
        shutil.rmtree(root / split, ignore_errors=True)
        for name in CLASS_NAMES:
            (root / split / _slug(name)).mkdir(parents=True)
    workers = workers or default_processes()
    chunks = []
    for split in ("train", "val"):
        jobs = _split_jobs(cfg, split)
        step = max(1, math.ceil(len(jobs) / (4 * workers)))
        chunks += [(cfg, split, jobs[i : i + step], str(root)) for i in range(0, len(jobs), step)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_chunk, chunks))
    else:
        for chunk in chunks:
            _write_chunk(chunk)
    for split in ("train", "val"):
        lines = [
            f"{split}/{_slug(CLASS_NAMES[label])}/{index:05d}.mp4 {label}"
            for index, label in _split_jobs(cfg, split)
        ]
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    (root / "classnames.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    marker = {"version": VERSION, **asdict(cfg)}
    (root / "synth.json").write_text(json.dumps(marker, indent=2) + "\n")
    return _info(root, cfg)


def _info(root: Path, cfg: SynthConfig) -> SynthInfo:
    return SynthInfo(
        root=root,
        train_list=root / "train.txt",
        val_list=root / "val.txt",
        class_names_file=root / "classnames.txt",
        class_names=list(CLASS_NAMES),
        config=cfg,
    )


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """An exclusive lock on ``root`` (several processes may ask for the dataset at once)."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    with open(root / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_synth(
    root: str | os.PathLike, seed: int = 0, config: SynthConfig | None = None, **overrides: int
) -> SynthInfo:
    """The dataset in ``root``, generated only if missing or made with other parameters."""
    cfg = config or SynthConfig(seed=seed)
    cfg = SynthConfig(**{**asdict(cfg), "seed": seed, **overrides})
    root = Path(root)
    with _locked(root):
        marker = root / "synth.json"
        wanted = {"version": VERSION, **asdict(cfg)}
        if marker.exists():
            try:
                found = json.loads(marker.read_text())
            except json.JSONDecodeError:
                found = None
            if found == wanted and all(
                (root / f).exists() for f in ("train.txt", "val.txt", "classnames.txt")
            ):
                return _info(root, cfg)
        return generate(root, cfg)


# ---------------------------------------------------------------------------------------
# Whole splits as tensors (for experiments on the data, e.g. xvit.benchmarks.leak_check)
# ---------------------------------------------------------------------------------------


def render_split(
    num_per_class: int, seed: int, size: int = 32, num_frames: int = 8, stationary: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render videos in memory (no encoding): ``(uint8 (N, T, H, W, 3), labels (N,))``."""
    labels = [i % len(CLASS_NAMES) for i in range(num_per_class * len(CLASS_NAMES))]
    videos = [
        render_video(lab, np.random.default_rng([seed, 2, i]), size, num_frames, stationary)
        for i, lab in enumerate(labels)
    ]
    return torch.from_numpy(np.stack(videos)), torch.tensor(labels)


def load_split(root: str | os.PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every video of a generated split: ``(uint8 (N, T, H, W, 3), labels (N,))``."""
    root = Path(root)
    videos, labels = [], []
    for line in (root / f"{split}.txt").read_text().split("\n"):
        if line.strip():
            path, label = line.rsplit(None, 1)
            with VideoReader(root / path) as reader:
                frames = reader.read(range(reader.num_frames))
            videos.append(frames.permute(0, 2, 3, 1))
            labels.append(int(label))
    return torch.stack(videos), torch.tensor(labels)
