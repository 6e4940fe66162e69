"""`xvit serve`'s model side: the loaded run, its decode pool, its batcher and its answers.

The video-level result is `xvit predict`'s: the run's eval clip(s) of the whole video
(decoded in worker processes, `engine.serve.decode`), scored in batches shared with other
requests (`engine.serve.batcher`), the views fused as `xvit eval` fuses them. The timeline is
`xvit predict --timeline`'s (`engine.infer.timeline.compute_timeline`: one sequential decode, the
windows of the request scored `max_batch` at a time, segment features reused), computed in a
thread of its own next to the batcher.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xvit.data.cores import default_workers
from xvit.engine.infer.timeline import TimelineOptions, compute_timeline
from xvit.engine.run.distributed import resolve_device
from xvit.engine.run.metrics import fuse_views, scores_to_probs
from xvit.engine.run.saved import load_run
from xvit.engine.run.schema import parse_views
from xvit.engine.serve.batcher import DynamicBatcher
from xvit.engine.serve.decode import DecodeError, DecodePool
from xvit.models.hub import model_directory
from xvit.models.weights import looks_like_weights_name

__all__ = ["ModelService", "ServeOptions", "check_serve_options", "default_decode_workers"]


def default_decode_workers() -> int:
    """Decoding processes when `--decode-workers` is not given: as many as a data loader's
    workers (one core of this process's share left for the model, at most 4), at least one."""
    return max(1, default_workers())


@dataclass
class ServeOptions:
    """The limits and knobs of `xvit serve` (see `xvit serve --help`)."""

    max_batch: int = 8
    max_wait_ms: float = 10.0
    decode_workers: int = field(default_factory=default_decode_workers)
    max_queue: int = 64
    timeout_s: float = 60.0
    max_upload_mb: float = 100.0
    max_topk: int = 100
    allow_dir: str | None = None
    cors_origins: tuple[str, ...] = ()


def check_serve_options(o: ServeOptions) -> None:
    """Raise ``ValueError`` naming the first option out of range."""
    for flag, value in (
        ("--max-batch", o.max_batch),
        ("--decode-workers", o.decode_workers),
        ("--max-queue", o.max_queue),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{flag} must be an integer >= 1, got {value!r}")
    for flag, value in (("--max-wait-ms", o.max_wait_ms),):
        if not value >= 0:
            raise ValueError(f"{flag} must be >= 0, got {value!r}")
    for flag, value in (("--timeout-s", o.timeout_s), ("--max-upload-mb", o.max_upload_mb)):
        if not value > 0:
            raise ValueError(f"{flag} must be > 0, got {value!r}")
    if o.allow_dir is not None and not Path(o.allow_dir).is_dir():
        raise ValueError(f"--allow-dir {o.allow_dir}: not a directory")


class ModelService:
    """One loaded model answering predictions; `close()` finishes the work already started."""

    def __init__(
        self,
        checkpoint: str | Path,
        options: ServeOptions,
        overrides: list[str] | tuple[str, ...] = (),
        on_batch: Any = None,
    ) -> None:
        check_serve_options(options)
        self.options = options
        self.checkpoint = str(checkpoint)
        if looks_like_weights_name(self.checkpoint):  # a released model's name or hf-hub:ORG/NAME
            checkpoint = model_directory(self.checkpoint)
        self.model, self.cfg = load_run(checkpoint, overrides)
        self.device = resolve_device(self.cfg.train.device)
        self.model.to(self.device).eval()
        mc = self.model.config
        self.multi_label = bool(getattr(mc, "multi_label", False))
        self.num_classes = int(mc.num_classes)
        self.class_names = [str(c) for c in (mc.class_names or [])]
        self.name = str(getattr(mc, "name", "") or Path(self.checkpoint).name)
        parse_views(self.cfg.eval.views)  # a bad eval.views fails at start, not per request
        self.on_batch = on_batch or (lambda _n: None)
        self.decoder = DecodePool(self.cfg, self.num_classes, options.decode_workers)
        self.batcher = DynamicBatcher(self._forward, options.max_batch, options.max_wait_ms, self._batch)
        self._timeline_pool = ThreadPoolExecutor(1, thread_name_prefix="xvit-serve-timeline")
        self._closed = False

    def _batch(self, n: int) -> None:
        self.on_batch(n)

    @torch.no_grad()
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.device)).float().cpu()

    def warm_up(self) -> None:
        self.decoder.warm_up()

    def info(self) -> dict[str, Any]:
        """What `GET /v1/model` answers."""
        mc, d, e = self.model.config, self.cfg.data, self.cfg.eval
        t = int(mc.num_frames)
        span = t * int(d.sampling_rate)
        return {
            "name": self.name,
            "checkpoint": self.checkpoint,
            "classes": self.class_names or [str(c) for c in range(self.num_classes)],
            "num_classes": self.num_classes,
            "multi_label": self.multi_label,
            "frames": t,
            "input_size": [3, t, int(mc.img_size), int(mc.img_size)],
            "preprocessing": {
                "sampling": d.sampling,
                "sampling_rate": int(d.sampling_rate),
                "resize_short_side": int(d.test_scale or d.img_size),
                "center_crop": int(d.img_size),
                "mean": [float(v) for v in mc.mean],
                "std": [float(v) for v in mc.std],
                "views": e.views,
                "fuse": e.fuse,
            },
            "timeline": {
                "clip_frames": t,
                "sampling_rate": int(d.sampling_rate),
                "stride": max(span // 2, 1),
            },
            "device": str(self.device),
            "limits": {
                "max_upload_mb": self.options.max_upload_mb,
                "max_batch": self.options.max_batch,
                "max_wait_ms": self.options.max_wait_ms,
                "max_queue": self.options.max_queue,
                "timeout_s": self.options.timeout_s,
                "max_topk": self.options.max_topk,
            },
        }

    def _entries(self, probs: torch.Tensor, topk: int) -> list[dict[str, Any]]:
        top = probs.topk(min(topk, probs.numel()))
        return [
            {"label": self._label(int(c)), "index": int(c), "prob": round(float(p), 6)}
            for p, c in zip(top.values, top.indices)
        ]

    def _label(self, c: int) -> str:
        return self.class_names[c] if c < len(self.class_names) else str(c)

    async def predict(self, path: str, topk: int, timeline: bool) -> dict[str, Any]:
        """The answer of `POST /v1/predict` for a readable file `path` (without the timing
        fields); raises `DecodeError` for a file the decoder cannot read and
        `FloatingPointError` when the model output is not finite."""
        clip = await self.decoder.decode(path)
        views = torch.from_numpy(clip.views)
        if timeline:  # the timeline decodes the file again, sequentially, while the clip waits for a batch
            tl_task = asyncio.ensure_future(self._timeline(path, topk))
        try:
            logits = await self.batcher.run(views)
        except BaseException:
            if timeline:
                tl_task.cancel()
            raise
        if not torch.isfinite(logits).all():
            if timeline:
                tl_task.cancel()
            raise FloatingPointError("the model output is not finite (NaN or infinity)")
        fused = fuse_views(logits[None], self.cfg.eval.fuse, multi_label=self.multi_label)
        probs = scores_to_probs(fused, self.cfg.eval.fuse, multi_label=self.multi_label)[0]
        out: dict[str, Any] = {
            "video": {"top": self._entries(probs, topk)},
            "duration_s": round(clip.duration_s, 6),
            "frames": clip.num_frames,
            "model": self.name,
        }
        if timeline:
            out["timeline"] = await tl_task
        return out

    async def _timeline(self, path: str, topk: int) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        options = TimelineOptions(topk=topk, batch_size=self.options.max_batch)
        tl = await loop.run_in_executor(self._timeline_pool, self._compute_timeline, path, options)
        if not tl.complete:
            raise DecodeError(tl.error.splitlines()[0] if tl.error else "the video broke part-way")
        windows = tl.to_dict()["windows"]
        for w in windows:
            w["top"] = [{"label": x["class"], "index": x["index"], "prob": x["prob"]} for x in w["top"]]
        return windows

    def _compute_timeline(self, path: str, options: TimelineOptions) -> Any:
        from xvit.data.errors import VideoDecodeError

        try:
            with torch.no_grad():
                return compute_timeline(self.model, self.cfg, path, options, self.device)
        except VideoDecodeError as e:
            raise DecodeError(str(e).splitlines()[0]) from None

    def close(self) -> None:
        """Finish the requests in progress, then stop the batcher and the workers (once)."""
        if self._closed:
            return
        self._closed = True
        self._timeline_pool.shutdown(wait=True)
        self.batcher.close()
        self.decoder.close()
