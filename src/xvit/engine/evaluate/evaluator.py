"""Multi-view evaluation: score every video once (:mod:`xvit.engine.run.scoring`), fuse its
views, compute the figures.

All views are scored, the per-view logits are kept, and the views of a video are fused (mean
of softmax by default, or mean of logits). Videos that could not be read, and videos whose
logits are not finite, count as wrong. With multi-label data (``multi_label=True``:
multi-hot targets, sigmoid scores) the figures are the macro and micro mAP
(:func:`xvit.engine.run.metrics.multilabel_metrics`). With several processes rank 0 computes the
figures from every rank's scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from xvit.engine.run.distributed import DistInfo
from xvit.engine.run.metrics import (
    classification_metrics,
    fuse_views,
    multilabel_metrics,
    scores_to_probs,
    topk_hits,
)
from xvit.engine.run.scoring import ScoreSet, sample_path, score_dataset

__all__ = ["evaluate", "evaluate_scores"]


def _namer(class_names: list[str] | None) -> Callable[[int], str | int]:
    """Class index -> its name (the index itself when there is no name for it)."""

    def name(c: int) -> str | int:
        return class_names[c] if class_names and 0 <= c < len(class_names) else c

    return name


def _path(dataset: Dataset | None, idx: int) -> str:
    return sample_path(dataset, idx) if dataset is not None else str(idx)


def evaluate_scores(
    scores: ScoreSet,
    *,
    fuse: str = "prob",
    dataset: Dataset | None = None,
    class_names: list[str] | None = None,
    topk: int = 5,
    multi_label: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The figures of a :class:`ScoreSet` and one prediction record per video (dataset order).

    ``num_non_finite`` counts the failures that were videos with non-finite logits.
    """
    if multi_label:
        return _evaluate_multilabel(scores, fuse, dataset, class_names, topk)
    fused = fuse_views(scores.view_logits, fuse) if scores.indices else torch.zeros(0, 1)
    metrics = classification_metrics(
        fused, scores.labels, scores.failed_labels, clip_logits=scores.view_logits
    )
    metrics["fuse"] = "mean of softmax over views" if fuse == "prob" else "mean of logits over views"
    metrics["num_non_finite"] = scores.num_non_finite
    name = _namer(class_names)
    records: dict[int, dict[str, Any]] = {}
    if scores.indices:
        probs = fused.softmax(-1) if fuse == "logits" else fused
        k = min(topk, probs.shape[-1])
        top = probs.topk(k, dim=-1)
        hits = topk_hits(fused, scores.labels, 1)
        for row, idx in enumerate(scores.indices):
            records[idx] = {
                "index": idx,
                "path": _path(dataset, idx),
                "label": name(int(scores.labels[row])),
                "prediction": name(int(top.indices[row, 0])),
                "correct": bool(hits[row]),
                "top": [
                    [name(int(c)), round(float(p), 6)] for c, p in zip(top.indices[row], top.values[row])
                ],
            }
    for f in scores.failures:
        idx = f["index"]
        records[idx] = {
            "index": idx,
            "path": _path(dataset, idx),
            "label": name(f["label"]),
            "prediction": None,
            "correct": False,
            "error": f["error"],
        }
    return metrics, [records[i] for i in sorted(records)]


def _num_classes(scores: ScoreSet, class_names: list[str] | None) -> int:
    if scores.indices:
        return int(scores.view_logits.shape[-1])
    for f in scores.failures:
        if "num_classes" in f:
            return int(f["num_classes"])
    if class_names:
        return len(class_names)
    raise ValueError("multi-label evaluation: cannot tell the number of classes")


def _evaluate_multilabel(
    scores: ScoreSet, fuse: str, dataset: Dataset | None, class_names: list[str] | None, topk: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """:func:`evaluate_scores` for multi-hot targets: mAP, and per video its labels, the
    classes whose fused sigmoid probability is at least 0.5, the top-k and every class's
    probability (class order)."""
    c = _num_classes(scores, class_names)
    if scores.indices:
        probs = scores_to_probs(
            fuse_views(scores.view_logits, fuse, multi_label=True), fuse, multi_label=True
        )
        targets = scores.labels.float()
        if targets.ndim != 2:
            raise ValueError("multi-label evaluation needs multi-hot targets (data.multi_label=true)")
    else:
        probs, targets = torch.zeros(0, c), torch.zeros(0, c)
    metrics = multilabel_metrics(probs, targets, scores.failed_targets(c), class_names)
    metrics["fuse"] = "mean of sigmoid over views" if fuse == "prob" else "mean of logits over views"
    metrics["num_non_finite"] = scores.num_non_finite
    name = _namer(class_names)
    records: dict[int, dict[str, Any]] = {}
    if scores.indices:
        top = probs.topk(min(topk, c), dim=-1)
        for row, idx in enumerate(scores.indices):
            p = probs[row]
            records[idx] = {
                "index": idx,
                "path": _path(dataset, idx),
                "labels": [name(k) for k in targets[row].nonzero().flatten().tolist()],
                "predicted": [name(k) for k in (p >= 0.5).nonzero().flatten().tolist()],
                "top": [
                    [name(int(k)), round(float(v), 6)] for k, v in zip(top.indices[row], top.values[row])
                ],
                "probs": [round(float(v), 6) for v in p],
            }
    for f in scores.failures:
        idx = f["index"]
        records[idx] = {
            "index": idx,
            "path": _path(dataset, idx),
            "labels": [name(k) for k in f["label"]],
            "predicted": None,
            "error": f["error"],
        }
    return metrics, [records[i] for i in sorted(records)]


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    views: tuple[int, int] = (1, 1),
    fuse: str = "prob",
    batch_size: int = 8,
    workers: int = 0,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    dist_info: DistInfo | None = None,
    class_names: list[str] | None = None,
    progress: bool = False,
    multi_label: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]], ScoreSet] | None:
    """Score ``dataset`` (multi-view items of ``views``) and compute the figures on rank 0
    (mAP with ``multi_label``: multi-hot targets, sigmoid scores).

    Returns ``(metrics, per_video_records, scores)`` on rank 0 and None on the other ranks.
    """
    start = time.perf_counter()
    scores = score_dataset(
        model,
        dataset,
        batch_size=batch_size,
        workers=workers,
        device=device,
        amp_dtype=amp_dtype,
        dist_info=dist_info,
        progress=progress,
    )
    if scores is None:
        return None
    if scores.indices and scores.view_logits.shape[1] != views[0] * views[1]:
        raise RuntimeError(
            f"dataset returned {scores.view_logits.shape[1]} views per video, expected {views[0]}x{views[1]}"
        )
    metrics, records = evaluate_scores(
        scores, fuse=fuse, dataset=dataset, class_names=class_names, multi_label=multi_label
    )
    metrics["views"] = f"{views[0]}x{views[1]}"
    metrics["eval_seconds"] = round(time.perf_counter() - start, 3)
    return metrics, records, scores
