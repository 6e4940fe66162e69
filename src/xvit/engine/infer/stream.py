"""`xvit predict --stream SOURCE`: predictions on a live source, one window at a time.

Windows lie on a fixed grid of the stream's frames: window ``w`` holds the model's
``num_frames`` frames ``sampling_rate`` apart from frame ``w * stride``. A reader thread decodes
the source (:class:`~xvit.data.stream.LiveSource`), preprocesses the frames some window needs
and keeps them in a bounded ring (the frames of the newest window and one stride more); it never
waits for the model, so a live source is never held up. The model thread takes the newest
complete window each time it is free: when it is slower than the stream, the windows completed
meanwhile are skipped and the frames that only they held are counted as dropped. Every window
predicted is reported as soon as its logits are ready, with the latency from the arrival of its
last frame; a summary ends the run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xvit.data.stream import LiveSource
from xvit.data.transforms import EvalTransform
from xvit.engine.infer.window_clips import WindowSpec, default_stride
from xvit.engine.run.distributed import resolve_device
from xvit.engine.run.saved import load_run

__all__ = [
    "StreamResult",
    "newest_complete",
    "open_stream",
    "predict_stream",
    "run_stream",
    "stream_transform",
    "warm_up",
    "window_frames",
]

WARN_EVERY_S = 10.0  # how often "still behind" is repeated while windows are being skipped


def newest_complete(spec: WindowSpec, newest_frame: int) -> int:
    """The newest window (number ``w``, starting at ``w * stride``) whose last frame is at most
    ``newest_frame``; -1 when none is complete yet."""
    return (newest_frame - spec.span + 1) // spec.stride if newest_frame >= spec.span - 1 else -1


def window_frames(spec: WindowSpec, w: int) -> list[int]:
    """The frame indices of window ``w``."""
    return spec.frames(w * spec.stride)


@dataclass
class StreamResult:
    """How a stream run went (also the summary line, :meth:`summary`)."""

    windows: int = 0
    windows_skipped: int = 0
    frames_read: int = 0
    frames_dropped: int = 0
    nonfinite: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    reason: str = ""
    failed: bool = False  # the source broke (read error), or the reader itself failed
    interrupted: bool = False

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms, dtype=np.float64)
        return {
            "type": "summary",
            "windows": self.windows,
            "windows_skipped": self.windows_skipped,
            "frames_read": self.frames_read,
            "frames_dropped": self.frames_dropped,
            "nonfinite_windows": self.nonfinite,
            "latency_ms_median": round(float(np.median(lat)), 3) if lat.size else None,
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 3) if lat.size else None,
            "seconds": round(self.seconds, 3),
            "exit": self.reason,
        }


class _Ring:
    """The preprocessed frames the reader has kept, by frame index (bounded: old ones go)."""

    def __init__(self, keep: int) -> None:
        self.cond = threading.Condition()
        self.keep = keep
        self.frames: dict[int, tuple[torch.Tensor, float, float]] = {}
        self.newest = -1
        self.done = False
        self.error: str | None = None
        self.frame_s = 0.0  # duration of one frame (from the stream's rate), for window ends

    def put(self, index: int, item: tuple[torch.Tensor, float, float]) -> None:
        with self.cond:
            self.frames[index] = item
            self.newest = index
            for old in [i for i in self.frames if i <= index - self.keep]:
                del self.frames[old]
            self.cond.notify_all()

    def finish(self, error: str | None = None) -> None:
        with self.cond:
            self.done, self.error = True, error
            self.cond.notify_all()


def _read(source: LiveSource, transform: EvalTransform, ring: _Ring) -> None:
    """Reader thread: decode, preprocess and keep the frames windows need, until the end."""
    error = None
    try:
        for f in source:
            clip = transform(f.image[None])  # (1, 3, 1, s, s)
            ring.put(f.index, (clip[0, :, 0], f.time, f.arrival))
    except Exception as e:  # reported in the summary; the stream ends cleanly
        error = f"reader failed: {type(e).__name__}: {' '.join(str(e).split())}"
    finally:
        ring.finish(error)


def _infer(model: nn.Module, clip: torch.Tensor) -> torch.Tensor:
    """Logits ``(1, C)`` of one clip ``(1, 3, T, s, s)``."""
    return model(clip)


def open_stream(source: str | Path, spec: WindowSpec, *, realtime: bool, timeout: float = 10.0) -> LiveSource:
    """The live source, keeping only the frames some window of ``spec`` needs."""
    return LiveSource(source, realtime=realtime, timeout=timeout, keep=spec.used)


def run_stream(
    model: nn.Module,
    source: LiveSource,
    spec: WindowSpec,
    *,
    transform: EvalTransform,
    device: torch.device,
    topk: int = 5,
    threshold: float | None = None,
    max_windows: int | None = None,
    max_seconds: float | None = None,
    emit: Callable[[dict[str, Any]], None],
    warn: Callable[[str], None],
) -> StreamResult:
    """Predict windows of ``source`` until it ends (or a limit is reached); ``emit`` gets each
    window's record as soon as it is ready, ``warn`` the messages about falling behind."""
    cfg = model.config
    names = list(getattr(cfg, "class_names", None) or [])
    multi_label = bool(getattr(cfg, "multi_label", False))
    model.to(device).eval()
    ring = _Ring(keep=spec.span + spec.stride)
    ring.frame_s = 1.0 / source.fps if source.fps else 0.0
    result = StreamResult()
    reader = threading.Thread(
        target=_read, args=(source, transform, ring), name="xvit-stream-reader", daemon=True
    )
    started = time.monotonic()
    reader.start()
    # used: frames of predicted windows that a later window may share; pending: frames of
    # skipped windows not (yet) in a predicted window, dropped once no window can use them
    next_w, used, pending, last_warn, warned = 0, set(), set(), None, 0
    try:
        while True:
            wait = None if max_seconds is None else started + max_seconds - time.monotonic()
            if wait is not None and wait <= 0:
                result.reason = "max-seconds"
                break
            with ring.cond:
                if not ring.cond.wait_for(
                    lambda w0=next_w: ring.done or newest_complete(spec, ring.newest) >= w0, wait
                ):
                    continue
                w = newest_complete(spec, ring.newest)
                if w < next_w:  # the source ended and no window is left
                    result.reason = ring.error or source.end_reason or "end of stream"
                    result.failed = bool(ring.error) or source.failed
                    break
                indices = window_frames(spec, w)
                items = [ring.frames[i] for i in indices]
            if w > next_w:  # the model fell behind: skip to the newest window
                result.windows_skipped += w - next_w
                pending |= {k for s in range(next_w, w) for k in window_frames(spec, s)} - used
            record = _predict(model, items, device, topk, threshold, names, multi_label)
            latency = (time.monotonic() - items[-1][2]) * 1000.0
            record = {
                "type": "window",
                "window": w,
                "start_s": round(items[0][1], 6),
                "end_s": round(items[-1][1] + ring.frame_s, 6),
                "start_frame": indices[0],
                "end_frame": indices[-1] + 1,
                **record,
                "latency_ms": round(latency, 3),
            }
            result.windows += 1
            result.latencies_ms.append(latency)
            result.nonfinite += "error" in record
            emit(record)
            next_w = w + 1
            cut = next_w * spec.stride  # no later window holds a frame before this one
            used = {k for k in used.union(indices) if k >= cut}
            pending.difference_update(indices)
            gone = {k for k in pending if k < cut}
            result.frames_dropped += len(gone)
            pending -= gone
            if result.windows_skipped > warned and (
                last_warn is None or time.monotonic() - last_warn >= WARN_EVERY_S
            ):
                warn(_behind_message(result, last_warn is None))
                last_warn, warned = time.monotonic(), result.windows_skipped
            if max_windows is not None and result.windows >= max_windows:
                result.reason = "max-windows"
                break
    except KeyboardInterrupt:
        result.reason, result.interrupted = "interrupted", True
    finally:
        source.stop()
        reader.join(timeout=2.0)
        result.seconds = time.monotonic() - started
        result.frames_read = source.frames_read
        result.frames_dropped += len(pending)
    return result


def _behind_message(result: StreamResult, first: bool) -> str:
    med = float(np.median(result.latencies_ms))
    counts = (
        f"{result.frames_dropped} frames dropped in {result.windows_skipped} skipped windows "
        f"(of {result.windows + result.windows_skipped})"
    )
    if first:
        return (
            f"the model cannot keep up with the stream (median latency {med:.0f} ms): "
            f"skipping to the newest window each time; {counts}"
        )
    return f"still behind the stream: {counts} so far"


def _predict(
    model: nn.Module,
    items: list[tuple[torch.Tensor, float, float]],
    device: torch.device,
    topk: int,
    threshold: float | None,
    names: list[str],
    multi_label: bool,
) -> dict[str, Any]:
    """One window's top-k (softmax, or per-class sigmoid for multi-label models): classes
    below ``threshold`` are left out of the top-k of single-label models; multi-label models
    list every class at or above it (default 0.5) under ``labels``; the top-k is ``top``."""
    clip = torch.stack([x for x, _, _ in items], dim=1)[None].to(device)  # (1, 3, T, s, s)
    with torch.inference_mode():
        logits = _infer(model, clip).float().cpu()[0]
    if not torch.isfinite(logits).all():
        return {"error": "the model's logits are not finite (NaN or infinity)"}
    probs = logits.sigmoid() if multi_label else logits.softmax(-1)
    top = probs.topk(min(topk, probs.shape[-1]))

    def entry(c: int, p: float) -> dict[str, Any]:
        return {"class": names[c] if c < len(names) else str(c), "index": c, "prob": round(p, 6)}

    ranked = list(zip(top.indices.tolist(), top.values.tolist()))
    out: dict[str, Any] = {}
    if multi_label:
        cut = 0.5 if threshold is None else threshold
        order = probs.argsort(descending=True, stable=True).tolist()
        out["labels"] = [entry(c, float(probs[c])) for c in order if float(probs[c]) >= cut]
    elif threshold is not None:
        ranked = [(c, p) for c, p in ranked if p >= threshold]
    out["top"] = [entry(c, p) for c, p in ranked]
    return out


def warm_up(model: nn.Module, spec: WindowSpec, size: int, device: torch.device) -> None:
    """One forward pass on zeros, so that the first window's latency is not the allocator's."""
    model.to(device).eval()
    with torch.inference_mode():
        _infer(model, torch.zeros(1, 3, spec.num_frames, size, size, device=device))


def stream_transform(cfg: Any) -> EvalTransform:
    """The single centre view of ``xvit predict`` (``cfg``: the run's resolved config)."""
    d = cfg.data
    return EvalTransform(
        crop_size=d.img_size, resize=d.test_scale or d.img_size, num_crops=1, mean=d.mean, std=d.std
    )


def predict_stream(
    checkpoint: str | Path,
    source: str,
    *,
    realtime: bool = False,
    topk: int = 5,
    threshold: float | None = None,
    stride: int | None = None,
    sampling_rate: int | None = None,
    max_windows: int | None = None,
    max_seconds: float | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    timeout: float = 10.0,
    emit: Callable[[dict[str, Any]], None],
    warn: Callable[[str], None],
) -> StreamResult:
    """Load the model of ``checkpoint``, open ``source`` and predict its windows live.

    Windows hold the model's ``num_frames`` frames ``sampling_rate`` apart (default: the
    run's ``data.sampling_rate``) and start every ``stride`` frames (default: half a clip).
    Raises ``FileNotFoundError`` / ``ConfigError`` / ``ValueError`` for a bad checkpoint or
    setting and :class:`~xvit.data.errors.VideoDecodeError` for a source that cannot be
    opened, before any window; after that, problems end the run and are in the result.
    """
    model, cfg = load_run(checkpoint, overrides)
    device = resolve_device(cfg.train.device)
    rate = cfg.data.sampling_rate if sampling_rate is None else sampling_rate
    num_frames = int(model.config.num_frames)
    if isinstance(rate, int) and rate >= 1 and stride is None:
        stride = default_stride(num_frames, rate)
    spec = WindowSpec(num_frames, rate, stride)
    transform = stream_transform(cfg)
    warm_up(model, spec, cfg.data.img_size, device)
    live = open_stream(source, spec, realtime=realtime, timeout=timeout)
    return run_stream(
        model,
        live,
        spec,
        transform=transform,
        device=device,
        topk=topk,
        threshold=threshold,
        max_windows=max_windows,
        max_seconds=max_seconds,
        emit=emit,
        warn=warn,
    )
