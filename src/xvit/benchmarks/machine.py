"""The machine a benchmark runs on: CPU model and flags, versions, git commit, load, and the
dense matmul rate that "achieved FLOP/s" is compared with."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from typing import Any

import torch

from xvit.models.hardware import cpu_flags, cpu_model, isa_summary, matmul_rate, sync

__all__ = [
    "cpu_flags",
    "cpu_model",
    "git_commit",
    "isa_summary",
    "load_average",
    "machine_info",
    "measure_matmul_rate",
    "sync",
]


def load_average() -> tuple[float, float, float] | None:
    """The 1/5/15-minute load average, or ``None`` where the OS has none."""
    try:
        return tuple(round(v, 2) for v in os.getloadavg())  # type: ignore[return-value]
    except (AttributeError, OSError):
        return None


def git_commit() -> str | None:
    """The commit of the xvit source tree being measured (None outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """CPU/GPU model, core and thread counts, library versions, git commit, date and load."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "load_average": load_average(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def measure_matmul_rate(
    n: int = 2048,
    dtype: torch.dtype = torch.float32,
    repeats: int = 10,
    device: str = "cpu",
    max_product_s: float = 2.0,
) -> dict[str, Any]:
    """Dense ``n x n`` matmul rate in GFLOP/s: :func:`xvit.models.hardware.matmul_rate` (the
    product grows to ``n`` only while one product takes at most ``max_product_s``, so a
    precision with no native kernels, bf16 on an AVX2 CPU, is measured at a smaller size in
    seconds instead of at 2048 in minutes; the result's ``n`` says which)."""
    return matmul_rate(n, dtype, repeats, device, max_product_s)
