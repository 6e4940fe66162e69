"""What evaluation and training report: ``metrics.json`` (written atomically, strict JSON)
and the lines printed for people (the headline figures, the failed videos, the warning about
non-finite logits)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from xvit.engine.run.rundir import write_json

__all__ = ["figures", "headline_keys", "print_eval_report", "write_metrics"]


def headline_keys(multi_label: bool) -> tuple[str, ...]:
    """The figures a run logs and reports: mAP for multi-label data, else top-1, top-5 and the
    mean class accuracy."""
    return ("mAP", "micro_mAP") if multi_label else ("top1", "top5", "mean_class_accuracy")


def figures(metrics: dict[str, Any], multi_label: bool, detail: bool = False) -> str:
    """The headline figures on one line (``detail``: with the clip / video top-1, or the number
    of classes with positives)."""
    if multi_label:
        text = f"mAP {metrics['mAP']:.2f}%  micro mAP {metrics['micro_mAP']:.2f}%"
        return text + (
            f"  ({metrics['num_classes_with_positives']} classes with positives)" if detail else ""
        )
    text = (
        f"top1 {metrics['top1']:.2f}%  top5 {metrics['top5']:.2f}%  mean class accuracy "
        f"{metrics['mean_class_accuracy']:.2f}%"
    )
    if detail:
        text += f"  clip top1 {metrics['clip_top1']:.2f}%  video top1 {metrics['video_top1']:.2f}%"
    return text


def print_eval_report(metrics: dict[str, Any], records: list[dict[str, Any]], multi_label: bool) -> None:
    """`xvit eval`'s summary line and one line per failed video (stdout), and an error line
    (stderr) when videos had non-finite logits."""
    print(
        f"{metrics['num_videos']} videos, {metrics['views']} views, {metrics['fuse']}: "
        f"{figures(metrics, multi_label, detail=True)}  failed {metrics['num_failed']}",
        flush=True,
    )
    for r in records:
        if "error" in r:
            text = r["error"] if r["path"] in r["error"] else f"{r['path']}: {r['error']}"
            print(f"failed: {text}", flush=True)
    if metrics["num_non_finite"]:
        print(
            f"error: {metrics['num_non_finite']} of {metrics['num_videos']} videos had non-finite "
            "logits (NaN or infinity): the model's weights or its inputs hold non-finite numbers; "
            "they are counted as failed",
            file=sys.stderr,
            flush=True,
        )


def write_metrics(
    path: str | Path,
    metrics: dict[str, Any],
    records: list[dict[str, Any]] | None = None,
    command: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``metrics.json``: the figures, the exact command, the failures and per-video rows.

    The file is written atomically and is strict JSON: a NaN or infinite figure is written as
    null and named under ``non_finite``."""
    path = Path(path)
    doc: dict[str, Any] = dict(metrics)
    if command is not None:
        doc["command"] = shlex.join(command)
    if extra:
        doc.update(extra)
    if records is not None:
        doc["failed"] = [{"path": r["path"], "error": r["error"]} for r in records if "error" in r]
        doc["predictions"] = records
    return write_json(path, doc)  # atomic, strict JSON (non-finite values -> null, listed)
