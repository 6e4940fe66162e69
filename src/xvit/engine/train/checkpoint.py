"""Resumable training state on disk, written atomically.

A checkpoint is one ``torch.save`` file ``OUT/checkpoints/step_{global_step:08d}.pt`` holding
the model, optimiser, scheduler, grad scaler and EMA state, the RNG states of every rank
(torch, CUDA, numpy, Python) and the data-order position (epoch and batches done in it). It
is written to a temporary file, fsync'ed and renamed over the final name, then the directory
is fsync'ed, so a crash at any moment leaves either the old set of files or the new one.
Everything in it loads with ``torch.load(weights_only=True)``.

A checkpoint that cannot be read is moved aside as ``step_*.pt.unreadable`` by
:func:`quarantine` (kept for inspection, no longer listed), and pruning never deletes the
checkpoint just written, so an unreadable or foreign file can never push good ones out.
"""

from __future__ import annotations

import os
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xvit.engine.run.rundir import atomic_write

__all__ = [
    "FORMAT",
    "atomic_save",
    "capture_rng",
    "checkpoint_path",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "quarantine",
    "restore_rng",
]

_NAME = re.compile(r"^step_(\d+)\.pt$")

# The "format" entry of every training checkpoint (xvit.engine.train.train_state writes it).
FORMAT = "xvit-train-checkpoint"


def checkpoint_path(ckpt_dir: str | Path, global_step: int) -> Path:
    """The file name of the checkpoint taken after ``global_step`` optimiser steps."""
    return Path(ckpt_dir) / f"step_{global_step:08d}.pt"


class _Sink:
    """A file for ``torch.save`` that keeps the ``OSError`` of a failed write: torch's zip
    writer reports it only as ``RuntimeError: ... unexpected pos``."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` via a temporary file, fsync and ``os.replace``. On failure
    the temporary file is removed and ``path`` is untouched; a failed write (disk full,
    quota, file size limit) raises its ``OSError``."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            sink = _Sink(f)
            try:
                torch.save(obj, sink)
            except Exception as e:
                if sink.error is not None:
                    raise sink.error from e
                raise

    atomic_write(path, write)


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
        if not zipfile.is_zipfile(path):  # torch.save writes a zip; a truncated one is not
            raise RuntimeError(f"truncated or not a torch.save file ({path.stat().st_size} bytes)")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # report which file is unreadable, on one line
        lines = str(e).strip().splitlines() or [type(e).__name__]
        raise RuntimeError(f"cannot read checkpoint {path}: {lines[0]}") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RuntimeError(f"{path} is not an xvit training checkpoint")
    return state


def prune_checkpoints(ckpt_dir: str | Path, keep: int, newest: str | Path | None = None) -> None:
    """Delete all but the newest ``keep`` checkpoints (``keep`` 0 keeps everything).

    ``newest``, the checkpoint just written, is never deleted, and files of later steps
    (not written by this run: it is at ``newest``) neither count towards ``keep`` nor are
    deleted.
    """
    if keep <= 0:
        return
    found = list_checkpoints(ckpt_dir)
    if newest is not None:
        newest = Path(newest)
        limit = _step(newest)
        found = [p for p in found if _step(p) <= limit]
    for p in found[:-keep]:
        if newest is None or p.name != newest.name:
            p.unlink(missing_ok=True)


def quarantine(path: str | Path) -> Path:
    """Rename an unreadable checkpoint to ``<name>.unreadable`` so that it is no longer
    listed (nor resumed from, nor counted by pruning); returns the new name."""
    path = Path(path)
    target = path.with_name(path.name + ".unreadable")
    os.replace(path, target)
    return target


def _step(path: Path) -> int:
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else -1


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
