"""`xvit predict`: class probabilities for individual video files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xvit.engine.config import parse_views
from xvit.engine.distributed import DistInfo, resolve_device
from xvit.engine.evaluate import load_run, score_dataset
from xvit.engine.metrics import fuse_views

__all__ = ["predict_videos"]


def predict_videos(
    checkpoint: str | Path,
    videos: list[str],
    *,
    topk: int = 5,
    overrides: list[str] | tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Top-k classes of each video, in the order given.

    Each result is ``{"path", "predictions": [{"class", "index", "prob"}, ...]}`` or, for a
    video that cannot be read, ``{"path", "error"}``; one failure never stops the others.
    """
    from xvit.data.annotations import Sample
    from xvit.engine.data import build_eval_dataset

    model, cfg = load_run(checkpoint, overrides)
    device = resolve_device(cfg.train.device)
    views = parse_views(cfg.eval.views)
    dataset = build_eval_dataset(cfg, [Sample(path=str(v), label=0) for v in videos], views)
    model.to(device)
    scores = score_dataset(model, dataset, batch_size=1, workers=0, device=device,
                           dist_info=DistInfo(device=device))
    assert scores is not None  # a single process is always rank 0
    names = list(model.config.class_names or [])
    results: dict[int, dict[str, Any]] = {}
    if scores.indices:
        probs = fuse_views(scores.view_logits, cfg.eval.fuse)
        if cfg.eval.fuse == "logits":
            probs = probs.softmax(-1)
        top = probs.topk(min(topk, probs.shape[-1]), dim=-1)
        for row, idx in enumerate(scores.indices):
            results[idx] = {
                "path": videos[idx],
                "predictions": [
                    {"class": names[c] if c < len(names) else str(c), "index": c, "prob": round(float(p), 6)}
                    for c, p in zip(top.indices[row].tolist(), top.values[row])
                ],
            }
    for f in scores.failures:
        results[f["index"]] = {"path": videos[f["index"]], "error": f["error"]}
    return [results[i] for i in range(len(videos))]
