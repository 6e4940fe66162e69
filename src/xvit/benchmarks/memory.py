"""Peak memory of one model's forward pass, measured in a fresh subprocess.

A process's peak RSS (``VmHWM``) only grows, so measuring several models in one process
would report the largest model's peak for all that follow. :func:`measure_memory` starts a
fresh Python for each model; inside it, after one warm call, for each (batch, dtype mode) the
peak is reset (``/proc/self/clear_refs``, Linux) and one forward is measured.

On CPU ``peak_mem_mib`` is the process's peak RSS during that forward (weights, libraries
and activations together) and ``activation_mib`` the part above the resident size before
it. On CUDA they are ``torch.cuda.max_memory_allocated`` and its rise over
``memory_allocated`` before the forward.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import torch

from xvit.benchmarks.forward import input_dtype, make_call, prepare_model
from xvit.benchmarks.spec import ModelSpec

__all__ = ["measure_memory", "read_proc_status_kib", "reset_peak_rss"]

_MIB = 1024.0 * 1024.0


def read_proc_status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (e.g. ``VmHWM``, ``VmRSS``), or ``None``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS; ``False`` where that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_memory(
    spec: ModelSpec,
    configs: Sequence[tuple[int, str]],
    device: str = "cpu",
    threads: int | None = None,
    timeout_s: float = 1800.0,
) -> dict[tuple[int, str], dict[str, Any]]:
    """Peak memory of ``spec``'s forward at each ``(batch, dtype_mode)``, in a subprocess.

    Returns a dict keyed by
    ``(batch, dtype_mode)`` with ``peak_mem_mib``, ``activation_mib``, ``memory_kind``
    (``"rss"`` or ``"cuda_max_allocated"``) and ``peak_reset`` (whether the peak could be
    reset between configurations). Raises ``RuntimeError`` when the subprocess fails.
    """
    payload = json.dumps(
        {
            "spec": spec.to_dict(),
            "configs": [list(c) for c in configs],
            "device": device,
            "threads": threads,
        }
    )
    # A fixed mmap threshold turns off glibc's dynamic one, so that large tensors freed after
    # a forward go back to the OS instead of staying in the heap (and in the RSS).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    proc = subprocess.run(
        [sys.executable, "-m", "xvit.benchmarks.memory", payload],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"memory subprocess for {spec.display} exited {proc.returncode}: {tail}")
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"memory subprocess for {spec.display} printed no result")
    rows = json.loads(lines[-1])["results"]
    return {(r["batch"], r["dtype_mode"]): r for r in rows}


def _child(payload: dict[str, Any]) -> dict[str, Any]:
    if payload.get("threads"):
        torch.set_num_threads(int(payload["threads"]))
    dev = torch.device(payload["device"])
    spec = ModelSpec.from_dict(payload["spec"])
    base_model = spec.build()
    out = []
    for i, (batch, mode) in enumerate(sorted(payload["configs"])):
        model = prepare_model(base_model, mode, dev)
        x = torch.randn(spec.input_shape(batch)).to(dev, input_dtype(mode))
        call = make_call(model, x, mode, dev)
        if i == 0:
            call()  # warm: one-time library initialisation is not the model's peak
        gc.collect()
        row: dict[str, Any] = {"batch": batch, "dtype_mode": mode}
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            before = torch.cuda.memory_allocated(dev)
            call()
            peak = torch.cuda.max_memory_allocated(dev)
            row.update(memory_kind="cuda_max_allocated", peak_reset=True)
        else:
            reset = reset_peak_rss()
            before = (read_proc_status_kib("VmRSS") or 0) * 1024
            call()
            peak = (read_proc_status_kib("VmHWM") or 0) * 1024
            row.update(memory_kind="rss", peak_reset=reset)
        row["peak_mem_mib"] = peak / _MIB
        row["activation_mib"] = max(peak - before, 0) / _MIB
        out.append(row)
        del model, x, call
        gc.collect()
    return {"results": out}


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))), flush=True)
