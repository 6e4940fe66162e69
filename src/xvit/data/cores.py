"""How many CPU cores this process may use, and the loader defaults that follow from it.

``os.cpu_count()`` counts the machine's cores; a process pinned by ``taskset``, a container's
CPU set or a batch scheduler may use fewer (``os.sched_getaffinity``). Every default that
sizes itself to the machine (data-loading workers, compute threads, decode processes) asks
:func:`available_cores` so that a 2-core machine does not start 4 workers.
"""

from __future__ import annotations

import os

__all__ = ["available_cores", "default_processes", "default_workers", "local_processes"]

# The most data-loading workers a default ever starts per process (more rarely helps a
# video loader that decodes a few clips per step, and each worker holds a copy of the dataset).
MAX_DEFAULT_WORKERS = 4


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def local_processes() -> int:
    """Training processes on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 without it)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1))
    except ValueError:
        return 1


def default_workers() -> int:
    """Data-loading workers per process when the config does not say: one core of this
    process's share is left for its compute threads, at most :data:`MAX_DEFAULT_WORKERS`
    (2 cores: 1 worker and 1 thread; 1 core: loading in the main process)."""
    share = available_cores() // local_processes()
    return max(0, min(MAX_DEFAULT_WORKERS, share - 1))


def default_processes(most: int = 2) -> int:
    """Processes of a CPU-bound pool when the caller does not say (`xvit data prepare`, `xvit
    data synth`): one per usable core, at most ``most``."""
    return max(1, min(most, available_cores()))
