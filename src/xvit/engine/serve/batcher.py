"""Dynamic batching: concurrent requests share model calls, run off the event loop.

Each request submits its clips (`(V, 3, T, h, w)`, V test views); one worker thread takes the
first waiting request, then gathers more until `max_batch` clips are collected or
`max_wait_ms` has passed since the first, runs the model once on all of them and hands every
request its own rows of logits. A request whose clips would overflow the batch waits for the
next one (a single request with more clips than `max_batch` runs alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["DynamicBatcher"]

logger = logging.getLogger("xvit.serve")


@dataclass
class _Job:
    clips: torch.Tensor
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


def _deliver(job: _Job, result: torch.Tensor | None, error: BaseException | None) -> None:
    def settle() -> None:
        if job.future.done():  # the request timed out or was cancelled meanwhile
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    with contextlib.suppress(RuntimeError):  # a closed event loop: nobody waits for this any more
        job.loop.call_soon_threadsafe(settle)


class DynamicBatcher:
    """`await run(clips)` -> logits `(V, C)` of that request's clips, computed in a shared batch.

    `forward(x)` maps `(N, 3, T, h, w)` to `(N, C)` logits; `on_batch(n)` is told each model
    call's number of clips; `pending()` counts the requests waiting for the model.
    """

    def __init__(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        max_batch: int = 8,
        max_wait_ms: float = 10.0,
        on_batch: Callable[[int], None] = lambda _n: None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.forward = forward
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.on_batch = on_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._held: _Job | None = None
        self._thread = threading.Thread(target=self._loop, name="xvit-serve-model", daemon=True)
        self._thread.start()

    def pending(self) -> int:
        return self._queue.qsize() + (self._held is not None)

    async def run(self, clips: torch.Tensor) -> torch.Tensor:
        loop = asyncio.get_running_loop()
        job = _Job(clips, loop.create_future(), loop)
        self._queue.put(job)
        return await job.future

    def close(self) -> None:
        """Finish the requests already submitted, then stop the worker thread."""
        self._queue.put(None)
        self._thread.join()

    def _gather(self) -> tuple[list[_Job], bool]:
        """The next batch of jobs, and whether `close` was called."""
        first = self._held or self._queue.get()
        self._held = None
        if first is None:
            return [], True
        jobs, size = [first], first.clips.shape[0]
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            left = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # stop after this batch
                break
            if size + job.clips.shape[0] > self.max_batch:
                self._held = job
                break
            jobs.append(job)
            size += job.clips.shape[0]
        return jobs, False

    def _loop(self) -> None:
        while True:
            jobs, stop = self._gather()
            if stop:
                return
            jobs = [j for j in jobs if not j.future.done()]  # timed out while waiting
            if not jobs:
                continue
            try:
                x = torch.cat([j.clips for j in jobs])
                self.on_batch(int(x.shape[0]))
                logits = self.forward(x)
            except Exception as e:  # the model failed: every request of the batch gets the error
                logger.exception("model call failed")
                for j in jobs:
                    _deliver(j, None, e)
                continue
            rows = 0
            for j in jobs:
                n = j.clips.shape[0]
                _deliver(j, logits[rows : rows + n], None)
                rows += n
