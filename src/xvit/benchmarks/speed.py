"""Inference speed of video models, measured side by side so that ratios are fair.

Every model of a run is built once and kept in memory; after warm-up the timed calls go
round-robin over all (model, batch, dtype) items, the starting item rotating each round
(spread evenly over the rounds), so that drift in the machine (frequency, other load) hits every model alike. Each item reports
the median and spread of its per-call times, clips/s, ms per clip, GFLOPs per clip (counted
on the meta device with the math attention backend, so attention is counted), parameters
and achieved GFLOP/s. Peak memory is measured afterwards, one fresh subprocess per model
(:mod:`xvit.benchmarks.memory`), since a process's peak RSS only ever grows.

bf16 comes in three modes: ``bf16-model`` (weights and input cast to bfloat16),
``bf16-autocast`` (fp32 weights under ``torch.autocast``) and ``bf16``, which times both on
each model and keeps the faster, recording which it picked.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from xvit.benchmarks.peers import PEERS, build_peer, peer_attention_backend

__all__ = [
    "DTYPE_MODES",
    "BenchItem",
    "ModelSpec",
    "count_forward_flops",
    "forward_context",
    "load_average",
    "machine_info",
    "measure_matmul_rate",
    "prepare_model",
    "run_benchmark",
    "summarize_times",
]

DTYPE_MODES = ("fp32", "bf16", "bf16-model", "bf16-autocast")


# --------------------------------------------------------------------------------------
# What to measure
# --------------------------------------------------------------------------------------


@dataclass
class ModelSpec:
    """One model at one clip size: a registry name of ours or a peer name (``hf_*``)."""

    name: str
    num_frames: int = 8
    img_size: int = 224
    size: str = "base"  # peers only: width/depth/heads from peers.PEER_SIZES
    overrides: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def source(self) -> str:
        """``"hf"`` for a transformers peer, ``"xvit"`` for a model of ours."""
        return "hf" if self.name in PEERS else "xvit"

    @property
    def display(self) -> str:
        """Short name used in tables: the label, or the name with the clip size."""
        return self.label or f"{self.name} {self.num_frames}x{self.img_size}"

    def build(self) -> nn.Module:
        """The model in eval mode with random weights, on the CPU in fp32."""
        if self.source == "hf":
            model = build_peer(
                self.name, self.num_frames, self.img_size, size=self.size, **self.overrides
            )
        else:
            import xvit

            model = xvit.create_model(
                self.name, num_frames=self.num_frames, img_size=self.img_size, **self.overrides
            )
        return model.eval()

    def input_shape(self, batch: int) -> tuple[int, ...]:
        """The clip batch shape the model takes: ours ``(B,3,T,H,W)``, peers ``(B,T,3,H,W)``."""
        t, s = self.num_frames, self.img_size
        return (batch, t, 3, s, s) if self.source == "hf" else (batch, 3, t, s, s)

    def attention_backend(self) -> str:
        """How attention is computed: SDPA for ours, the peer's own choice for peers."""
        return peer_attention_backend(self.name) if self.source == "hf" else "sdpa"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(**d)


@dataclass
class BenchItem:
    """One timed configuration: a model, a batch size, a dtype mode, eager or compiled."""

    spec_index: int
    batch: int
    dtype: str
    compiled: bool = False
    dtype_mode: str = ""  # the mode actually run (bf16 resolves to model or autocast)
    fn: Callable[[], Any] | None = None
    inner: int = 1
    times: list[float] = field(default_factory=list)
    compile_s: float | None = None
    error: str | None = None


# --------------------------------------------------------------------------------------
# Machine and reference rates
# --------------------------------------------------------------------------------------


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


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
                    return [w for w in wanted if w in flags]
    except OSError:
        pass
    return []


def _git_commit() -> str | None:
    """The commit of the xvit source tree being measured (None outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """CPU/GPU model, core and thread counts, library versions, git commit, date and load."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_flags": _cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "git_commit": _git_commit(),
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
) -> dict[str, float]:
    """Dense ``n x n`` matmul rate in GFLOP/s (``2 n^3`` per product): median and max."""
    dev = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dev, dtype)
    b = torch.randn(n, n, generator=g).to(dev, dtype)
    out = torch.empty(n, n, device=dev, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=out)
    _sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        _sync(dev)
        times.append(time.perf_counter() - t0)
    flop = 2.0 * n**3
    return {
        "n": n,
        "dtype": str(dtype).replace("torch.", ""),
        "gflops_median": flop / statistics.median(times) / 1e9,
        "gflops_max": flop / min(times) / 1e9,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------


def count_forward_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Forward FLOPs (2 per multiply-add) for one call on ``input_shape``.

    Counted with ``torch.utils.flop_counter`` and the math SDPA backend, so attention
    matmuls are included. The model is copied to the meta device first (no memory, no
    time); if some op has no meta kernel the count runs on a CPU copy instead.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    def _count(device: str) -> int:
        m = copy.deepcopy(model).to(device).float().eval()
        x = torch.zeros(tuple(input_shape), device=device)
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), counter:
            m(x)
        return int(counter.get_total_flops())

    try:
        return _count("meta")
    except (NotImplementedError, RuntimeError):
        return _count("cpu")


def _count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------
# Running a model in a dtype mode
# --------------------------------------------------------------------------------------


def forward_context(dtype_mode: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast for ``bf16-autocast``, nothing otherwise (inference mode is separate)."""
    if dtype_mode == "bf16-autocast":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: nn.Module, dtype_mode: str, device: torch.device) -> nn.Module:
    """The model as run in ``dtype_mode``: fp32 or autocast keep it, bf16-model casts it."""
    if dtype_mode not in ("fp32", "bf16-model", "bf16-autocast"):
        raise ValueError(f"dtype mode must be fp32, bf16-model or bf16-autocast, got {dtype_mode!r}")
    model = model.to(device)
    if dtype_mode == "bf16-model":
        return copy.deepcopy(model).to(torch.bfloat16)
    return model


def _input_dtype(dtype_mode: str) -> torch.dtype:
    return torch.bfloat16 if dtype_mode == "bf16-model" else torch.float32


def _make_call(
    model: nn.Module, x: torch.Tensor, dtype_mode: str, device: torch.device
) -> Callable[[], Any]:
    def call() -> Any:
        with torch.inference_mode(), forward_context(dtype_mode, device):
            out = model(x)
        _sync(device)
        return out

    return call


def _time_once(fn: Callable[[], Any], inner: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def summarize_times(times: Sequence[float]) -> dict[str, float]:
    """Median, quartiles (inclusive method), min and max of per-call times."""
    ts = sorted(times)
    if len(ts) >= 2:
        q1, _, q3 = statistics.quantiles(ts, n=4, method="inclusive")
    else:
        q1 = q3 = ts[0]
    return {
        "median_s": statistics.median(ts),
        "q1_s": q1,
        "q3_s": q3,
        "min_s": ts[0],
        "max_s": ts[-1],
    }


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def run_benchmark(
    specs: Sequence[ModelSpec],
    batches: Sequence[int] = (1, 8),
    dtypes: Sequence[str] = ("fp32",),
    device: str = "cpu",
    compile: bool = False,
    repeats: int = 5,
    warmup: int = 1,
    threads: int | None = None,
    memory: bool = True,
    min_repeat_s: float = 0.0,
    matmul_n: int | None = 2048,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure every spec at every batch and dtype mode, interleaved; return a JSON-able dict.

    The result has ``meta`` (machine, versions, settings, load before/after, matmul rates),
    ``models`` (one entry per spec: params, GFLOPs per clip) and ``results`` (one entry per
    timed item). ``min_repeat_s`` makes each timed repeat loop over as many calls as needed
    to last that long (for tiny models); ``matmul_n=None`` skips the matmul reference.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    for d in dtypes:
        if d not in DTYPE_MODES:
            raise ValueError(f"unknown dtype {d!r}; choose from {', '.join(DTYPE_MODES)}")
    if not specs:
        raise ValueError("no models to benchmark")
    if repeats < 1 or warmup < 0 or any(b < 1 for b in batches):
        raise ValueError("need repeats >= 1, warmup >= 0 and batch sizes >= 1")
    if threads:
        torch.set_num_threads(int(threads))
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch.cuda.is_available() is False")

    meta = machine_info(device)
    meta.update(
        device=device,
        batches=list(batches),
        dtypes=list(dtypes),
        compile=compile,
        repeats=repeats,
        warmup=warmup,
        min_repeat_s=min_repeat_s,
        load_average_before=load_average(),
    )
    if matmul_n:
        log(f"matmul reference rate ({matmul_n}x{matmul_n})")
        meta["matmul"] = {
            "fp32": measure_matmul_rate(matmul_n, torch.float32, device=device),
            "bf16": measure_matmul_rate(matmul_n, torch.bfloat16, device=device),
        }

    # Build every model once; count parameters and FLOPs per clip.
    models: list[nn.Module] = []
    model_rows: list[dict[str, Any]] = []
    for spec in specs:
        log(f"build {spec.display}")
        model = spec.build()
        models.append(model)
        model_rows.append(
            {
                **spec.to_dict(),
                "display": spec.display,
                "source": spec.source,
                "attention": spec.attention_backend(),
                "params": _count_params(model),
                "gflops_per_clip": count_forward_flops(model, spec.input_shape(1)) / 1e9,
            }
        )

    # Resolve each dtype mode per model (bf16 picks the faster of model and autocast).
    variants: dict[tuple[int, str], nn.Module] = {}
    resolved: dict[tuple[int, str], str] = {}
    probes: dict[int, dict[str, float]] = {}
    for i, (spec, model) in enumerate(zip(specs, models)):
        for d in dtypes:
            mode = d
            if d == "bf16":
                mode, probes[i] = _pick_bf16_mode(spec, model, dev, log)
                model_rows[i]["bf16_probe_s"] = probes[i]
                model_rows[i]["bf16_mode"] = mode
            resolved[(i, d)] = mode
            if (i, mode) not in variants:
                variants[(i, mode)] = prepare_model(model, mode, dev)

    # Items: every (model, batch, dtype), eager and, with compile, compiled.
    items: list[BenchItem] = []
    inputs: dict[tuple[int, int, str], torch.Tensor] = {}
    for i, spec in enumerate(specs):
        for d in dtypes:
            mode = resolved[(i, d)]
            for b in batches:
                key = (i, b, mode)
                if key not in inputs:
                    g = torch.Generator(device="cpu").manual_seed(0)
                    x = torch.randn(spec.input_shape(b), generator=g)
                    inputs[key] = x.to(dev, _input_dtype(mode))
                eager = BenchItem(i, b, d, False, mode)
                eager.fn = _make_call(variants[(i, mode)], inputs[key], mode, dev)
                items.append(eager)
    if compile:
        items += _compiled_items(specs, items, variants, inputs, dev, log)

    # Warm-up, then calibrate the calls per repeat (one warm call at least when calibrating).
    for it in items:
        if it.error or it.fn is None:
            continue
        n_warm = max(warmup, 1) if min_repeat_s > 0 else warmup
        if n_warm:
            log(f"warm-up {_item_name(specs, it)}")
        t = float("inf")
        for _ in range(n_warm):
            t = _time_once(it.fn)
        if min_repeat_s > 0 and t < min_repeat_s:
            it.inner = max(1, math.ceil(min_repeat_s / max(t, 1e-6)))

    live = [it for it in items if not it.error]
    meta["load_per_repeat"] = []
    for r in range(repeats):
        meta["load_per_repeat"].append(load_average())
        log(f"repeat {r + 1}/{repeats} (load {load_average()})")
        shift = (r * len(live)) // repeats  # spread each item's place in the round
        for it in live[shift:] + live[:shift]:
            it.times.append(_time_once(it.fn, it.inner))

    meta["load_average_after"] = load_average()
    for it in items:
        it.fn = None
    variants.clear()
    inputs.clear()

    results = [_result_row(specs, model_rows, it) for it in items]
    if memory:
        _attach_memory(specs, results, threads, device, log)
    return {"meta": meta, "models": model_rows, "results": results}


def _pick_bf16_mode(
    spec: ModelSpec, model: nn.Module, dev: torch.device, log: Callable[[str], None]
) -> tuple[str, dict[str, float]]:
    """Time bf16-model and bf16-autocast at batch 1 (one warm, two timed calls, alternating);
    keep the faster."""
    log(f"bf16 mode probe {spec.display}")
    x = torch.randn(spec.input_shape(1), generator=torch.Generator().manual_seed(0)).to(dev)
    calls = {}
    for mode in ("bf16-model", "bf16-autocast"):
        m = prepare_model(model, mode, dev)
        calls[mode] = _make_call(m, x.to(_input_dtype(mode)), mode, dev)
        calls[mode]()
    times: dict[str, list[float]] = {mode: [] for mode in calls}
    for _ in range(2):
        for mode, fn in calls.items():
            times[mode].append(_time_once(fn))
    best = {mode: min(ts) for mode, ts in times.items()}
    return min(best, key=best.get), best  # type: ignore[arg-type]


def _compiled_items(
    specs: Sequence[ModelSpec],
    eager_items: Sequence[BenchItem],
    variants: dict[tuple[int, str], nn.Module],
    inputs: dict[tuple[int, int, str], torch.Tensor],
    dev: torch.device,
    log: Callable[[str], None],
) -> list[BenchItem]:
    """``torch.compile`` each eager item's model; the first call's time is the compile time.

    Items whose compilation fails keep the error and are not timed.
    """
    compiled_models: dict[tuple[int, str], nn.Module] = {}
    failed: dict[tuple[int, str], str] = {}
    out = []
    for e in eager_items:
        it = BenchItem(e.spec_index, e.batch, e.dtype, True, e.dtype_mode)
        key = (e.spec_index, e.dtype_mode)
        if key in failed:
            it.error = failed[key]
            out.append(it)
            continue
        log(f"compile {_item_name(specs, it)}")
        try:
            if key not in compiled_models:
                compiled_models[key] = torch.compile(variants[key], dynamic=False)
            fn = _make_call(compiled_models[key], inputs[(e.spec_index, e.batch, e.dtype_mode)],
                            e.dtype_mode, dev)
            it.compile_s = _time_once(fn)
            it.fn = fn
        except Exception as exc:  # noqa: BLE001 - any compiler failure is reported, not raised
            first_line = (str(exc).splitlines() or [""])[0][:200]
            it.error = failed[key] = f"torch.compile failed: {type(exc).__name__}: {first_line}"
            log(it.error)
        out.append(it)
    return out


def _item_name(specs: Sequence[ModelSpec], it: BenchItem) -> str:
    tag = " +compile" if it.compiled else ""
    return f"{specs[it.spec_index].display} b{it.batch} {it.dtype}{tag}"


def _result_row(
    specs: Sequence[ModelSpec], model_rows: Sequence[dict[str, Any]], it: BenchItem
) -> dict[str, Any]:
    spec, mrow = specs[it.spec_index], model_rows[it.spec_index]
    row: dict[str, Any] = {
        "model": spec.name,
        "display": spec.display,
        "source": spec.source,
        "frames": spec.num_frames,
        "img_size": spec.img_size,
        "batch": it.batch,
        "dtype": it.dtype,
        "dtype_mode": it.dtype_mode,
        "compiled": it.compiled,
        "params": mrow["params"],
        "gflops_per_clip": mrow["gflops_per_clip"],
        "attention": mrow["attention"],
        "calls_per_repeat": it.inner,
        "times_s": it.times,
        "compile_s": it.compile_s,
        "error": it.error,
    }
    if it.times:
        stats = summarize_times(it.times)
        row.update(stats)
        row["clips_per_s"] = it.batch / stats["median_s"]
        row["ms_per_clip"] = 1000.0 * stats["median_s"] / it.batch
        row["achieved_gflops"] = mrow["gflops_per_clip"] * row["clips_per_s"]
    return row


def _attach_memory(
    specs: Sequence[ModelSpec],
    results: list[dict[str, Any]],
    threads: int | None,
    device: str,
    log: Callable[[str], None],
) -> None:
    """Peak memory of each eager result, one fresh subprocess per model."""
    from xvit.benchmarks.memory import measure_memory

    by_spec: dict[str, list[dict[str, Any]]] = {}
    for row in results:
        if not row["compiled"] and not row["error"]:
            by_spec.setdefault(row["display"], []).append(row)
    for spec in specs:
        rows = by_spec.get(spec.display, [])
        if not rows:
            continue
        log(f"memory {spec.display}")
        configs = sorted({(r["batch"], r["dtype_mode"]) for r in rows})
        try:
            measured = measure_memory(spec, configs, device=device, threads=threads)
        except RuntimeError as exc:
            log(f"memory measurement failed for {spec.display}: {exc}")
            continue
        for r in rows:
            m = measured.get((r["batch"], r["dtype_mode"]))
            if m:
                r.update(m)
