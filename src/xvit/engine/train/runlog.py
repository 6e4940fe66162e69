"""What a training run tells: console lines, ``log.jsonl`` (one strict-JSON object per event)
and TensorBoard scalars, written by rank 0 only (:class:`RunLogger`); the progress bar, the
elapsed time and the ETA, and the line printed after each epoch (:class:`Progress`)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from xvit.engine.run.rundir import strict_json

__all__ = ["Progress", "RunLogger", "fmt_time"]


class RunLogger:
    """Console lines, ``log.jsonl`` and TensorBoard scalars, written by rank 0 only."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool, echo: bool = True) -> None:
        self.enabled = enabled
        self.echo = echo
        self.jsonl = out / "log.jsonl"
        self.out = out
        self.tb = None  # opened with the first event: nothing is written before the run starts
        self.tensorboard = enabled and tensorboard

    def print(self, msg: str) -> None:
        if self.enabled and self.echo:
            print(msg, flush=True)

    def event(self, kind: str, step: int, **values: Any) -> None:
        if not self.enabled:
            return
        row = {"event": kind, "step": step, "time": round(time.time(), 3), **values}
        with open(self.jsonl, "a") as f:  # strict JSON: NaN / inf become null
            f.write(json.dumps(strict_json(row)[0], allow_nan=False) + "\n")
        if self.tensorboard and self.tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(self.out / "tb"))
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def fmt_time(seconds: float) -> str:
    """``1h02m03s`` / ``2m03s``."""
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    """Time and progress of the steps this process runs, from its start (or resume) on."""

    def __init__(
        self, log: RunLogger, epochs: int, steps_per_epoch: int, total_steps: int, start_step: int
    ) -> None:
        self.log = log
        self.epochs, self.steps_per_epoch, self.total_steps = epochs, steps_per_epoch, total_steps
        self.start_step = start_step
        self.start_time = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start_time

    def eta(self, step: int) -> float:
        """Seconds left at optimiser step ``step`` (NaN before the first step)."""
        done = step - self.start_step
        if done <= 0:
            return float("nan")
        return self.elapsed() / done * (self.total_steps - step)

    def bar(self, epoch: int, done: int):
        """A tqdm bar over the steps of ``epoch`` (0-based), ``done`` of them already done;
        shown by rank 0 on a terminal only."""
        from tqdm.auto import tqdm

        return tqdm(
            total=self.steps_per_epoch,
            initial=done,
            desc=f"epoch {epoch + 1}/{self.epochs}",
            unit="step",
            disable=not (self.log.enabled and sys.stderr.isatty()),
            leave=False,
        )

    def epoch_line(
        self, epoch: int, step: int, stats: dict[str, float], val: dict[str, Any] | None, multi_label: bool
    ) -> None:
        """Print the figures of epoch ``epoch`` (0-based), the time so far and the ETA; log the
        ``epoch`` event."""
        parts = [f"epoch {epoch + 1}/{self.epochs}", f"loss {stats['train_loss']:.4f}"]
        if math.isfinite(stats["train_top1"]):
            parts.append(f"train top1 {stats['train_top1']:.1f}%")
        if val and multi_label:
            parts.append(f"val mAP {val['mAP']:.2f}% micro mAP {val['micro_mAP']:.2f}%")
        elif val:
            parts.append(f"val top1 {val['top1']:.2f}% top5 {val['top5']:.2f}%")
        parts.append(f"elapsed {fmt_time(self.elapsed())}")
        eta = self.eta(step)
        if math.isfinite(eta) and step < self.total_steps:
            parts.append(f"ETA {fmt_time(eta)}")
        self.log.print("  ".join(parts))
        self.log.event("epoch", step, epoch=epoch + 1, **stats)
