"""Watching the training loss for NaN and infinity without a device sync at every step.

Each micro-batch's loss is tested on the device (``torch.isfinite``: no host sync, the GPU
keeps its queue) and the first non-finite one is recorded there: which micro-batch of the run
it was and its value. :meth:`LossWatch.first_bad` reads that record (one sync, every rank
together) and is called by the trainer at each log step, before each checkpoint is written and
at each epoch end before validation. So a run whose loss became non-finite stops within
``train.log_every`` steps, and no checkpoint, validation or log line is ever made from the
non-finite numbers; the error names where the loss went wrong and the last good checkpoint.
"""

from __future__ import annotations

import torch

from xvit.engine.run.distributed import all_gather_object

__all__ = ["LossWatch", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """The loss (or the weights) became NaN or infinite; the run stopped without writing them."""


class LossWatch:
    """The first non-finite loss of a run, kept on the device."""

    def __init__(self, device: torch.device) -> None:
        self.index = torch.full((), -1, dtype=torch.long, device=device)
        self.value = torch.zeros((), dtype=torch.float32, device=device)

    def observe(self, loss: torch.Tensor, index: int) -> None:
        """Record ``loss`` (of micro-batch ``index`` of the run) when it is the first
        non-finite one; nothing is read back from the device."""
        loss = loss.detach().float()
        first = ~torch.isfinite(loss) & (self.index < 0)
        self.index.masked_fill_(first, index)
        self.value = torch.where(first, loss, self.value)

    def first_bad(self) -> tuple[int, float] | None:
        """``(micro-batch index, loss)`` of the earliest non-finite loss of any rank, or None.
        A collective: every rank must call it at the same point."""
        index, value = torch.stack((self.index.double(), self.value.double())).tolist()
        found = [(int(i), v) for i, v in all_gather_object((index, value)) if i >= 0]
        return min(found) if found else None
