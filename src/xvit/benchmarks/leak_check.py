"""The leak check of the synthetic dataset: can a single frame tell a class from its
time-reversed twin?

:func:`leak_check` fits two small classifiers on the twin pairs of
:mod:`xvit.data.synth`: ``per_frame`` sees every frame on its own (knowing its time index),
``temporal`` also sees the change to the next frame. A dataset without per-frame leaks keeps
``per_frame`` at chance (0.5) while ``temporal`` is near 1. ``xvit data leak-check DIR`` runs
:func:`leak_check_dataset` on a generated dataset.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from xvit.data.errors import PathLike
from xvit.data.synth import CLASS_NAMES, load_split

__all__ = ["frame_descriptors", "leak_check", "leak_check_dataset"]


def frame_descriptors(videos: torch.Tensor, threshold: float = 0.25) -> torch.Tensor:
    """Per-frame foreground descriptors of uint8 ``(N, T, H, W, 3)`` videos -> ``(N, T, 10)``.

    The foreground is where a pixel differs from the frame's median colour; the descriptor
    holds its weighted and plain area, centroid, second moments, orientation (cos, sin of
    twice the angle) and mean deviation: the quantities a per-frame leak would show (size,
    position, angle, opacity of the objects).
    """
    n, t, h, w, _ = videos.shape
    x = videos.permute(0, 1, 4, 2, 3).float().div(255).flatten(0, 1)
    dev = (x - x.flatten(2).median(-1).values[..., None, None]).abs().sum(1)
    fg = (dev > threshold).float()
    wgt = fg * dev
    mass = wgt.sum((1, 2)) + 1e-3
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    cx, cy = (wgt * xx).sum((1, 2)) / mass, (wgt * yy).sum((1, 2)) / mass
    dx, dy = xx - cx[:, None, None], yy - cy[:, None, None]
    cxx, cyy = (wgt * dx * dx).sum((1, 2)) / mass, (wgt * dy * dy).sum((1, 2)) / mass
    cxy = (wgt * dx * dy).sum((1, 2)) / mass
    phi = 0.5 * torch.atan2(2 * cxy, cxx - cyy)
    feats = [
        mass / (h * w),
        fg.mean((1, 2)),
        cx,
        cy,
        cxx,
        cyy,
        cxy,
        torch.cos(2 * phi),
        torch.sin(2 * phi),
        dev.mean((1, 2)),
    ]
    return torch.stack(feats, 1).view(n, t, -1)


class _FrameClassifier(nn.Module):
    """An MLP on one frame's descriptor (``diff=False``) or on (descriptor, next minus this)
    (``diff=True``), with a learned embedding of the time index and of the twin pair;
    per-frame logits are averaged over time."""

    def __init__(self, dim: int, num_frames: int, diff: bool, hidden: int = 64) -> None:
        super().__init__()
        self.diff = diff
        self.time_embed = nn.Embedding(num_frames - 1 if diff else num_frames, 8)
        self.pair_embed = nn.Embedding(len(CLASS_NAMES) // 2, 8)
        self.mlp = nn.Sequential(
            nn.Linear(dim * (2 if diff else 1) + 16, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2),
        )

    def frame_logits(self, d: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        if self.diff:
            d = torch.cat([d[:, :-1], d[:, 1:] - d[:, :-1]], dim=-1)
        b, t = d.shape[:2]
        extra = [
            self.time_embed.weight[None].expand(b, -1, -1),
            self.pair_embed(pair)[:, None].expand(-1, t, -1),
        ]
        return self.mlp(torch.cat([d, *extra], dim=-1))


def leak_check(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    steps: int = 300,
    seed: int = 0,
    models: tuple[str, ...] = ("per_frame", "temporal"),
) -> dict[str, float]:
    """Held-out accuracy of telling a video from its time-reversed twin, per-frame vs temporal.

    ``train``/``test``: ``(videos uint8 (N, T, H, W, 3), labels (N,))``. Both models get the
    twin pair and must say which twin it is (chance: 0.5). ``per_frame``: every frame on its
    own, knowing its time index (an MLP on :func:`frame_descriptors` plus a time-index
    embedding), trained so that each frame predicts the twin; video score = mean over frames.
    ``temporal``: the same model fed the descriptor and its change to the next frame.
    Returns ``{"per_frame", "temporal", "per_frame_by_pair", "temporal_by_pair"}``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add contention
    try:
        return _leak_check(train, test, steps, seed, models)
    finally:
        torch.set_num_threads(threads)


def _leak_check(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    seed: int,
    models: tuple[str, ...],
) -> dict[str, float]:
    d_train, d_test = frame_descriptors(train[0]), frame_descriptors(test[0])
    flat = d_train.flatten(0, 1)
    mean, std = flat.mean(0), flat.std(0) + 1e-3
    d_train, d_test = (d_train - mean) / std, (d_test - mean) / std
    y, pair = train[1].long() & 1, train[1].long() // 2
    y_test, pair_test = test[1].long() & 1, test[1].long() // 2
    out: dict[str, float] = {}
    for name, diff in (("per_frame", False), ("temporal", True)):
        if name not in models:
            continue
        torch.manual_seed(seed)
        model = _FrameClassifier(d_train.shape[-1], d_train.shape[1], diff)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
        for _ in range(steps):  # full batch: every frame must predict its video's twin
            logits = model.frame_logits(d_train, pair)
            loss = F.cross_entropy(logits.flatten(0, 1), y.repeat_interleave(logits.shape[1]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            hit = (model.frame_logits(d_test, pair_test).mean(1).argmax(1) == y_test).float()
        out[name] = float(hit.mean())
        out[f"{name}_by_pair"] = [float(hit[pair_test == k].mean()) for k in range(len(CLASS_NAMES) // 2)]
    return out


def leak_check_dataset(root: PathLike, steps: int = 300, seed: int = 0) -> dict[str, float]:
    """:func:`leak_check` on a generated dataset (decoded mp4s): fit on ``train.txt``,
    measure on ``val.txt``."""
    start = time.perf_counter()
    result = leak_check(load_split(root, "train"), load_split(root, "val"), steps=steps, seed=seed)
    result["seconds"] = time.perf_counter() - start
    return result
