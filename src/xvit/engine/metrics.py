"""Accuracy figures for single- and multi-view evaluation.

Conventions (all figures in percent):
- ``top1`` / ``top5``: a video is right when its label is among the k highest fused scores;
  videos that failed to decode count as wrong and stay in the denominator.
- ``mean_class_accuracy``: the mean over the classes present in the evaluated list of each
  class's top-1 recall (failures count as misses of their class).
- ``clip_top1``: every single view scored on its own (failed videos contribute all their
  views as wrong); ``video_top1`` is the fused top-1 (equal to ``top1``).
"""

from __future__ import annotations

import torch

__all__ = ["classification_metrics", "fuse_views", "subset_indices", "topk_hits"]


def fuse_views(view_logits: torch.Tensor, fuse: str = "prob") -> torch.Tensor:
    """Fuse ``(N, V, C)`` per-view logits into ``(N, C)`` scores.

    ``prob``: mean of the softmax of each view (the default); ``logits``: mean of the logits.
    """
    if view_logits.ndim != 3:
        raise ValueError(f"view scores must be (N, V, C), got {tuple(view_logits.shape)}")
    if fuse == "prob":
        return view_logits.float().softmax(-1).mean(1)
    if fuse == "logits":
        return view_logits.float().mean(1)
    raise ValueError(f"fuse must be 'prob' or 'logits', got {fuse!r}")


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


def subset_indices(n: int, k: int) -> list[int]:
    """``k`` of the positions ``0..n-1``, evenly spread (the centres of k equal bins).

    Used by the views curve: with t temporal clips scored, the accuracy "with k clips" reuses
    the k clips closest to an even k-way spread (k = 1 takes the middle one).
    """
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    return [((2 * i + 1) * n) // (2 * k) for i in range(k)]
