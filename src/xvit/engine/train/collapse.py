"""Seeing a training run collapse while it happens.

A collapsed classifier has stopped looking at its input: its loss sits at chance (``ln K``
for K classes), it predicts one class for every video, and the outputs of different videos
converge to one vector (the features of every video alike). Runs that collapse at the peak
learning rate may recover as the rate falls, or may spend the rest of the run at chance;
either way the user should hear of it at the epoch it happens, with the figures and what
to try. :func:`collapse_signs` reads an epoch's training loss and the validation logits;
:class:`CollapseWatch` counts collapsed epochs in a row and says when to stop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["CollapseWatch", "TrainingCollapsedError", "collapse_signs"]

# The thresholds: the training loss within 3% of ln K; 90% of the validation videos on one
# class (while no class holds half of the labels); the class probabilities of different
# videos within 0.02 of their mean (total-variation distance, 0 = the same output for all).
LOSS_AT_CHANCE = 0.97
ONE_CLASS_SHARE = 0.9
SAME_OUTPUT_DISTANCE = 0.02


class TrainingCollapsedError(RuntimeError):
    """Training stopped after ``train.collapse_patience`` collapsed epochs in a row."""


def collapse_signs(
    train_loss: float,
    num_classes: int,
    logits: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    class_names: list[str] | None = None,
) -> list[str]:
    """The signs of a collapse in one epoch, as phrases; a collapse is two or more of them.

    ``logits`` (N, K) and ``labels`` (N,): the validation videos' (fused) logits and labels.
    """
    if num_classes < 2:
        return []
    signs = []
    chance = math.log(num_classes)
    if math.isfinite(train_loss) and train_loss >= LOSS_AT_CHANCE * chance:
        where = "at" if train_loss <= chance / LOSS_AT_CHANCE else "above"  # within 3% of ln K, or worse
        signs.append(f"training loss {train_loss:.3f} {where} chance (ln {num_classes} = {chance:.3f})")
    if logits is not None and len(logits) >= 2:
        logits = logits.float()
        pred = logits.argmax(-1)
        counts = torch.bincount(pred, minlength=num_classes)
        top = int(counts.argmax())
        share = float(counts[top]) / len(pred)
        label_share = (
            float(torch.bincount(labels.long()).max()) / len(labels)
            if labels is not None and len(labels)
            else 0.0
        )
        if share >= ONE_CLASS_SHARE and label_share < 0.5:
            name = class_names[top] if class_names and top < len(class_names) else str(top)
            signs.append(f"{100 * share:.0f}% of the validation videos predicted as {name!r}")
        probs = logits.softmax(-1)
        distance = float(0.5 * (probs - probs.mean(0, keepdim=True)).abs().sum(-1).mean())
        if distance < SAME_OUTPUT_DISTANCE:
            signs.append(
                f"the outputs of different videos are the same (mean distance {distance:.4f} "
                f"between their class probabilities and their mean)"
            )
    return signs


@dataclass
class CollapseWatch:
    """Judges each epoch's signs (:func:`collapse_signs`) against the run so far.

    Every run starts at chance with the same output for every video, so two or more signs
    count only where they mean something: **collapsed** when the run had learned before (an
    earlier epoch's training loss below 90% of chance or its validation top-1 above 1.5x
    chance), **not learning** once the warm-up is over and a quarter of the run (at least two
    epochs) is done. ``patience`` such epochs in a row (0: never) stop the run.
    """

    num_classes: int
    epochs: int
    warmup_epochs: float = 0.0
    patience: int = 3
    in_a_row: int = 0
    learned: bool = False

    def observe(self, epoch: int, signs: list[str], train_loss: float, top1: float | None) -> str | None:
        """Record epoch ``epoch`` (1-based); "collapsed", "not learning" or None."""
        verdict = None
        if len(signs) >= 2:
            if self.learned:
                verdict = "collapsed"
            elif epoch > self.warmup_epochs and epoch >= max(2, math.ceil(self.epochs / 4)):
                verdict = "not learning"
        self.in_a_row = self.in_a_row + 1 if verdict else 0
        chance = math.log(self.num_classes) if self.num_classes > 1 else 0.0
        if (math.isfinite(train_loss) and train_loss < 0.9 * chance) or (
            top1 is not None and top1 > 150.0 / max(self.num_classes, 1)
        ):
            self.learned = True
        return verdict

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.in_a_row >= self.patience


def advice(lr: float, warmup_epochs: float, head: str) -> str:
    """What to try after a collapse."""
    tips = [f"a lower --lr (now {lr:.3g})", f"a longer optim.warmup_epochs (now {warmup_epochs:g})"]
    if head != "avg":
        tips.append("--head avg")
    return "try " + ", ".join(tips[:-1]) + " or " + tips[-1]
