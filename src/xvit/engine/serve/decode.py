"""`xvit serve`: decoding uploads into the model's clip, in a pool of worker processes.

Each request's video-level clip is what `xvit predict` feeds the model: the run's eval
dataset (its sampler over the whole video, the eval transform, the run's test views) built
for that one file. Decoding runs in worker processes started with forkserver (spawn where
there is none), as the DataLoader workers of `xvit.data.worker_context`; a worker that dies
on a file (a crash inside the decoder) is replaced and the request fails, the server goes on.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from xvit.data.dataset import worker_context
from xvit.engine.run.schema import Config

__all__ = ["DecodeError", "DecodePool", "DecodedClip", "decode_clip"]


class DecodeError(Exception):
    """The upload is not a video the decoder can read; the message is the decoder's line."""


@dataclass
class DecodedClip:
    """The model's input for one video: `views` float `(V, 3, T, h, w)` and what the video is."""

    views: np.ndarray
    num_frames: int
    duration_s: float
    fps: float


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _warm() -> int:
    return 0


def decode_clip(cfg: Config, path: str, num_classes: int) -> DecodedClip | str:
    """The clip(s) `xvit predict` scores for `path`, or the decoder's one-line error."""
    from xvit.data.annotations import Sample
    from xvit.data.errors import VideoDecodeError
    from xvit.data.video import VideoReader
    from xvit.engine.run.data import build_eval_dataset, reader_limits
    from xvit.engine.run.schema import parse_views

    multi_label = bool(cfg.data.multi_label)
    try:
        with VideoReader(path, backend="pyav", **reader_limits(cfg)) as r:
            num_frames, duration, fps = int(r.num_frames), float(r.duration), float(r.fps)
    except (VideoDecodeError, OSError, ValueError) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    views = parse_views(cfg.eval.views)
    sample = Sample(path=path, label=() if multi_label else 0)
    dataset = build_eval_dataset(cfg, [sample], views, num_classes if multi_label else None)
    item = dataset[0]
    if item.get("video") is None:
        return str(item.get("error") or "the video cannot be decoded").splitlines()[0]
    video = item["video"]
    if video.ndim == 4:  # one view: (3, T, h, w)
        video = video.unsqueeze(0)
    return DecodedClip(video.numpy(), num_frames, duration, fps)


class DecodePool:
    """`await decode(path)` -> `DecodedClip`; raises `DecodeError` with the decoder's message."""

    def __init__(self, cfg: Config, num_classes: int, workers: int) -> None:
        self.cfg = cfg
        self.num_classes = num_classes
        self.workers = max(1, int(workers))
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=worker_context(), initializer=_init_worker)

    def warm_up(self) -> None:
        """Start every worker now rather than on the first requests."""
        for f in [self._pool.submit(_warm) for _ in range(self.workers)]:
            f.result()

    async def decode(self, path: str) -> DecodedClip:
        pool = self._pool
        try:
            out: Any = await asyncio.wrap_future(pool.submit(decode_clip, self.cfg, path, self.num_classes))
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = self._new_pool()
            pool.shutdown(wait=False, cancel_futures=True)
            raise DecodeError("the decoder crashed on this file") from None
        if isinstance(out, str):
            raise DecodeError(out)
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
