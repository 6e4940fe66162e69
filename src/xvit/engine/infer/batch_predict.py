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
"""

from __future__ import annotations

import csv
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
from xvit.engine.run.saved import load_run
from xvit.engine.run.schema import parse_views

__all__ = ["failed_path", "predict_list", "prediction_header"]


def prediction_header(topk: int) -> list[str]:
    """The columns of ``predictions.csv`` for ``topk`` classes."""
    return ["path"] + [c for k in range(1, topk + 1) for c in (f"class_{k}", f"prob_{k}")]


def failed_path(out: str | Path) -> Path:
    """Where the failures of ``out`` are listed: ``predictions.csv`` -> ``predictions.failed.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.failed{out.suffix or '.csv'}")


def _done_rows(out: Path, header: list[str]) -> set[str]:
    """The videos already in ``out``; drops a last line cut short, refuses another layout."""
    if not out.exists():
        return set()
    if not out.is_file():
        raise ValueError(f"--out {out} is not a file")
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):  # a crash during an append: drop the partial row
        cut = data.rfind(b"\n") + 1
        with open(out, "r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    rows = list(csv.reader(data.decode().splitlines()))
    if not rows:
        return set()
    if rows[0] != header:
        raise ValueError(
            f"--out {out} has columns {','.join(rows[0])}, not {','.join(header)} "
            "(another --topk?); use another --out or the same options"
        )
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
    ``ValueError`` / ``FileNotFoundError`` for bad options, before any work.
    """
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"--topk must be an integer >= 1, got {topk!r}")
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a .csv file")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out {out}: no such directory {out.parent}")
    model, cfg = load_run(checkpoint, overrides)
    labels = None
    if listed:
        labels = check_listed_labels(
            listed, int(model.config.num_classes), model.config.class_names, list_file, checkpoint
        )
    multi_label = bool(getattr(model.config, "multi_label", False))
    k = min(topk, int(model.config.num_classes))
    header = prediction_header(k)
    done = _done_rows(out, header)
    todo = [v for v in dict.fromkeys(videos) if v not in done]
    device = resolve_device(cfg.train.device)
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
