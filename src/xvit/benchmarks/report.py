"""Tables, JSON and plots of the results of :func:`~xvit.benchmarks.speed.run_benchmark`,
with the speed targets of :mod:`xvit.benchmarks.targets` when goals are given."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xvit.benchmarks.machine import isa_summary
from xvit.benchmarks.results import model_family
from xvit.benchmarks.targets import evaluate_targets, targets_table

__all__ = [
    "compile_table",
    "frame_scaling",
    "frame_scaling_table",
    "machine_summary",
    "plot_frame_scaling",
    "plot_speed",
    "results_table",
    "write_report",
]

# --------------------------------------------------------------------------------------
# Frame scaling
# --------------------------------------------------------------------------------------


def frame_scaling(
    payload: dict[str, Any], batch: int = 1, dtype: str = "fp32", compiled: bool = False
) -> dict[str, dict[str, Any]]:
    """Per model family measured at several T: times, memory, ratios and power-law exponent.

    The exponent ``k`` is the least-squares slope of log(time) against log(T), so linear
    scaling gives about 1 and quadratic up to 2 (less while linear terms still dominate);
    ``local_exponents`` are the slopes between successive frame counts.
    """
    out: dict[str, dict[str, Any]] = {}
    rows = [
        r
        for r in payload["results"]
        if r["batch"] == batch
        and r["dtype"] == dtype
        and r["compiled"] == compiled
        and r.get("runtime", "torch") == "torch"
        and r.get("median_s")
    ]
    for fam in sorted({model_family(r["model"]) for r in rows}):
        pts = sorted((r["frames"], r) for r in rows if model_family(r["model"]) == fam)
        if len(pts) < 2:
            continue
        ts = [t for t, _ in pts]
        secs = [r["median_s"] for _, r in pts]
        lx, ly = [math.log(t) for t in ts], [math.log(s) for s in secs]
        mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
        k = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
        local = [math.log(secs[i + 1] / secs[i]) / math.log(ts[i + 1] / ts[i]) for i in range(len(ts) - 1)]
        out[fam] = {
            **_quadratic_fit(ts, secs),
            "frames": ts,
            "median_s": secs,
            "peak_mem_mib": [r.get("peak_mem_mib") for _, r in pts],
            "activation_mib": [r.get("activation_mib") for _, r in pts],
            "gflops_per_clip": [r["gflops_per_clip"] for _, r in pts],
            "time_ratio_to_first": [s / secs[0] for s in secs],
            "exponent": k,
            "local_exponents": local,
        }
    return out


def _quadratic_fit(ts: Sequence[int], secs: Sequence[float]) -> dict[str, Any]:
    """Least-squares ``time = a + b T + c T^2`` (3+ points) and the share of the time at
    the largest T that the ``c T^2`` term accounts for (about 0 for linear scaling)."""
    if len(ts) < 3:
        return {}
    import numpy as np

    a_mat = np.array([[1.0, t, t * t] for t in ts])
    coef, *_ = np.linalg.lstsq(a_mat, np.array(secs), rcond=None)
    t_max = max(ts)
    quad = coef[2] * t_max**2
    total = float(a_mat[ts.index(t_max)] @ coef)
    return {"quadratic_fit_s": [float(c) for c in coef], "quadratic_share_at_max_T": float(quad / total)}


def frame_scaling_table(scaling: dict[str, dict[str, Any]]) -> str:
    """Markdown table of :func:`frame_scaling`: ms and memory per T, ratios, exponent."""
    lines = [
        "| model | T | ms/clip | time / time(T0) | GFLOPs/clip | peak mem MiB | forward MiB |"
        " local exponent |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fam, s in scaling.items():
        for i, t in enumerate(s["frames"]):
            local = f"{s['local_exponents'][i - 1]:.2f}" if i else ""
            lines.append(
                f"| {fam} | {t} | {1000 * s['median_s'][i]:.0f} | {s['time_ratio_to_first'][i]:.2f} "
                f"| {s['gflops_per_clip'][i]:.0f} | {_fmt(s['peak_mem_mib'][i], '.0f')} "
                f"| {_fmt(s['activation_mib'][i], '.0f')} | {local} |"
            )
        share = s.get("quadratic_share_at_max_T")
        quad = f"; T^2 share of time at T={max(s['frames'])}: {share:.0%}" if share is not None else ""
        lines.append(f"| {fam} | fit | | exponent k = {s['exponent']:.2f}{quad} | | | | |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


def _fmt(v: Any, spec: str) -> str:
    return "" if v is None else format(v, spec)


def machine_summary(meta: dict[str, Any]) -> str:
    """One paragraph: machine, versions, threads, load and the reference matmul rates."""
    parts = [
        f"CPU: {meta.get('cpu')} ({meta.get('logical_cpus')} logical CPUs; "
        f"flags {', '.join(meta.get('cpu_flags') or []) or 'n/a'}; {isa_summary(meta.get('cpu_flags') or [])})",
        f"torch {meta.get('torch')}, transformers {meta.get('transformers')}, Python {meta.get('python')}",
        f"threads {meta.get('torch_threads')}, device {meta.get('device')}, "
        f"{meta.get('date_utc')} UTC, xvit commit {meta.get('git_commit')}",
        f"load average before {meta.get('load_average_before')}, after {meta.get('load_average_after')}",
        f"{meta.get('warmup')} warm-up call(s), {meta.get('repeats')} interleaved repeats",
    ]
    if meta.get("gpu"):
        parts.insert(1, f"GPU: {meta['gpu']}")
    for name, mm in (meta.get("matmul") or {}).items():
        parts.append(
            f"{mm['n']}x{mm['n']} {name} matmul: {mm['gflops_median']:.0f} {'GOP' if name == 'int8' else 'GFLOP'}/s median "
            f"({mm['gflops_max']:.0f} best)"
        )
    return "; ".join(parts) + "."


def results_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown table of timed results, one row per model, batch, precision (dtype mode),
    compile and runtime; ``x fp32`` is the clips/s over the same model's eager fp32 row at
    the same batch, ``of matmul`` the achieved FLOP/s over the same precision's dense matmul
    rate measured in the run (the roofline), ``max diff`` the largest output difference to the
    fp32 row on the same clip."""
    lines = [
        "| model | T x S | batch | precision | compile | runtime | params M | GFLOPs/clip | clips/s "
        "| x fp32 | ms/clip median | ms/clip IQR | ms/clip min-max | achieved GFLOP/s | of matmul "
        "| peak mem MiB | forward MiB | max diff vs fp32 |",
        "|---|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = {
        (r["display"], r["batch"]): r["clips_per_s"]
        for r in results
        if r.get("clips_per_s")
        and r["dtype_mode"] == "fp32"
        and not r["compiled"]
        and r.get("runtime", "torch") == "torch"
    }
    for r in results:
        dtype = r["dtype"] if r["dtype"] == r["dtype_mode"] else f"{r['dtype']} ({r['dtype_mode']})"
        comp = "yes" if r["compiled"] else "no"
        head = (
            f"| {r['model']} | {r['frames']}x{r['img_size']} | {r['batch']} | {dtype} | {comp} "
            f"| {r.get('runtime', 'torch')} | {r['params'] / 1e6:.1f} | {r['gflops_per_clip']:.1f} "
        )
        if not r.get("clips_per_s"):
            error = str(r.get("error"))
            shown = error if error.startswith("not timed: ") else f"failed: {error}"
            lines.append(head + f"| {shown} | | | | | | | | | |")
            continue
        b = r["batch"]
        ref = base.get((r["display"], b))
        lines.append(
            head + f"| {r['clips_per_s']:.3f} | {_fmt(ref and r['clips_per_s'] / ref, '.2f')} "
            f"| {r['ms_per_clip']:.1f} "
            f"| {1000 * r['q1_s'] / b:.1f}-{1000 * r['q3_s'] / b:.1f} "
            f"| {1000 * r['min_s'] / b:.1f}-{1000 * r['max_s'] / b:.1f} "
            f"| {r['achieved_gflops']:.0f} | {_fmt(r.get('matmul_share'), '.0%')} "
            f"| {_fmt(r.get('peak_mem_mib'), '.0f')} "
            f"| {_fmt(r.get('activation_mib'), '.0f')} | {_fmt(r.get('max_abs_diff_vs_fp32'), '.1e')} |"
        )
    return "\n".join(lines)


def compile_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown table of compile times (first call of the compiled model) and failures."""
    rows = [r for r in results if r["compiled"]]
    if not rows:
        return ""
    lines = ["| model | T x S | batch | dtype | compile s | status |", "|---|---|---:|---|---:|---|"]
    for r in rows:
        status = r["error"] or "ok"
        lines.append(
            f"| {r['model']} | {r['frames']}x{r['img_size']} | {r['batch']} | {r['dtype']} "
            f"| {_fmt(r['compile_s'], '.1f')} | {status} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_speed(payload: dict[str, Any], path: str | Path) -> Path:
    """Horizontal bars of clips/s per model, one panel per batch size, bars per dtype."""
    plt = _pyplot()
    res = [r for r in payload["results"] if r.get("clips_per_s")]
    batches = sorted({r["batch"] for r in res})
    variants = sorted({(r.get("runtime", "torch"), r["dtype"], r["compiled"]) for r in res})
    models = list(dict.fromkeys(r["display"] for r in res))
    fig, axes = plt.subplots(
        1,
        len(batches),
        figsize=(6 * len(batches), 0.45 * len(models) * len(variants) + 1.5),
        squeeze=False,
    )
    h = 0.8 / max(len(variants), 1)
    for ax, b in zip(axes[0], batches):
        for j, (runtime, dtype, comp) in enumerate(variants):
            vals = []
            for m in models:
                r = next(
                    (
                        r
                        for r in res
                        if r["display"] == m
                        and r["batch"] == b
                        and r["dtype"] == dtype
                        and r["compiled"] == comp
                        and r.get("runtime", "torch") == runtime
                    ),
                    None,
                )
                vals.append(r["clips_per_s"] if r else 0.0)
            ys = [i + j * h for i in range(len(models))]
            where = "" if runtime == "torch" else f"{runtime} "
            ax.barh(ys, vals, height=h, label=f"{where}{dtype}{' +compile' if comp else ''}")
        ax.set_yticks([i + 0.4 - h / 2 for i in range(len(models))], models, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("clips/s (median)")
        ax.set_title(f"batch {b}")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_frame_scaling(
    payload: dict[str, Any], path: str | Path, batch: int = 1, dtype: str = "fp32"
) -> Path | None:
    """Time per clip and peak memory against T (log-log), with linear and quadratic guides."""
    scaling = frame_scaling(payload, batch, dtype)
    if not scaling:
        return None
    plt = _pyplot()
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for fam, s in scaling.items():
        ax_t.plot(
            s["frames"], [1000 * v for v in s["median_s"]], "o-", label=f"{fam} (k={s['exponent']:.2f})"
        )
        mem = s["activation_mib"]
        if all(v is not None for v in mem):
            ax_m.plot(s["frames"], mem, "o-", label=fam)
    first = next(iter(scaling.values()))
    t0, y0 = first["frames"][0], 1000 * first["median_s"][0]
    ts = first["frames"]
    ax_t.plot(ts, [y0 * t / t0 for t in ts], "k--", lw=0.8, label="linear guide")
    ax_t.plot(ts, [y0 * (t / t0) ** 2 for t in ts], "k:", lw=0.8, label="quadratic guide")
    for ax, ylabel in ((ax_t, "ms per clip (median)"), (ax_m, "forward memory MiB (peak - before)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("frames T")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    ax_t.set_title(f"time vs frames (batch {batch}, {dtype})")
    ax_m.set_title("memory vs frames")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------
# Everything at once
# --------------------------------------------------------------------------------------


def write_report(
    payload: dict[str, Any],
    out_dir: str | Path,
    name: str = "benchmark",
    goals: Mapping[str, float] | None = None,
) -> dict[str, Path]:
    """Write ``{name}.json``, ``{name}.md`` and the plots into ``out_dir``; return the paths.

    With ``goals`` (target key -> number, :func:`~xvit.benchmarks.targets.load_goals`) the
    targets are evaluated; they are stored in the JSON under ``targets`` (empty without goals).

    All files are rendered first into a hidden directory inside ``out_dir``; only when every
    one is written are they renamed over the files of a previous report of the same ``name``
    (the JSON last), and a frames plot of that previous report which this one does not have
    is removed. A failure while rendering leaves ``out_dir`` as it was; other files in it
    (reports of other names) are never touched.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload["targets"] = evaluate_targets(payload, goals) if goals else []
    scaling = frame_scaling(payload)
    payload["frame_scaling"] = scaling
    stage = Path(tempfile.mkdtemp(dir=out, prefix=f".{name}.partial-"))
    try:
        staged = _render_report(payload, stage, name, scaling)
        stale = out / f"{name}_frames.png"
        if "frames_plot" not in staged and (stale.is_file() or stale.is_symlink()):
            stale.unlink()
        paths: dict[str, Path] = {}
        for kind in sorted(staged, key=lambda k: k == "json"):  # the JSON, the result, last
            paths[kind] = out / staged[kind].name
            os.replace(staged[kind], paths[kind])
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {kind: paths[kind] for kind in staged}


def _render_report(payload: dict[str, Any], out: Path, name: str, scaling: dict[str, Any]) -> dict[str, Path]:
    """The files of :func:`write_report`, written into ``out``."""
    paths = {"json": out / f"{name}.json", "markdown": out / f"{name}.md"}
    paths["json"].write_text(json.dumps(payload, indent=1))
    sections = [
        f"# Benchmark: {name}",
        machine_summary(payload["meta"]),
        "## Results",
        results_table(payload["results"]),
    ]
    if payload["meta"].get("notes"):
        sections += ["\n".join(f"Note: {n}" for n in payload["meta"]["notes"])]
    if compile_table(payload["results"]):
        sections += ["## torch.compile", compile_table(payload["results"])]
    if payload["targets"]:
        sections += ["## Targets", targets_table(payload["targets"])]
    if scaling:
        sections += ["## Scaling with frames (batch 1, fp32)", frame_scaling_table(scaling)]
    paths["markdown"].write_text("\n\n".join(sections) + "\n")
    paths["speed_plot"] = plot_speed(payload, out / f"{name}_speed.png")
    frames_plot = plot_frame_scaling(payload, out / f"{name}_frames.png")
    if frames_plot:
        paths["frames_plot"] = frames_plot
    return paths
