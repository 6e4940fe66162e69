"""Process-group setup for DDP runs launched by torchrun, and the few collectives the engine uses.

``torchrun --nproc-per-node N --no-python xvit train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them and
joins the group (gloo on CPU, nccl on CUDA). Without them everything runs as one process and
the helpers below are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from xvit.data.cores import available_cores, local_processes

__all__ = [
    "DeviceError",
    "DistInfo",
    "all_gather_object",
    "barrier",
    "cleanup",
    "configure_threads",
    "init_distributed",
    "raise_everywhere",
    "resolve_device",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class DeviceError(ValueError):
    """A ``--device`` that names no device, or one this machine does not have."""


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> the local CUDA device when there is one, else CPU; others as given.
    Raises :class:`DeviceError` (one line) for a string that names no device and for a CUDA
    device this machine does not have."""
    given = device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = f"cuda:{local_rank}"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device {given!r} is not a device: give auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {given!r} is not supported: give auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {given!r}: CUDA is not available here (torch {torch.__version__}); use cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {given!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return dev


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise RuntimeError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1; pick this process's device."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def configure_threads(requested: int, device: torch.device, workers: int) -> int:
    """Set this process's intra-op thread count and return it.

    ``requested`` > 0 is used as is. 0 (auto) on a CPU device shares the cores this process may
    use (:func:`available_cores`) among the local processes (``LOCAL_WORLD_SIZE``), leaves one
    core per data-loading worker, never raising
    the current count: spinning OpenMP threads on oversubscribed cores slow training severalfold.
    """
    if requested > 0:
        torch.set_num_threads(requested)
    elif device.type == "cpu":
        auto = max(1, available_cores() // local_processes() - workers)
        if auto < torch.get_num_threads():
            torch.set_num_threads(auto)
    return torch.get_num_threads()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist.is_initialized():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def raise_everywhere(error: Exception | None) -> None:
    """Rank 0's outcome on every rank: rank 0 raises its ``error``, and every other rank an
    exception of the same class with the same message, so that all stop alike instead of
    waiting for rank 0 at the next collective. For work only rank 0 does (other ranks pass
    None); the class must take its message as its one argument."""
    verdict = all_gather_object(None if error is None else (type(error), str(error)))[0]
    if error is not None:
        raise error
    if verdict is not None:
        raise verdict[0](verdict[1])


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums over ranks of a short list of numbers."""
    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def cleanup() -> None:
    """Leave the process group (call once at the end of a distributed run)."""
    if dist.is_initialized():
        dist.destroy_process_group()
