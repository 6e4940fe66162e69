"""`xvit predict`: class probabilities for individual video files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xvit.engine.run.distributed import DistInfo, resolve_device
from xvit.engine.run.metrics import fuse_views, scores_to_probs
from xvit.engine.run.saved import load_run
from xvit.engine.run.schema import parse_views
from xvit.engine.run.scoring import score_dataset

__all__ = ["DEFAULT_MULTI_LABEL_THRESHOLD", "check_predict_options", "predict_videos"]

DEFAULT_MULTI_LABEL_THRESHOLD = 0.5


def check_predict_options(topk: int, threshold: float | None) -> None:
    """Raise ``ValueError`` naming a ``topk`` below 1 or a ``threshold`` outside [0, 1]."""
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"--topk must be an integer >= 1, got {topk!r}")
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"--threshold must be a probability in [0, 1], got {threshold!r}")


def predict_videos(
    checkpoint: str | Path,
    videos: list[str],
    *,
    topk: int = 5,
    threshold: float | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    runtime: str = "torch",
    precision: str | None = None,
    min_agreement: float = 0.99,
) -> list[dict[str, Any]]:
    """Top-k classes of each video, in the order given.

    Single-label models: each result is ``{"path", "predictions": [{"class", "index",
    "prob"}, ...]}`` with the softmax top-k, keeping only classes with ``prob >= threshold``
    when a threshold is given. Multi-label models (``model.config.multi_label``) score each
    class with its own sigmoid: ``predictions`` is the top-k of those, and ``labels`` lists
    every class whose probability is at least ``threshold`` (default 0.5), most likely first;
    ``threshold`` is in the result.

    ``runtime``: ``torch``, or ``onnxruntime`` / ``openvino`` on the model's ONNX export (CPU;
    ``xvit.engine.deploy.export.runtime_model``). ``precision`` (torch only): ``fp32``, ``bf16``,
    ``int8`` or ``auto`` (``xvit.engine.deploy.precision_auto``; the first videos are its real clips);
    None runs the model as saved.

    A video that cannot be read, or whose logits are not finite (NaN or infinity from the
    model), gets ``{"path", "error"}`` instead; one failure never stops the others.
    """
    from xvit.data.annotations import Sample
    from xvit.engine.run.data import build_eval_dataset

    check_predict_options(topk, threshold)
    model, cfg = load_run(checkpoint, overrides)
    multi_label = bool(getattr(model.config, "multi_label", False))
    device = resolve_device(cfg.train.device)
    views = parse_views(cfg.eval.views)
    num_classes = int(model.config.num_classes)
    samples = [Sample(path=str(v), label=() if multi_label else 0) for v in videos]
    dataset = build_eval_dataset(
        cfg, samples, views, num_classes if multi_label else None, log_failures=False
    )  # each failure is reported once, by the caller
    model.to(device)
    from xvit.engine.deploy.precision_auto import inference_runner

    runner = inference_runner(
        checkpoint,
        model,
        device,
        runtime=runtime,
        precision=precision,
        dataset=dataset,
        min_agreement=min_agreement,
    )
    scores = score_dataset(
        runner, dataset, batch_size=1, workers=0, device=device, dist_info=DistInfo(device=device)
    )
    assert scores is not None  # a single process is always rank 0
    names = list(model.config.class_names or [])

    def entry(c: int, p: float) -> dict[str, Any]:
        return {"class": names[c] if c < len(names) else str(c), "index": c, "prob": round(p, 6)}

    if multi_label and threshold is None:
        threshold = DEFAULT_MULTI_LABEL_THRESHOLD
    results: dict[int, dict[str, Any]] = {}
    if scores.indices:
        fused = fuse_views(scores.view_logits, cfg.eval.fuse, multi_label=multi_label)
        probs = scores_to_probs(fused, cfg.eval.fuse, multi_label=multi_label)
        top = probs.topk(min(topk, probs.shape[-1]), dim=-1)
        for row, idx in enumerate(scores.indices):
            ranked = [(int(c), float(p)) for c, p in zip(top.indices[row], top.values[row])]
            result: dict[str, Any] = {"path": videos[idx]}
            if multi_label:
                order = probs[row].argsort(descending=True, stable=True).tolist()
                above = [(c, float(probs[row, c])) for c in order if float(probs[row, c]) >= threshold]
                result["labels"] = [entry(c, p) for c, p in above]
                result["threshold"] = threshold
            elif threshold is not None:
                ranked = [(c, p) for c, p in ranked if p >= threshold]
                result["threshold"] = threshold
            result["predictions"] = [entry(c, p) for c, p in ranked]
            results[idx] = result
    for f in scores.failures:
        results[f["index"]] = {"path": videos[f["index"]], "error": f["error"]}
    return [results[i] for i in range(len(videos))]
