"""Accuracy figures for single- and multi-view evaluation.

Conventions (all figures in percent):
- ``top1`` / ``top5``: a video is right when its label is among the k highest fused scores;
  videos that failed to decode count as wrong and stay in the denominator.
- ``mean_class_accuracy``: the mean over the classes present in the evaluated list of each
  class's top-1 recall (failures count as misses of their class).
- ``clip_top1``: every single view scored on its own (failed videos contribute all their
  views as wrong); ``video_top1`` is the fused top-1 (equal to ``top1``).

Multi-label (a set of classes per video, sigmoid scores):
- ``mAP`` (macro): the mean over the classes with at least one positive video of each class's
  average precision; ``micro_mAP``: the average precision of all (video, class) pairs pooled.
- Average precision is the step-wise area under the precision-recall curve, with tied scores
  taken as one threshold (the definition of scikit-learn's ``average_precision_score``).
- Videos that failed are not ranked at all: their positives are never retrieved, so they stay
  in each class's number of positives and lower its recall (a class whose positives all
  failed has AP 0).
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = [
    "FUSE_MODES",
    "agreement_figures",
    "average_precision",
    "classification_metrics",
    "fuse_views",
    "multilabel_metrics",
    "scores_to_probs",
    "subset_indices",
    "topk_hits",
]


# How the views of a video are fused (eval.fuse, xvit eval --fuse): the mean of the
# per-view probabilities, or the mean of the logits.
FUSE_MODES = ("prob", "logits")


def agreement_figures(reference: torch.Tensor, logits: torch.Tensor) -> dict[str, float]:
    """How far ``(N, C)`` logits of another deployment (precision, runtime) stand from the
    ``reference`` ones of the same clips: ``top1_agreement`` (share of clips with the same
    top-1 class), ``max_prob_diff`` and ``max_logit_diff`` (largest absolute differences)."""
    return {
        "top1_agreement": float((logits.argmax(-1) == reference.argmax(-1)).float().mean()),
        "max_prob_diff": float((logits.softmax(-1) - reference.softmax(-1)).abs().max()),
        "max_logit_diff": float((logits - reference).abs().max()),
    }


def fuse_views(view_logits: torch.Tensor, fuse: str = "prob", multi_label: bool = False) -> torch.Tensor:
    """Fuse ``(N, V, C)`` per-view logits into ``(N, C)`` scores.

    ``prob``: mean of the softmax of each view (the default; the sigmoid with
    ``multi_label``); ``logits``: mean of the logits.
    """
    if view_logits.ndim != 3:
        raise ValueError(f"view scores must be (N, V, C), got {tuple(view_logits.shape)}")
    if fuse == "prob":
        x = view_logits.float()
        return (x.sigmoid() if multi_label else x.softmax(-1)).mean(1)
    if fuse == "logits":
        return view_logits.float().mean(1)
    raise ValueError(f"fuse must be 'prob' or 'logits', got {fuse!r}")


def scores_to_probs(fused: torch.Tensor, fuse: str = "prob", multi_label: bool = False) -> torch.Tensor:
    """Probabilities from :func:`fuse_views` output: fused logits go through the softmax (the
    sigmoid with ``multi_label``); fused probabilities are returned as they are."""
    if fuse == "logits":
        return fused.sigmoid() if multi_label else fused.softmax(-1)
    return fused


def topk_hits(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Bool ``(N,)``: the label is among the ``k`` highest scores (k capped at C)."""
    k = min(k, scores.shape[-1])
    return (scores.topk(k, dim=-1).indices == labels[:, None]).any(-1)


def classification_metrics(
    scores: torch.Tensor,
    labels: torch.Tensor,
    failed_labels: list[int] | torch.Tensor = (),
    clip_logits: torch.Tensor | None = None,
) -> dict[str, float | int]:
    """top1, top5, mean class accuracy (percent), clip/video top-1 and the counts.

    ``scores`` ``(N, C)`` are the fused scores of the N videos that were scored, ``labels``
    their labels; ``failed_labels`` the labels of the videos that could not be read (counted as
    wrong); ``clip_logits`` ``(N, V, C)`` the per-view scores for the clip-level accuracy.
    """
    labels = labels.long()
    failed = torch.as_tensor(list(failed_labels), dtype=torch.long)
    n_ok, n_failed = int(labels.numel()), int(failed.numel())
    total = n_ok + n_failed
    if total == 0:
        raise ValueError("no videos to evaluate")
    top1 = topk_hits(scores, labels, 1) if n_ok else torch.zeros(0, dtype=torch.bool)
    top5 = topk_hits(scores, labels, 5) if n_ok else torch.zeros(0, dtype=torch.bool)
    all_labels = torch.cat([labels, failed])
    all_hits = torch.cat([top1, torch.zeros(n_failed, dtype=torch.bool)])
    per_class = [all_hits[all_labels == c].float().mean() for c in all_labels.unique()]
    out: dict[str, float | int] = {
        "top1": 100.0 * float(top1.sum()) / total,
        "top5": 100.0 * float(top5.sum()) / total,
        "mean_class_accuracy": 100.0 * float(torch.stack(per_class).mean()),
        "video_top1": 100.0 * float(top1.sum()) / total,
        "num_videos": total,
        "num_failed": n_failed,
    }
    if clip_logits is not None:
        views = clip_logits.shape[1] if n_ok else 1
        clip_hits = clip_logits.argmax(-1) == labels[:, None] if n_ok else torch.zeros(0)
        out["clip_top1"] = 100.0 * float(clip_hits.sum()) / (total * views)
    return out


def average_precision(scores: torch.Tensor, targets: torch.Tensor, missed: int = 0) -> float:
    """Average precision (a fraction) of ranking ``scores`` ``(N,)`` against the 0/1
    ``targets`` ``(N,)``; ``missed`` more positives were never ranked (they lower the recall).

    ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds, highest first (ties are
    one threshold, as in scikit-learn's ``average_precision_score``). NaN when there is no
    positive at all.
    """
    scores = torch.as_tensor(scores, dtype=torch.float64).flatten()
    pos = torch.as_tensor(targets).flatten() > 0
    if scores.shape != pos.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(pos.shape)} differ in shape")
    if torch.isnan(scores).any():
        raise ValueError("average_precision: NaN scores")
    n_pos = int(pos.sum()) + int(missed)
    if n_pos == 0:
        return float("nan")
    if not pos.any():
        return 0.0
    order = torch.argsort(scores, descending=True, stable=True)
    s, y = scores[order], pos[order].double()
    tp = y.cumsum(0)
    # the last position of each run of equal scores closes a threshold
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    tp, seen = tp[last], (torch.nonzero(last).flatten() + 1).double()
    precision = tp / seen
    recall = tp / n_pos
    gain = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((gain * precision).sum())


def multilabel_metrics(
    scores: torch.Tensor,
    targets: torch.Tensor,
    failed_targets: torch.Tensor | None = None,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """Macro and micro mAP (percent) of ``scores`` ``(N, C)`` (fused probabilities or logits:
    only the order matters) against multi-hot ``targets`` ``(N, C)``.

    ``failed_targets`` ``(F, C)``: the label sets of the videos that could not be scored;
    their positives count as never retrieved. Also returns the AP of each class that has a
    positive (``per_class_ap``, by class name), the counts, and the classes left out of the
    macro mean for having no positive video.
    """
    targets = torch.as_tensor(targets).float()
    if scores.ndim != 2 or targets.shape != scores.shape:
        raise ValueError(
            f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must both be (N, C)"
        )
    c = scores.shape[1]
    failed = (
        torch.zeros(0, c)
        if failed_targets is None
        else torch.as_tensor(failed_targets).float().reshape(-1, c)
    )
    n_ok, n_failed = scores.shape[0], failed.shape[0]
    if n_ok + n_failed == 0:
        raise ValueError("no videos to evaluate")
    missed = (failed > 0).sum(0)
    per_class: dict[str, float] = {}
    aps = []
    for k in range(c):
        ap = average_precision(scores[:, k], targets[:, k], int(missed[k]))
        if not math.isnan(ap):  # the class has a positive
            aps.append(ap)
            per_class[class_names[k] if class_names and k < len(class_names) else str(k)] = round(
                100.0 * ap, 4
            )
    micro = average_precision(scores.flatten(), targets.flatten(), int(missed.sum()))
    if not aps:
        raise ValueError("multi-label evaluation: no video has any label, so there is no AP to compute")
    return {
        "mAP": 100.0 * sum(aps) / len(aps),
        "micro_mAP": 100.0 * micro,
        "num_videos": n_ok + n_failed,
        "num_failed": n_failed,
        "num_classes_with_positives": len(aps),
        "per_class_ap": per_class,
    }


def subset_indices(n: int, k: int) -> list[int]:
    """``k`` of the positions ``0..n-1``, evenly spread (the centres of k equal bins).

    Used by the views curve: with t temporal clips scored, the accuracy "with k clips" reuses
    the k clips closest to an even k-way spread (k = 1 takes the middle one).
    """
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    return [((2 * i + 1) * n) // (2 * k) for i in range(k)]
