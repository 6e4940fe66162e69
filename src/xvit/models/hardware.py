"""What this device's matrix units do, measured: the dense matmul rate in each precision, and
whether a low precision is hopelessly slow here.

Precision choices are made by measuring, not by reading CPU flags. A CPU with no native bf16
(AVX2 only, such as an AMD EPYC of the Zen 3 generation) multiplies bf16 through PyTorch's
fallback kernels at a fiftieth of its fp32 rate: a 2048 x 2048 bf16 product there takes
about 20 s, and a bf16 X-ViT-B/16 clip about five minutes. So every rate here grows the
product only while one product stays within a time budget, and :func:`slow_precision`
names a precision that is not worth timing on a whole model.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "HOPELESS_SHARE",
    "MATRIX_ISA",
    "cpu_flags",
    "cpu_model",
    "isa_summary",
    "matmul_rate",
    "product_flags",
    "slow_precision",
    "sync",
]

# A precision whose dense products run below this share of fp32's rate cannot make a model
# faster than fp32 (nothing else in a forward gains what the products lose): `--precision
# auto` does not time it and `xvit benchmark` shows why instead of a row.
HOPELESS_SHARE = 0.25
_PROBE_N = 1024  # the largest product the quick probe grows to
_PROBE_SECONDS = 0.05  # ... while one product stays within this budget
_probe_cache: dict[tuple[str, str], float] = {}


#: The CPU flags that decide how fast bf16 and int8 matrix products run, each with the
#: hardware it names (per precision, the first flag present names it).
MATRIX_ISA = (
    ("amx_bf16", "bf16 on AMX tiles"),
    ("avx512_bf16", "bf16 on AVX512-BF16"),
    ("amx_int8", "int8 on AMX tiles"),
    ("avx512_vnni", "int8 on AVX512-VNNI"),
    ("avx_vnni", "int8 on AVX-VNNI"),
)
#: The flags a benchmark records: the vector widths, and MATRIX_ISA's
_RECORDED_FLAGS = ("avx2", "avx512f", "avx512_fp16", "amx_tile", *(flag for flag, _ in MATRIX_ISA))


def _cpuinfo_field(field: str) -> str | None:
    """The first ``field`` line's value in ``/proc/cpuinfo`` (None where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo``), else the processor or machine type."""
    import platform

    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU's vector and matrix flags that decide a model's speed (``/proc/cpuinfo``), in
    a fixed order; empty where the OS does not say."""
    have = set((_cpuinfo_field("flags") or "").split())
    return [flag for flag in dict.fromkeys(_RECORDED_FLAGS) if flag in have]


def product_flags(flags: list[str] | set[str]) -> list[str]:
    """Of ``flags``, those in :data:`MATRIX_ISA`, in its order."""
    return [flag for flag, _ in MATRIX_ISA if flag in flags]


def isa_summary(flags: list[str]) -> str:
    """The matrix-product hardware a CPU's flags name, e.g. "bf16 on AMX tiles, int8 on AMX
    tiles" (the first match per precision), or "no native bf16 or int8 products"."""
    seen: dict[str, str] = {}
    for flag, text in MATRIX_ISA:
        precision = text.split()[0]
        if flag in flags and precision not in seen:
            seen[precision] = text
    return ", ".join(seen.values()) or "no native bf16 or int8 products"


def sync(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _product(n: int, dtype: torch.dtype, dev: torch.device, kernel: str) -> Callable[[], Any]:
    """One ``n x n`` product in ``dtype`` as a function. int8 has two kernels: ``int_mm``
    (``torch._int_mm``, int8 x int8 -> int32) and ``dynamic`` (a dynamically quantised
    ``nn.Linear``, what ``xvit quantize`` runs: activations quantised on the fly)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    if kernel == "int_mm":
        a = torch.randint(-128, 128, (n, n), generator=g, dtype=torch.int8).to(dev)
        b = torch.randint(-128, 128, (n, n), generator=g, dtype=torch.int8).to(dev)
        return lambda: torch._int_mm(a, b)
    if kernel == "dynamic":
        weight = torch.randn(n, n, generator=g)
        with warnings.catch_warnings():  # torch's deprecation notice for quantised tensors
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_tensor(weight, float(weight.abs().max()) / 127, 0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(qweight, None)
        x = torch.randn(n, n, generator=g)
        return lambda: torch.ops.quantized.linear_dynamic(x, packed)
    a = torch.randn(n, n, generator=g).to(dev, dtype)
    b = torch.randn(n, n, generator=g).to(dev, dtype)
    out = torch.empty(n, n, device=dev, dtype=dtype)
    return lambda: torch.mm(a, b, out=out)


def _time(product: Callable[[], Any], dev: torch.device) -> float:
    t0 = time.perf_counter()
    product()
    sync(dev)
    return time.perf_counter() - t0


def _rate(
    n: int, dtype: torch.dtype, repeats: int, dev: torch.device, max_product_s: float, kernel: str
) -> dict[str, Any]:
    size = min(n, 256)
    try:
        product = _product(size, dtype, dev, kernel)
        product()
    except (RuntimeError, AttributeError, NotImplementedError) as e:
        raise ValueError(f"no {str(dtype).replace('torch.', '')} matmul ({kernel}) on {dev}: {e}") from e
    sync(dev)
    t = _time(product, dev)
    while size < n and t * (min(n, 2 * size) / size) ** 3 <= max_product_s:
        size = min(n, 2 * size)
        product = _product(size, dtype, dev, kernel)
        product()
        sync(dev)
        t = _time(product, dev)
    for _ in range(2):
        product()
    sync(dev)
    times = [_time(product, dev) for _ in range(repeats)]
    flop = 2.0 * size**3
    return {
        "n": size,
        "requested_n": n,
        "dtype": str(dtype).replace("torch.", ""),
        "kernel": kernel,
        "gflops_median": flop / statistics.median(times) / 1e9,
        "gflops_max": flop / min(times) / 1e9,
    }


def matmul_rate(
    n: int = 2048,
    dtype: torch.dtype = torch.float32,
    repeats: int = 10,
    device: str | torch.device = "cpu",
    max_product_s: float = 2.0,
) -> dict[str, Any]:
    """Dense square matmul rate in GFLOP/s (``2 n^3`` per product): median and max over
    ``repeats`` timed products after warm ones.

    The product starts at 256 (or ``n`` when smaller) and doubles up to ``n`` only while one
    product is expected to take at most ``max_product_s``: ``n`` in the result is the size
    measured, ``requested_n`` the one asked for. ``torch.int8`` (GOP/s) is the faster of
    ``torch._int_mm`` and a dynamically quantised linear layer on the CPU (``kernel`` says
    which); ``ValueError`` where this torch build or device has neither."""
    dev = torch.device(device)
    if dtype != torch.int8:
        return _rate(n, dtype, repeats, dev, max_product_s, "mm")
    kernels = ("int_mm", "dynamic") if dev.type == "cpu" else ("int_mm",)
    rates, errors = [], []
    for kernel in kernels:
        try:
            rates.append(_rate(n, dtype, repeats, dev, max_product_s, kernel))
        except ValueError as e:
            errors.append(str(e))
    if not rates:
        raise ValueError("; ".join(errors))
    return max(rates, key=lambda r: r["gflops_median"])


def _quick_rate(dtype: torch.dtype, dev: torch.device) -> float:
    """A cheap rate (GFLOP/s, best of 3, one thread) for comparing precisions, cached per
    process."""
    key = (str(dev), str(dtype))
    if key not in _probe_cache:
        # one thread on the CPU: the ratio of precisions is a property of each core, and small
        # products on threads that share busy cores are timed at a fraction of their rate
        threads = torch.get_num_threads()
        if dev.type == "cpu":
            torch.set_num_threads(1)
        try:
            rate = matmul_rate(_PROBE_N, dtype, repeats=3, device=dev, max_product_s=_PROBE_SECONDS)
        finally:
            torch.set_num_threads(threads)
        _probe_cache[key] = rate["gflops_max"]
    return _probe_cache[key]


def slow_precision(dtype: torch.dtype, device: str | torch.device = "cpu") -> str | None:
    """Why ``dtype`` is not worth running a model in on ``device`` (its products at under
    :data:`HOPELESS_SHARE` of fp32's rate, measured by a probe of at most a few tenths of a
    second), or None. The reason is one line with both rates."""
    dev = torch.device(device)
    if dtype == torch.float32:
        return None
    try:
        rate = _quick_rate(dtype, dev)
    except ValueError as e:
        return str(e)
    fp32 = _quick_rate(torch.float32, dev)
    if rate >= HOPELESS_SHARE * fp32:
        return None
    name = str(dtype).replace("torch.", "").replace("bfloat16", "bf16").replace("float16", "fp16")
    where = "this CPU" if dev.type == "cpu" else str(dev)
    return (
        f"{name} products run at {rate:.3g} GFLOP/s against {fp32:.3g} in fp32 on {where} "
        f"({rate / fp32:.1%}: no native {name})"
    )
