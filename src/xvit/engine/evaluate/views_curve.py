"""Accuracy against the number of test views, from one scoring pass: every subset of
``1..t`` temporal clips x ``1..s`` spatial crops re-fused from the kept per-view logits, and
its table (CSV) and plot (PNG)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from xvit.engine.evaluate.evaluator import evaluate_scores
from xvit.engine.run.metrics import classification_metrics, fuse_views, subset_indices
from xvit.engine.run.rundir import atomic_write
from xvit.engine.run.scoring import ScoreSet

__all__ = ["views_curve", "write_views_curve"]


def views_curve(
    scores: ScoreSet,
    views: tuple[int, int],
    fuse: str = "prob",
    gflops_per_view: float | None = None,
    multi_label: bool = False,
) -> list[dict[str, Any]]:
    """Accuracy with 1..t temporal clips x 1..s spatial crops, reusing the per-view scores
    (``multi_label``: mAP and micro mAP instead of top-1 and top-5).

    With k of the t temporal clips, the k closest to an even spread are used
    (:func:`xvit.engine.run.metrics.subset_indices`), likewise for the spatial crops (1 = centre).
    """
    t, s = views
    rows = []
    for ks in range(1, s + 1):
        for kt in range(1, t + 1):
            chosen = [i * s + j for i in subset_indices(t, kt) for j in subset_indices(s, ks)]
            if multi_label:
                sub = ScoreSet(scores.indices, scores.labels, scores.view_logits[:, chosen], scores.failures)
                m, _ = evaluate_scores(sub, fuse=fuse, multi_label=True)
                rows.append(
                    {
                        "temporal_clips": kt,
                        "spatial_crops": ks,
                        "views": kt * ks,
                        "mAP": round(m["mAP"], 4),
                        "micro_mAP": round(m["micro_mAP"], 4),
                        "gflops": round(gflops_per_view * kt * ks, 4) if gflops_per_view else None,
                    }
                )
                continue
            if scores.indices:
                fused = fuse_views(scores.view_logits[:, chosen], fuse)
            else:
                fused = torch.zeros(0, 1)
            m = classification_metrics(fused, scores.labels, scores.failed_labels)
            rows.append(
                {
                    "temporal_clips": kt,
                    "spatial_crops": ks,
                    "views": kt * ks,
                    "top1": round(m["top1"], 4),
                    "top5": round(m["top5"], 4),
                    "gflops": round(gflops_per_view * kt * ks, 4) if gflops_per_view else None,
                }
            )
    return rows


def write_views_curve(rows: list[dict[str, Any]], out_dir: str | Path, title: str = "") -> tuple[Path, Path]:
    """Write ``views_curve.csv`` and ``views_curve.png`` (top-1, or mAP for multi-label rows,
    against temporal clips)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / "views_curve.csv", out_dir / "views_curve.png"

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(csv_path, write_csv)
    has_cost = all(r["gflops"] is not None for r in rows)
    key = "top1" if "top1" in rows[0] else "mAP"
    fig, axes = plt.subplots(
        1, 2 if has_cost else 1, figsize=(9.5 if has_cost else 5.5, 4), sharey=True, squeeze=False
    )
    for ks in sorted({r["spatial_crops"] for r in rows}):
        line = [r for r in rows if r["spatial_crops"] == ks]
        label = f"{ks} spatial crop{'s' if ks > 1 else ''}"
        ys = [r[key] for r in line]
        axes[0, 0].plot([r["temporal_clips"] for r in line], ys, marker="o", label=label)
        if has_cost:
            axes[0, 1].plot([r["gflops"] for r in line], ys, marker="o", label=label)
    # at least a 10-point span, so noise of a few videos does not look like a trend
    lo, hi = min(r[key] for r in rows), max(r[key] for r in rows)
    pad = max(0.0, 10.0 - (hi - lo)) / 2 + 2.0
    axes[0, 0].set_ylim(max(0.0, lo - pad), min(100.0, hi + pad))
    axes[0, 0].set_xlabel("temporal clips")
    axes[0, 0].set_ylabel("top-1 accuracy (%)" if key == "top1" else "mAP (%)")
    axes[0, 0].set_xticks(sorted({r["temporal_clips"] for r in rows}))
    if has_cost:
        axes[0, 1].set_xlabel("GFLOPs per video (views x GFLOPs per view)")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "accuracy vs test views", fontsize=9)
    fig.tight_layout()
    try:
        atomic_write(png_path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)
    return csv_path, png_path
