"""`xvit predict --list FILE --out predictions.csv`: the top-k classes of every video of a list,
decoded in DataLoader worker processes while the model runs, resumable, failures listed.

``predictions.csv`` has one row per video: ``path, class_1, prob_1, ..., class_K, prob_K``
(the test views fused as in ``xvit eval``; for a multi-label model the probabilities are
per-class sigmoids). Rows are appended one batch at a time with a single write and flushed to
disk; a rerun keeps the rows there (a last line cut short by a crash is dropped) and predicts
only the other videos. ``predictions.failed.csv`` (``path, error``) lists the videos of the
last run that could not be read or gave non-finite logits; it is rewritten whole (temporary
file and rename) whenever that list changes, and removed by a run without failures. Failed
videos are tried again by the next run.

``predictions.settings.json`` records what made the rows (:func:`list_settings`: the
checkpoint and a hash of its weights and config, the runtime and precision, the views and
their fusion, the frame sampling and test scale, ``topk``); it is written (temporary file and
rename) before the first row. A rerun whose settings differ, or an ``out`` with rows and no
record (written before the record existed), is refused with ``ValueError`` naming what
differs, before anything is written: the rows of two models are never mixed in one file.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from xvit.data.annotations import Sample
from xvit.data.dataset import build_loader
from xvit.engine.infer.video_list import atomic_write_text, csv_text
from xvit.engine.run.data import build_eval_dataset
from xvit.engine.run.distributed import configure_threads, resolve_device
from xvit.engine.run.labels import check_listed_labels
from xvit.engine.run.metrics import fuse_views, scores_to_probs
from xvit.engine.run.rundir import nearest_existing
from xvit.engine.run.saved import load_run
from xvit.engine.run.schema import Config, parse_views
from xvit.models.storage import checkpoint_digest

__all__ = ["failed_path", "list_settings", "predict_list", "prediction_header", "settings_path"]

# The settings that change the rows of predictions.csv; a resumed run must have them all equal.
COMPARED = (
    "weights",
    "runtime",
    "precision",
    "views",
    "fuse",
    "num_frames",
    "sampling",
    "sampling_rate",
    "img_size",
    "test_scale",
    "topk",
)


def prediction_header(topk: int) -> list[str]:
    """The columns of ``predictions.csv`` for ``topk`` classes."""
    return ["path"] + [c for k in range(1, topk + 1) for c in (f"class_{k}", f"prob_{k}")]


def failed_path(out: str | Path) -> Path:
    """Where the failures of ``out`` are listed: ``predictions.csv`` -> ``predictions.failed.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.failed{out.suffix or '.csv'}")


def settings_path(out: str | Path) -> Path:
    """Where the settings of ``out`` are recorded: ``predictions.csv`` -> ``predictions.settings.json``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.settings.json")


def list_settings(checkpoint: str | Path, cfg: Config, topk: int) -> dict[str, Any]:
    """What decides the rows of ``predictions.csv`` (the :data:`COMPARED` keys) and the
    checkpoint's path (for messages; a copy of the same weights elsewhere resumes)."""
    d = cfg.data
    t, s = parse_views(cfg.eval.views)
    return {
        "checkpoint": os.path.abspath(checkpoint),
        "weights": checkpoint_digest(checkpoint)[:16],  # what load_model reads
        "runtime": "torch",
        "precision": "as saved",
        "views": f"{t}x{s}",
        "fuse": cfg.eval.fuse,
        "num_frames": int(d.num_frames),
        "sampling": d.sampling,
        "sampling_rate": int(d.sampling_rate),
        "img_size": int(d.img_size),
        "test_scale": int(d.test_scale or d.img_size),
        "topk": topk,
    }


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    """``ValueError`` naming what changed when the rows of ``out`` were made with settings
    other than ``settings`` (its record, :func:`settings_path`, must exist)."""
    record = settings_path(out)
    try:
        found = json.loads(record.read_text())
        if not isinstance(found, dict) or "weights" not in found:
            raise ValueError("no weights entry")
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{record} cannot be read as the settings record of --out {out} ({e}); use another --out"
        ) from e
    changed = []
    if found.get("weights") != settings["weights"]:
        old, new = found.get("checkpoint"), settings["checkpoint"]
        changed.append(
            f"checkpoint {old} -> {new}"
            if old != new
            else f"checkpoint {new} (its weights changed since, {found.get('weights')} -> {settings['weights']})"
        )
    changed += [
        f"{k} {found.get(k)} -> {settings[k]}"
        for k in COMPARED
        if k != "weights" and found.get(k) != settings[k]
    ]
    if changed:
        raise ValueError(
            f"--out {out} was predicted with other settings ({'; '.join(changed)}); use another --out, "
            "or the same settings to resume"
        )


def _done_rows(out: Path, header: list[str], settings: dict[str, Any]) -> set[str]:
    """The videos already in ``out``. Refuses, before touching anything, an ``out`` whose rows
    were made with other settings or columns, or that has rows and no settings record; then
    records ``settings`` next to it and drops a last line cut short by a crash."""
    if out.exists() and not out.is_file():
        raise ValueError(f"--out {out} is not a file")
    data = out.read_bytes() if out.exists() else b""
    cut = data.rfind(b"\n") + 1 if data and not data.endswith(b"\n") else len(data)
    rows = list(csv.reader(data[:cut].decode().splitlines()))
    has_rows = any(r for r in rows[1:]) or (cut < len(data) and bool(rows))
    record = settings_path(out)
    if has_rows and record.exists():
        _check_settings(out, settings)  # first: it names a checkpoint change, not just other columns
    if rows and rows[0] != header:
        raise ValueError(
            f"--out {out} has columns {','.join(rows[0])}, not {','.join(header)} "
            "(another --topk?); use another --out or the same options"
        )
    if has_rows and not record.exists():
        raise ValueError(
            f"--out {out} has predictions but no settings record {record.name} (written by an "
            "older xvit?), so the checkpoint and views that made them cannot be checked; use another "
            f"--out, or move {out} away to predict the list again"
        )
    text = json.dumps(settings, indent=1) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)  # as --timeline, train and eval do
    if not record.is_file() or record.read_text() != text:
        atomic_write_text(record, text)  # before any row is written
    if cut < len(data):  # a crash during an append: drop the partial row
        with open(out, "r+b") as f:
            f.truncate(cut)
    return {r[0] for r in rows[1:] if r}


def _append(out: Path, text: str) -> None:
    with open(out, "a", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def predict_list(
    checkpoint: str | Path,
    videos: list[str],
    out: str | Path,
    *,
    topk: int = 5,
    batch_size: int | None = None,
    workers: int | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    progress: bool = True,
    listed: list[Any] | None = None,
    list_file: str | Path | None = None,
) -> dict[str, Any]:
    """Predict every video of ``videos`` not yet in ``out`` (see the module docstring).

    ``listed``: the videos as ``list_file`` gives them (``read_listed_videos``): labels on
    its lines are checked against the model's classes before any work (a label it cannot
    produce is a ``ConfigError`` naming both sides). Returns ``{"videos", "predicted",
    "skipped", "failed", "failures", "out", "failed_csv", "seconds", "label_space"}``.
    ``ValueError`` / ``FileNotFoundError`` for bad options, before any work; a missing folder
    of ``out`` is created once they are checked.
    """
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"--topk must be an integer >= 1, got {topk!r}")
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a .csv file")
    parent = nearest_existing(out.parent)  # a missing folder is made, once all checks pass
    if not parent.is_dir():
        raise ValueError(f"--out {out}: {parent} is not a directory")
    model, cfg = load_run(checkpoint, overrides)
    labels = None
    if listed:
        labels = check_listed_labels(
            listed, int(model.config.num_classes), model.config.class_names, list_file, checkpoint
        )
    multi_label = bool(getattr(model.config, "multi_label", False))
    k = min(topk, int(model.config.num_classes))
    header = prediction_header(k)
    device = resolve_device(cfg.train.device)  # a device this machine has not: before any file
    done = _done_rows(out, header, list_settings(checkpoint, cfg, k))
    todo = [v for v in dict.fromkeys(videos) if v not in done]
    workers = cfg.data.workers if workers is None else workers
    configure_threads(cfg.train.threads, device, workers)
    views = parse_views(cfg.eval.views)
    num_classes = int(model.config.num_classes)
    samples = [Sample(path=str(v), label=() if multi_label else 0) for v in todo]
    dataset = build_eval_dataset(
        cfg, samples, views, num_classes if multi_label else None, log_failures=False
    )  # each failure is reported once, by the caller
    loader = build_loader(
        dataset,
        batch_size=batch_size or cfg.eval.batch_size,
        workers=min(workers, len(todo)),
        pin_memory=device.type == "cuda",
        persistent=False,
    )
    names = list(model.config.class_names or [])
    model.to(device).eval()
    if not out.exists() or out.stat().st_size == 0:
        atomic_write_text(out, csv_text([header]))
    failed_csv = failed_path(out)
    failures: list[dict[str, str]] = []
    predicted = 0
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="predict", unit="video", disable=not progress)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for batch in loader if todo else ():
            new_failures = [
                {"path": todo[int(f["index"])], "error": str(f["error"])} for f in batch["failed"]
            ]
            rows = []
            video = batch.get("video")
            if video is not None and len(video):
                clips = video[:, None] if video.ndim == 5 else video  # (B, V, 3, T, h, w)
                b, v = clips.shape[:2]
                logits = model(clips.flatten(0, 1).to(device)).float().cpu().view(b, v, -1)
                probs = scores_to_probs(
                    fuse_views(logits, cfg.eval.fuse, multi_label), cfg.eval.fuse, multi_label
                )
                top = probs.topk(k, dim=-1)
                for row, index in enumerate(batch["index"].tolist()):
                    path = todo[index]
                    if not torch.isfinite(logits[row]).all():
                        new_failures.append(
                            {"path": path, "error": f"{path}: logits are not finite (NaN or infinity)"}
                        )
                        continue
                    cells: list[Any] = [path]
                    for c, p in zip(top.indices[row].tolist(), top.values[row].tolist()):
                        cells += [names[c] if c < len(names) else str(c), f"{p:.6f}"]
                    rows.append(cells)
            if rows:
                _append(out, csv_text(rows))
                predicted += len(rows)
            if new_failures:
                failures += new_failures
                atomic_write_text(
                    failed_csv, csv_text([["path", "error"], *[[f["path"], f["error"]] for f in failures]])
                )
            bar.update(len(rows) + len(new_failures))
    bar.close()
    if not failures:
        failed_csv.unlink(missing_ok=True)
    return {
        "videos": len(dict.fromkeys(videos)),
        "predicted": predicted,
        "skipped": len(dict.fromkeys(videos)) - len(todo),
        "failed": len(failures),
        "failures": failures,
        "out": str(out),
        "failed_csv": str(failed_csv),
        "seconds": time.perf_counter() - t0,
        "label_space": labels,
    }
