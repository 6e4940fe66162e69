"""Resumable training state on disk, written atomically.

A checkpoint is one ``torch.save`` file ``OUT/checkpoints/step_{global_step:08d}.pt`` holding
the model, optimiser, scheduler, grad scaler and EMA state, the RNG states of every rank
(torch, CUDA, numpy, Python) and the data-order position (epoch and batches done in it). It
is written to a temporary file, fsync'ed and renamed over the final name, then the directory
is fsync'ed, so a crash at any moment leaves either the old set of files or the new one.
Everything in it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "atomic_save",
    "capture_rng",
    "checkpoint_path",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "restore_rng",
]

_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_path(ckpt_dir: str | Path, global_step: int) -> Path:
    """The file name of the checkpoint taken after ``global_step`` optimiser steps."""
    return Path(ckpt_dir) / f"step_{global_step:08d}.pt"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not supported on this platform / file system
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` via a temporary file, fsync and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def list_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Complete checkpoint files in ``ckpt_dir``, oldest first (temporary files ignored)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint safely (tensors and plain containers only)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report which file is unreadable
        raise RuntimeError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(state, dict) or state.get("format") != "xvit-train-checkpoint":
        raise RuntimeError(f"{path} is not an xvit training checkpoint")
    return state


def prune_checkpoints(ckpt_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (``keep`` 0 keeps everything)."""
    if keep <= 0:
        return
    for p in list_checkpoints(ckpt_dir)[:-keep]:
        p.unlink(missing_ok=True)


def capture_rng() -> dict[str, Any]:
    """This process's RNG states: torch CPU (and CUDA), numpy and Python ``random``."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _py_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the RNG states saved by :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]
