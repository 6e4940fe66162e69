"""Scoring a dataset: every view of every video through the model once, the per-view logits
kept, the videos that failed listed.

Each video of the list is decoded once by the multi-view dataset, which returns its ``t x s``
views as one ``(V, 3, T, h, w)`` item (temporal clip major, spatial crop minor: view
``v = i * s + j``). Videos that cannot be read are listed with their path and error, and so
are videos whose logits are not finite (NaN or infinity: broken weights or inputs), with the
error "non-finite logits".

With several processes, the videos are split by index (``rank, rank + world, ...``, no
padding), so each is scored exactly once; rank 0 gathers every score.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from xvit.data.dataset import build_loader
from xvit.engine.run.distributed import DistInfo, all_gather_object
from xvit.engine.run.precision import autocast

__all__ = ["NON_FINITE", "ScoreSet", "sample_path", "score_dataset"]


@dataclass
class ScoreSet:
    """Per-view logits of the videos that were read, and the ones that failed."""

    indices: list[int]  # dataset positions of the scored videos, ascending
    labels: torch.Tensor  # (N,) long, or (N, C) float multi-hot targets (multi-label)
    view_logits: torch.Tensor  # (N, V, C) float32
    # {index, label, error[, non_finite][, num_classes]}; label: an int, or the list of the
    # video's classes (multi-label, with num_classes)
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed_labels(self) -> list[int]:
        return [int(f["label"]) for f in self.failures]

    @property
    def num_non_finite(self) -> int:
        """Videos that were decoded and scored but whose logits were NaN or infinite."""
        return sum(bool(f.get("non_finite")) for f in self.failures)

    def failed_targets(self, num_classes: int) -> torch.Tensor:
        """Multi-hot ``(F, C)`` targets of the failed videos (multi-label)."""
        out = torch.zeros(len(self.failures), num_classes)
        for row, f in enumerate(self.failures):
            out[row, list(f["label"])] = 1.0
        return out


NON_FINITE = "non-finite logits"


def _plain_label(label: Any) -> dict[str, Any]:
    """A failure's label as plain numbers: ``{"label": int}`` or, for a multi-hot target,
    ``{"label": [classes], "num_classes": C}``."""
    if isinstance(label, torch.Tensor) and label.ndim == 1:
        return {"label": [int(c) for c in label.nonzero().flatten()], "num_classes": int(label.numel())}
    return {"label": int(label)}


def _batch_videos(video: torch.Tensor) -> torch.Tensor:
    """``(B, 3, T, h, w)`` or ``(B, V, 3, T, h, w)`` -> ``(B, V, 3, T, h, w)``."""
    if video.ndim == 5:
        return video[:, None]
    if video.ndim == 6:
        return video
    raise ValueError(f"expected a batch (B, [V,] 3, T, H, W), got {tuple(video.shape)}")


@torch.inference_mode()
def score_dataset(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 8,
    workers: int = 0,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    dist_info: DistInfo | None = None,
    progress: bool = False,
    chunk: int = 64,
) -> ScoreSet | None:
    """Score every view of every video; returns the gathered :class:`ScoreSet` on rank 0.

    ``chunk`` bounds how many clips go through the model at once (views of a batch are split).
    Other ranks return None.
    """
    device = torch.device(device)
    dist_info = dist_info or DistInfo(device=device)
    shard = list(range(dist_info.rank, len(dataset), dist_info.world_size))
    loader = build_loader(
        Subset(dataset, shard),
        batch_size=batch_size,
        workers=workers,
        seed=0,  # never touch the global RNG
        pin_memory=device.type == "cuda",
        persistent=False,
    )
    was_training = model.training
    model.eval()
    indices: list[int] = []
    labels: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []
    failures: list[dict[str, Any]] = []
    bar = _progress(len(loader), progress and dist_info.is_main, "eval")
    for batch in loader:
        failures += [
            {"index": int(f["index"]), **_plain_label(f["label"]), "error": str(f["error"])}
            for f in batch.get("failed", [])
        ]
        video = batch.get("video")
        if video is not None and len(video):
            clips = _batch_videos(video)
            b, v = clips.shape[:2]
            flat = clips.flatten(0, 1)
            out = []
            for start in range(0, flat.shape[0], chunk):
                x = flat[start : start + chunk].to(device, non_blocking=True)
                with autocast(device, amp_dtype):
                    out.append(model(x).float().cpu())
            logits.append(torch.cat(out).view(b, v, -1))
            label = torch.as_tensor(batch["label"])
            labels.append(label.float() if label.ndim == 2 else label.long())  # multi-hot / class
            indices += [int(i) for i in batch["index"]]
        bar.update(1)
    bar.close()
    model.train(was_training)

    local = (indices, torch.cat(labels) if labels else None, torch.cat(logits) if logits else None, failures)
    gathered = all_gather_object(local)
    if not dist_info.is_main:
        return None
    return _fail_non_finite(_merge(gathered), dataset)


def _fail_non_finite(scores: ScoreSet, dataset: Dataset) -> ScoreSet:
    """Move the videos with a NaN or infinite logit in any view to the failures."""
    if not scores.indices:
        return scores
    ok = torch.isfinite(scores.view_logits).flatten(1).all(1)
    if bool(ok.all()):
        return scores
    failures = list(scores.failures)
    for row in (~ok).nonzero().flatten().tolist():
        idx = scores.indices[row]
        failures.append(
            {
                "index": idx,
                **_plain_label(scores.labels[row]),
                "error": f"{sample_path(dataset, idx)}: {NON_FINITE} (NaN or infinity in the model output)",
                "non_finite": True,
            }
        )
    keep = ok.nonzero().flatten()
    return ScoreSet(
        indices=[scores.indices[i] for i in keep.tolist()],
        labels=scores.labels[keep],
        view_logits=scores.view_logits[keep],
        failures=sorted(failures, key=lambda f: f["index"]),
    )


def _merge(parts: list[tuple]) -> ScoreSet:
    """Join the ranks' results, ordered by dataset index, each index once."""
    rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    failures: dict[int, dict[str, Any]] = {}
    for indices, labels, logits, fails in parts:
        for k, idx in enumerate(indices):
            rows.setdefault(idx, (labels[k], logits[k]))
        for f in fails:
            failures.setdefault(f["index"], f)
    order = sorted(rows)
    if not order:
        return ScoreSet([], torch.zeros(0, dtype=torch.long), torch.zeros(0, 1, 1), list(failures.values()))
    return ScoreSet(
        indices=order,
        labels=torch.stack([rows[i][0] for i in order]),
        view_logits=torch.stack([rows[i][1] for i in order]),
        failures=[failures[i] for i in sorted(failures)],
    )


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not (enabled and sys.stderr.isatty()), leave=False)


def sample_path(dataset: Dataset, index: int) -> str:
    """The path of item ``index`` of ``dataset`` (its position when the dataset has none)."""
    samples = getattr(dataset, "samples", None)
    if samples is None:
        return str(index)
    sample = samples[index]
    path = getattr(sample, "path", None)
    if path is None and isinstance(sample, (tuple, list)):
        path = sample[0]
    return str(path if path is not None else index)
