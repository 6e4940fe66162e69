"""Speed targets: ratios between results of one benchmark run, checked against goals.

The checks are one table (:data:`CHECKS`): each names a ratio between two measured results
(model family, frame count, dtype) or between a result and the machine's matmul rate, and
whether the goal is a floor or a ceiling. The goals themselves are configuration, not part of
the package: :func:`evaluate_targets` takes them as a mapping (check key -> number), which
:func:`load_goals` reads from a YAML file (the project's own are ``benchmarks/speed_targets.yaml``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xvit.benchmarks.results import find_result

__all__ = ["CHECKS", "Check", "evaluate_targets", "load_goals", "targets_table"]

Row = dict[str, Any]


@dataclass(frozen=True)
class Check:
    """One target: ``value = a[metric_a] / b[metric_b]`` for each measured (dtype, T).

    ``a``/``b``: ``(family, frames, dtype)`` of the two results, where ``frames=None`` is each
    measured frame count and ``dtype=None`` each dtype of ``dtypes``; ``b = ("matmul", None,
    dtype)`` is the run's dense matmul rate. ``first_frames_only``: only the smallest measured
    T. ``title`` and ``detail`` are formatted with ``a``, ``b``, ``dtype`` and ``tag``.
    """

    key: str
    title: str
    a: tuple[str, int | None, str | None]
    b: tuple[str, int | None, str | None]
    metric_a: str
    metric_b: str
    at_most: bool
    detail: Callable[[Row, Row], str]
    dtypes: tuple[str, ...] = ("fp32", "bf16")
    first_frames_only: bool = False


def _clips(a: Row, b: Row) -> str:
    return f"{a['clips_per_s']:.3f} vs {b['clips_per_s']:.3f} clips/s"


CHECKS: tuple[Check, ...] = (
    Check(
        "xvit_vs_vit",
        "X-ViT vs spatial ViT clips/s, {a[frames]}x{a[img_size]} {dtype}{tag}",
        ("xvit", None, None),
        ("vit", None, None),
        "clips_per_s",
        "clips_per_s",
        False,
        _clips,
    ),
    Check(
        "xvit_vs_timesformer",
        "X-ViT / HF TimeSformer clips/s, {a[frames]}x{a[img_size]} {dtype}{tag}",
        ("xvit", None, None),
        ("hf_timesformer", None, None),
        "clips_per_s",
        "clips_per_s",
        False,
        lambda a, b: f"{_clips(a, b)}; FLOP ratio {b['gflops_per_clip'] / a['gflops_per_clip']:.2f}",
    ),
    Check(
        "frames_32_over_8",
        "X-ViT time(T=32) / time(T=8), {dtype}{tag}",
        ("xvit", 32, None),
        ("xvit", 8, None),
        "median_s",
        "median_s",
        True,
        lambda a, b: f"{1000 * a['median_s']:.0f} ms vs {1000 * b['median_s']:.0f} ms",
    ),
    Check(
        "matmul_fraction",
        "X-ViT achieved GFLOP/s / fp32 matmul GFLOP/s, {a[frames]}x{a[img_size]}{tag}",
        ("xvit", None, "fp32"),
        ("matmul", None, "fp32"),
        "achieved_gflops",
        "gflops_median",
        False,
        lambda a, b: f"{a['achieved_gflops']:.0f} of {b['gflops_median']:.0f} GFLOP/s",
        dtypes=("fp32",),
        first_frames_only=True,
    ),
    Check(
        "bf16_speedup",
        "X-ViT bf16 / fp32 clips/s, {a[frames]}x{b[img_size]}{tag}",
        ("xvit", None, "bf16"),
        ("xvit", None, "fp32"),
        "clips_per_s",
        "clips_per_s",
        False,
        lambda a, b: f"{a['clips_per_s']:.3f} ({a['dtype_mode']}) vs {b['clips_per_s']:.3f} clips/s",
        dtypes=("fp32",),
    ),
)


def load_goals(path: str | Path) -> dict[str, float]:
    """Goals (check key -> number) from a YAML mapping; unknown keys and non-numbers are errors."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not a YAML mapping of goals ({getattr(e, 'problem', e)})") from None
    known = {c.key for c in CHECKS}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of target names to numbers")
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"{path}: unknown target(s) {', '.join(map(str, unknown))}; known: {', '.join(sorted(known))}"
        )
    bad = [k for k, v in data.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise ValueError(f"{path}: the goal of {bad[0]} must be a number, got {data[bad[0]]!r}")
    return {k: float(v) for k, v in data.items()}


def evaluate_targets(payload: dict[str, Any], goals: Mapping[str, float]) -> list[dict[str, Any]]:
    """Check the :data:`CHECKS` named in ``goals`` on the batch-1 results of ``payload``.

    A target is listed only when its results were measured. Eager and compiled results are
    checked separately, never mixed.
    """
    res = payload["results"]
    matmul = payload["meta"].get("matmul", {})
    frames = sorted({r["frames"] for r in res})
    out: list[dict[str, Any]] = []
    for compiled in (False, True):
        tag = " +compile" if compiled else ""

        def get(who: tuple[str, int | None, str | None], t: int, dtype: str) -> Row | None:
            family, fixed_t, fixed_dtype = who
            if family == "matmul":
                return matmul.get(fixed_dtype or dtype)
            return find_result(res, family, fixed_t or t, 1, fixed_dtype or dtype, compiled)  # noqa: B023

        for check in CHECKS:
            if check.key not in goals:
                continue
            fixed = check.a[1] is not None and check.b[1] is not None
            loop_frames = [None] if fixed else frames[:1] if check.first_frames_only else frames
            for dtype in check.dtypes:
                for t in loop_frames:
                    a, b = get(check.a, t, dtype), get(check.b, t, dtype)
                    if not a or not b:
                        continue
                    value = a[check.metric_a] / b[check.metric_b]
                    goal = goals[check.key]
                    passed = value <= goal if check.at_most else value >= goal
                    out.append(
                        {
                            "target": check.title.format(a=a, b=b, dtype=dtype, tag=tag),
                            "goal": f"{'<=' if check.at_most else '>='} {goal:g}",
                            "value": value,
                            "status": "PASS" if passed else "MISS",
                            "detail": check.detail(a, b),
                        }
                    )
    return out


def targets_table(targets: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`evaluate_targets`."""
    lines = ["| target | goal | measured | status | detail |", "|---|---|---:|---|---|"]
    for t in targets:
        lines.append(f"| {t['target']} | {t['goal']} | {t['value']:.3f} | {t['status']} | {t['detail']} |")
    return "\n".join(lines)
