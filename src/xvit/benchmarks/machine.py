"""The machine a benchmark runs on: CPU model and flags, versions, git commit, load, and the
dense matmul rate that "achieved FLOP/s" is compared with."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from typing import Any

import torch

from xvit.models.hardware import matmul_rate, sync

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


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo``), else the processor or machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    wanted = (
                        "avx2",
                        "avx_vnni",
                        "avx512f",
                        "avx512_vnni",
                        "avx512_bf16",
                        "avx512_fp16",
                        "amx_bf16",
                        "amx_int8",
                        "amx_tile",
                    )
                    return [w for w in wanted if w in flags]
    except OSError:
        pass
    return []


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


#: What each precision's matrix products run on, by the CPU flags that decide it.
_ISA = (
    ("amx_bf16", "bf16 on AMX tiles"),
    ("avx512_bf16", "bf16 on AVX512-BF16"),
    ("amx_int8", "int8 on AMX tiles"),
    ("avx512_vnni", "int8 on AVX512-VNNI"),
    ("avx_vnni", "int8 on AVX-VNNI"),
)


def isa_summary(flags: list[str]) -> str:
    """The matrix-product hardware a CPU's flags name, e.g. "bf16 on AMX tiles, int8 on AMX
    tiles" (the first match per precision), or "no native bf16 or int8 products"."""
    seen: dict[str, str] = {}
    for flag, text in _ISA:
        precision = text.split()[0]
        if flag in flags and precision not in seen:
            seen[precision] = text
    return ", ".join(seen.values()) or "no native bf16 or int8 products"


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
