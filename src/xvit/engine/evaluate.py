"""Multi-view evaluation: score every video once, fuse its views, compute the figures.

Each video of the list is decoded once by the multi-view dataset, which returns its ``t x s``
views as one ``(V, 3, T, h, w)`` item (temporal clip major, spatial crop minor: view
``v = i * s + j``). All views are scored, the per-view logits are kept, and the views of a
video are fused (mean of softmax by default, or mean of logits). Videos that cannot be
read are listed with their path and error and count as wrong, and so do videos whose logits
are not finite (NaN or infinity: broken weights or inputs), with the error "non-finite logits".
With multi-label data (``multi_label=True``: multi-hot targets, sigmoid scores) the figures
are the macro and micro mAP (:func:`xvit.engine.metrics.multilabel_metrics`).

With several processes, the videos are split by index (``rank, rank + world, ...``, no
padding), so each is scored exactly once; rank 0 gathers every score and computes the figures.
"""

from __future__ import annotations

import contextlib
import csv
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from xvit.engine.distributed import DistInfo, all_gather_object
from xvit.engine.metrics import (
    classification_metrics,
    fuse_views,
    multilabel_metrics,
    scores_to_probs,
    subset_indices,
    topk_hits,
)
from xvit.engine.rundir import atomic_write, check_output_dir, write_json

__all__ = [
    "ScoreSet",
    "autocast",
    "evaluate",
    "score_dataset",
    "views_curve",
    "write_views_curve",
]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed-precision context for ``device`` (a no-op when ``dtype`` is None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


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
    from xvit.data.dataset import build_loader

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
        failures.append({"index": idx, **_plain_label(scores.labels[row]),
                         "error": f"{_sample_path(dataset, idx)}: {NON_FINITE} (NaN or infinity "
                                  "in the model output)", "non_finite": True})
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


def _sample_path(dataset: Dataset, index: int) -> str:
    samples = getattr(dataset, "samples", None)
    if samples is None:
        return str(index)
    sample = samples[index]
    path = getattr(sample, "path", None)
    if path is None and isinstance(sample, (tuple, list)):
        path = sample[0]
    return str(path if path is not None else index)


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

    def name(c: int) -> str | int:
        return class_names[c] if class_names and 0 <= c < len(class_names) else c

    records: dict[int, dict[str, Any]] = {}
    if scores.indices:
        probs = fused.softmax(-1) if fuse == "logits" else fused
        k = min(topk, probs.shape[-1])
        top = probs.topk(k, dim=-1)
        hits = topk_hits(fused, scores.labels, 1)
        for row, idx in enumerate(scores.indices):
            records[idx] = {
                "index": idx,
                "path": _sample_path(dataset, idx) if dataset is not None else str(idx),
                "label": name(int(scores.labels[row])),
                "prediction": name(int(top.indices[row, 0])),
                "correct": bool(hits[row]),
                "top": [
                    [name(int(c)), round(float(p), 6)]
                    for c, p in zip(top.indices[row], top.values[row])
                ],
            }
    for f in scores.failures:
        idx = f["index"]
        records[idx] = {
            "index": idx,
            "path": _sample_path(dataset, idx) if dataset is not None else str(idx),
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
        probs = scores_to_probs(fuse_views(scores.view_logits, fuse, multi_label=True), fuse, multi_label=True)
        targets = scores.labels.float()
        if targets.ndim != 2:
            raise ValueError("multi-label evaluation needs multi-hot targets (data.multi_label=true)")
    else:
        probs, targets = torch.zeros(0, c), torch.zeros(0, c)
    metrics = multilabel_metrics(probs, targets, scores.failed_targets(c), class_names)
    metrics["fuse"] = "mean of sigmoid over views" if fuse == "prob" else "mean of logits over views"
    metrics["num_non_finite"] = scores.num_non_finite

    def name(k: int) -> str | int:
        return class_names[k] if class_names and 0 <= k < len(class_names) else k

    def path(idx: int) -> str:
        return _sample_path(dataset, idx) if dataset is not None else str(idx)

    records: dict[int, dict[str, Any]] = {}
    if scores.indices:
        top = probs.topk(min(topk, c), dim=-1)
        for row, idx in enumerate(scores.indices):
            p = probs[row]
            records[idx] = {
                "index": idx,
                "path": path(idx),
                "labels": [name(k) for k in targets[row].nonzero().flatten().tolist()],
                "predicted": [name(k) for k in (p >= 0.5).nonzero().flatten().tolist()],
                "top": [[name(int(k)), round(float(v), 6)] for k, v in zip(top.indices[row], top.values[row])],
                "probs": [round(float(v), 6) for v in p],
            }
    for f in scores.failures:
        idx = f["index"]
        records[idx] = {"index": idx, "path": path(idx), "labels": [name(k) for k in f["label"]],
                        "predicted": None, "error": f["error"]}
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
            f"dataset returned {scores.view_logits.shape[1]} views per video, "
            f"expected {views[0]}x{views[1]}"
        )
    metrics, records = evaluate_scores(scores, fuse=fuse, dataset=dataset, class_names=class_names,
                                       multi_label=multi_label)
    metrics["views"] = f"{views[0]}x{views[1]}"
    metrics["eval_seconds"] = round(time.perf_counter() - start, 3)
    return metrics, records, scores


def views_curve(
    scores: ScoreSet, views: tuple[int, int], fuse: str = "prob", gflops_per_view: float | None = None,
    multi_label: bool = False,
) -> list[dict[str, Any]]:
    """Accuracy with 1..t temporal clips x 1..s spatial crops, reusing the per-view scores
    (``multi_label``: mAP and micro mAP instead of top-1 and top-5).

    With k of the t temporal clips, the k closest to an even spread are used
    (:func:`xvit.engine.metrics.subset_indices`), likewise for the spatial crops (1 = centre).
    """
    t, s = views
    rows = []
    for ks in range(1, s + 1):
        for kt in range(1, t + 1):
            chosen = [i * s + j for i in subset_indices(t, kt) for j in subset_indices(s, ks)]
            if multi_label:
                sub = ScoreSet(scores.indices, scores.labels, scores.view_logits[:, chosen], scores.failures)
                m, _ = evaluate_scores(sub, fuse=fuse, multi_label=True)
                rows.append({"temporal_clips": kt, "spatial_crops": ks, "views": kt * ks,
                             "mAP": round(m["mAP"], 4), "micro_mAP": round(m["micro_mAP"], 4),
                             "gflops": round(gflops_per_view * kt * ks, 4) if gflops_per_view else None})
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
    fig, axes = plt.subplots(1, 2 if has_cost else 1, figsize=(9.5 if has_cost else 5.5, 4),
                             sharey=True, squeeze=False)
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


def write_metrics(path: str | Path, metrics: dict[str, Any], records: list[dict[str, Any]] | None = None,
                  command: list[str] | None = None, extra: dict[str, Any] | None = None) -> Path:
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


def load_run(checkpoint: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[nn.Module, Any]:
    """The model of a run / save_pretrained directory and the config to feed it.

    The sampling and preprocessing settings come from ``DIR/config.yaml`` when ``DIR`` is a
    training run, else from the defaults; frames, crop size, normalisation and multi-label
    mode always follow the model's own config. ``overrides`` (``key=value``) go on top.
    """
    import xvit
    from xvit.engine.config import Config, apply_overrides, load_config

    directory = Path(checkpoint)
    if not (directory / "model.safetensors").is_file():
        hint = " (training not finished? its checkpoints are in checkpoints/)" if (directory / "checkpoints").is_dir() else ""
        raise FileNotFoundError(
            f"{directory}: no model.safetensors; expected a finished run directory or a "
            f"save_pretrained directory{hint}"
        )
    model = xvit.load_model(directory)
    run_cfg = directory / "config.yaml"
    cfg = load_config(run_cfg) if run_cfg.is_file() else Config()
    mc = model.config
    fixed = [f"data.num_frames={mc.num_frames}", f"data.img_size={mc.img_size}",
             f"data.mean={list(mc.mean)}", f"data.std={list(mc.std)}",
             f"data.multi_label={'true' if getattr(mc, 'multi_label', False) else 'false'}"]
    return model, apply_overrides(cfg, fixed + list(overrides))


def evaluate_checkpoint(
    checkpoint: str | Path,
    list_file: str | Path,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    out: str | Path | None = None,
    curve: bool = False,
    command: list[str] | None = None,
) -> dict[str, Any] | None:
    """`xvit eval`: multi-view evaluation of a saved model on an annotation file.

    Writes ``metrics.json`` (and the views curve) into ``out``; returns the figures on rank 0.
    """
    import xvit
    from xvit.engine.config import parse_views
    from xvit.engine.data import build_eval_dataset, read_split
    from xvit.engine.distributed import configure_threads, init_distributed
    from xvit.engine.train import amp_dtype_for

    model, cfg = load_run(checkpoint, overrides)
    if out is None:
        out = Path("runs") / "eval" / f"{Path(checkpoint).name}-{Path(list_file).stem}-{cfg.eval.views}"
    out = check_output_dir(out, "--out")  # before the work, not after it
    dist_info = init_distributed(cfg.train.device)
    configure_threads(cfg.train.threads, dist_info.device, cfg.data.workers)
    views = parse_views(cfg.eval.views)
    class_names = list(model.config.class_names) if model.config.class_names else None
    samples, names, _ = read_split(cfg, str(list_file), class_names=class_names)
    class_names = class_names or names
    multi_label = bool(cfg.data.multi_label)
    dataset = build_eval_dataset(cfg, samples, views, model.config.num_classes if multi_label else None)
    model.to(dist_info.device)
    res = evaluate(
        model,
        dataset,
        views=views,
        fuse=cfg.eval.fuse,
        batch_size=cfg.eval.batch_size,
        workers=cfg.data.workers,
        device=dist_info.device,
        amp_dtype=amp_dtype_for(cfg.train.amp, dist_info.device),
        dist_info=dist_info,
        class_names=class_names,
        progress=True,
        multi_label=multi_label,
    )
    if res is None:
        return None
    metrics, records, scores = res
    extra: dict[str, Any] = {"checkpoint": str(checkpoint), "list": str(list_file)}
    if multi_label:
        figures = (f"mAP {metrics['mAP']:.2f}%  micro mAP {metrics['micro_mAP']:.2f}%  "
                   f"({metrics['num_classes_with_positives']} classes with positives)")
    else:
        figures = (f"top1 {metrics['top1']:.2f}%  top5 {metrics['top5']:.2f}%  mean class accuracy "
                   f"{metrics['mean_class_accuracy']:.2f}%  clip top1 {metrics['clip_top1']:.2f}%  "
                   f"video top1 {metrics['video_top1']:.2f}%")
    print(f"{metrics['num_videos']} videos, {metrics['views']} views, {metrics['fuse']}: "
          f"{figures}  failed {metrics['num_failed']}", flush=True)
    for r in records:
        if "error" in r:
            text = r["error"] if r["path"] in r["error"] else f"{r['path']}: {r['error']}"
            print(f"failed: {text}", flush=True)
    if metrics["num_non_finite"]:
        print(f"error: {metrics['num_non_finite']} of {metrics['num_videos']} videos had non-finite "
              "logits (NaN or infinity): the model's weights or its inputs hold non-finite numbers; "
              "they are counted as failed", file=sys.stderr, flush=True)
    if curve:
        shape = (1, 3, cfg.data.num_frames, cfg.data.img_size, cfg.data.img_size)
        gflops = xvit.count_flops(model, shape) / 1e9
        rows = views_curve(scores, views, cfg.eval.fuse, gflops, multi_label=multi_label)
        csv_path, png_path = write_views_curve(rows, out, title=f"{checkpoint} on {list_file}: accuracy vs test views")
        extra["views_curve"] = rows
        extra["gflops_per_view"] = round(gflops, 4)
        print(f"views curve: {csv_path}, {png_path}", flush=True)
    path = write_metrics(out / "metrics.json", metrics, records, command, extra)
    print(f"metrics written to {path}", flush=True)
    return metrics
