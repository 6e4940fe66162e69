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
each model and keeps the faster, recording which it picked. ``int8`` is dynamic int8
quantisation of the linear layers, in eager torch on the CPU.

Runtimes other than eager torch (``onnxruntime``, ``openvino``) come from the caller as a
``runtime_target(spec, model, runtime, batches) -> bind``, ``bind(x) -> call`` (this package
does not export models; :mod:`xvit.engine.deploy.runtime_targets` does): their fp32 rows join the
same interleaved rounds. A combination that cannot run (runtime missing, model that does not
export, int8 off the CPU) is a row with its reason in ``error``; one that is not offered (an
ONNX runtime in bf16 or int8) is a line in ``meta["notes"]``. With a warm-up call, every row
records ``max_abs_diff_vs_fp32``: the largest difference of its output to the eager fp32
row of the same model and batch, on the same clip.
"""

from __future__ import annotations

import copy
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xvit.benchmarks.forward import (
    DTYPE_MODES,
    input_dtype,
    make_call,
    precision_of,
    prepare_model,
    time_once,
)
from xvit.benchmarks.machine import load_average, machine_info, measure_matmul_rate
from xvit.benchmarks.memory import measure_memory
from xvit.benchmarks.spec import ModelSpec
from xvit.models.flops import count_flops, count_params
from xvit.models.hardware import slow_precision

__all__ = [
    "DTYPE_MODES",
    "BenchItem",
    "ModelSpec",
    "RuntimeTarget",
    "count_forward_flops",
    "run_benchmark",
    "summarize_times",
]


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
    runtime: str = "torch"
    output: torch.Tensor | None = None  # of the first warm-up call, to compare with fp32
    max_abs_diff: float | None = None


#: ``(spec, model, runtime, batches) -> bind``, ``bind(x) -> call``: a model in a runtime
#: other than eager torch, as a no-argument call on the clip batch ``x`` (fp32).
RuntimeTarget = Callable[
    [ModelSpec, nn.Module, str, Sequence[int]], Callable[[torch.Tensor], Callable[[], Any]]
]


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


# --------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------


def count_forward_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Forward FLOPs (2 per multiply-add) for one call on ``input_shape``:
    :func:`xvit.models.flops.count_flops` on a float32 copy of the model on the meta device
    (no memory, no time), or on a CPU copy if some op has no meta kernel."""
    try:
        return count_flops(copy.deepcopy(model).to("meta").float(), input_shape)
    except (NotImplementedError, RuntimeError):
        return count_flops(copy.deepcopy(model).to("cpu").float(), input_shape)


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


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
    runtimes: Sequence[str] = ("torch",),
    runtime_target: RuntimeTarget | None = None,
) -> dict[str, Any]:
    """Measure every spec at every batch and dtype mode, interleaved; return a JSON-able dict.

    The result has ``meta`` (machine, versions, settings, load before/after, matmul rates),
    ``models`` (one entry per spec: params, GFLOPs per clip) and ``results`` (one entry per
    timed item). ``min_repeat_s`` makes each timed repeat loop over as many calls as needed
    to last that long (for tiny models); ``matmul_n=None`` skips the matmul reference.
    ``runtimes``: ``torch`` (eager, every dtype mode) and runtimes built by ``runtime_target``
    (fp32 rows).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    for d in dtypes:
        if d not in DTYPE_MODES:
            raise ValueError(f"unknown dtype {d!r}; choose from {', '.join(DTYPE_MODES)}")
    if not specs:
        raise ValueError("no models to benchmark")
    if not runtimes or len(set(runtimes)) != len(runtimes):
        raise ValueError(f"runtimes must be distinct and at least one, got {list(runtimes)}")
    if any(r != "torch" for r in runtimes) and runtime_target is None:
        raise ValueError("runtimes other than torch need a runtime_target")
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
        runtimes=list(runtimes),
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
        if "int8" in {precision_of(d) for d in dtypes}:
            try:
                meta["matmul"]["int8"] = measure_matmul_rate(matmul_n, torch.int8, device=device)
            except ValueError as e:
                log(str(e))

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
                "params": count_params(model),
                "gflops_per_clip": count_forward_flops(model, spec.input_shape(1)) / 1e9,
            }
        )

    # Resolve each dtype mode per model (bf16 picks the faster of model and autocast).
    variants: dict[tuple[int, str], nn.Module] = {}
    failed: dict[tuple[int, str], str] = {}
    resolved: dict[tuple[int, str], str] = {}
    probes: dict[int, dict[str, float]] = {}
    torch_dtypes = dtypes if "torch" in runtimes else ()
    # bf16 with no native products (an AVX2 CPU: a fiftieth of fp32's rate, minutes per clip)
    # is not timed: its rows say why
    slow_bf16 = (
        slow_precision(torch.bfloat16, dev) if any(precision_of(d) == "bf16" for d in torch_dtypes) else None
    )
    if slow_bf16:
        log(f"bf16 not timed: {slow_bf16}")
    for i, (spec, model) in enumerate(zip(specs, models)):
        for d in torch_dtypes:
            mode = d
            if slow_bf16 and precision_of(d) == "bf16":
                resolved[(i, d)] = d
                failed[(i, d)] = f"not timed: {slow_bf16}"
                continue
            if d == "bf16":
                mode, probes[i] = _pick_bf16_mode(spec, model, dev, log)
                model_rows[i]["bf16_probe_s"] = probes[i]
                model_rows[i]["bf16_mode"] = mode
            resolved[(i, d)] = mode
            if (i, mode) not in variants and (i, mode) not in failed:
                try:
                    variants[(i, mode)] = prepare_model(model, mode, dev)
                except (ValueError, RuntimeError) as e:  # int8 off the CPU, a failed quantisation
                    failed[(i, mode)] = _one_line(e)
                    log(f"{spec.display} {mode}: {failed[(i, mode)]}")

    inputs: dict[tuple[int, int, str], torch.Tensor] = {}

    def clip(i: int, b: int, mode: str) -> torch.Tensor:
        if (i, b, mode) not in inputs:
            g = torch.Generator(device="cpu").manual_seed(0)
            x = torch.randn(specs[i].input_shape(b), generator=g)
            inputs[(i, b, mode)] = x.to(dev, input_dtype(mode))
        return inputs[(i, b, mode)]

    # Items: every (model, batch, dtype) in torch, eager and, with compile, compiled; then
    # the fp32 rows of the other runtimes.
    items: list[BenchItem] = []
    for i in range(len(specs)):
        for d in torch_dtypes:
            mode = resolved[(i, d)]
            for b in batches:
                eager = BenchItem(i, b, d, False, mode)
                if (i, mode) in failed:
                    eager.error = failed[(i, mode)]
                else:
                    eager.fn = make_call(variants[(i, mode)], clip(i, b, mode), mode, dev)
                items.append(eager)
    if compile:
        ok = [it for it in items if not it.error]
        items += _compiled_items(specs, ok, variants, inputs, dev, log)
    meta["notes"] = []
    for rt in runtimes:
        if rt != "torch":
            assert runtime_target is not None
            items += _runtime_items(rt, specs, models, dtypes, batches, dev, runtime_target, clip, meta, log)

    # Warm-up, then calibrate the calls per repeat (one warm call at least when calibrating).
    for it in items:
        if it.error or it.fn is None:
            continue
        n_warm = max(warmup, 1) if min_repeat_s > 0 else warmup
        if n_warm:
            log(f"warm-up {_item_name(specs, it)}")
        t = float("inf")
        for k in range(n_warm):
            if k == 0:  # keep the first output, to compare with eager fp32
                t0 = time.perf_counter()
                it.output = _as_tensor(it.fn())
                t = time.perf_counter() - t0
            else:
                t = time_once(it.fn)
        if min_repeat_s > 0 and t < min_repeat_s:
            it.inner = max(1, math.ceil(min_repeat_s / max(t, 1e-6)))
    _diff_to_fp32(items)

    live = [it for it in items if not it.error]
    meta["load_per_repeat"] = []
    for r in range(repeats):
        meta["load_per_repeat"].append(load_average())
        log(f"repeat {r + 1}/{repeats} (load {load_average()})")
        shift = (r * len(live)) // repeats  # spread each item's place in the round
        for it in live[shift:] + live[:shift]:
            it.times.append(time_once(it.fn, it.inner))

    meta["load_average_after"] = load_average()
    for it in items:
        it.fn = None
        it.output = None
    variants.clear()
    inputs.clear()

    results = [_result_row(specs, model_rows, it) for it in items]
    for row in results:  # the roofline: achieved over the same precision's dense matmul rate
        rate = (meta.get("matmul") or {}).get(row["precision"])
        if row.get("achieved_gflops") and rate:
            row["matmul_share"] = row["achieved_gflops"] / rate["gflops_median"]
    if memory:
        _attach_memory(specs, results, threads, device, log)
    return {"meta": meta, "models": model_rows, "results": results}


def _runtime_items(
    runtime: str,
    specs: Sequence[ModelSpec],
    models: Sequence[nn.Module],
    dtypes: Sequence[str],
    batches: Sequence[int],
    dev: torch.device,
    runtime_target: RuntimeTarget,
    clip: Callable[[int, int, str], torch.Tensor],
    meta: dict[str, Any],
    log: Callable[[str], None],
) -> list[BenchItem]:
    """The fp32 rows of ``runtime`` (one per model and batch), or rows naming why not."""
    others = sorted({precision_of(d) for d in dtypes} - {"fp32"})
    if others:
        meta["notes"].append(
            f"{runtime}: fp32 only here ({', '.join(others)} rows are eager torch); "
            "ask for --precision fp32 to get its rows"
            if "fp32" not in dtypes
            else f"{runtime}: fp32 only here ({', '.join(others)} rows are eager torch)"
        )
    if "fp32" not in dtypes:
        return []
    out = []
    for i, (spec, model) in enumerate(zip(specs, models)):
        bind, error = None, None
        if dev.type != "cpu":
            error = f"{runtime} runs on the CPU only, not {dev.type}"
        else:
            log(f"{runtime}: export and load {spec.display}")
            try:
                bind = runtime_target(spec, model, runtime, batches)
            except Exception as e:  # missing package, exporter or runtime failure: the row says why
                error = _one_line(e)
                log(f"{runtime} {spec.display}: {error}")
        for b in batches:
            it = BenchItem(i, b, "fp32", False, "fp32", runtime=runtime, error=error)
            if bind is not None:
                try:
                    it.fn = bind(clip(i, b, "fp32"))
                except Exception as e:
                    it.error = _one_line(e)
            out.append(it)
    return out


def _as_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out.detach().float().cpu()
    try:
        import numpy as np

        return torch.from_numpy(np.asarray(out, dtype=np.float32))
    except (TypeError, ValueError):
        return None


def _diff_to_fp32(items: Sequence[BenchItem]) -> None:
    """``max_abs_diff`` of each item's first output to eager fp32's (same model and batch)."""
    ref = {
        (it.spec_index, it.batch): it.output
        for it in items
        if it.runtime == "torch" and it.dtype_mode == "fp32" and not it.compiled and it.output is not None
    }
    for it in items:
        r = ref.get((it.spec_index, it.batch))
        if it.output is not None and r is not None and it.output.shape == r.shape:
            it.max_abs_diff = float((it.output - r).abs().max())


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
        calls[mode] = make_call(m, x.to(input_dtype(mode)), mode, dev)
        calls[mode]()
    times: dict[str, list[float]] = {mode: [] for mode in calls}
    for _ in range(2):
        for mode, fn in calls.items():
            times[mode].append(time_once(fn))
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
            fn = make_call(
                compiled_models[key], inputs[(e.spec_index, e.batch, e.dtype_mode)], e.dtype_mode, dev
            )
            it.compile_s = time_once(fn)
            it.fn = fn
        except Exception as exc:  # any compiler failure is reported, not raised
            first_line = (str(exc).splitlines() or [""])[0][:200]
            it.error = failed[key] = f"torch.compile failed: {type(exc).__name__}: {first_line}"
            log(it.error)
        out.append(it)
    return out


def _item_name(specs: Sequence[ModelSpec], it: BenchItem) -> str:
    tag = " +compile" if it.compiled else ""
    return f"{specs[it.spec_index].display} b{it.batch} {it.runtime} {it.dtype}{tag}"


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
        "precision": precision_of(it.dtype_mode),
        "runtime": it.runtime,
        "compiled": it.compiled,
        "params": mrow["params"],
        "gflops_per_clip": mrow["gflops_per_clip"],
        "attention": mrow["attention"],
        "calls_per_repeat": it.inner,
        "times_s": it.times,
        "compile_s": it.compile_s,
        "error": it.error,
        "max_abs_diff_vs_fp32": it.max_abs_diff,
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
    by_spec: dict[str, list[dict[str, Any]]] = {}
    for row in results:
        if not row["compiled"] and not row["error"] and row["runtime"] == "torch":
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
