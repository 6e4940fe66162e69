"""The order and the randomness of the training clips, as functions of (seed, epoch, rank,
position): resumable mid-epoch, the same whatever worker decodes a clip.

The order of the training clips is a function of (seed, epoch) only
(:class:`ResumableSampler`), and every clip's augmentation is drawn from RNGs seeded with a
function of (seed, epoch, rank, position in the epoch) (:class:`SeededDataset`). A resumed
run therefore skips the batches already done and continues with exactly the numbers the
uninterrupted run would have seen.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

__all__ = ["ResumableSampler", "SeededDataset", "sample_seed", "seed_everything"]

_MASK64 = (1 << 64) - 1


def sample_seed(seed: int, epoch: int, rank: int, position: int) -> int:
    """A 63-bit seed that is a fixed function of its arguments (splitmix64 mixing)."""
    x = 0
    for v in (seed, epoch, rank, position):
        x = (x ^ (v & _MASK64)) * 0x9E3779B97F4A7C15 & _MASK64
        x ^= x >> 30
        x = x * 0xBF58476D1CE4E5B9 & _MASK64
        x ^= x >> 27
        x = x * 0x94D049BB133111EB & _MASK64
        x ^= x >> 31
    return x >> 1


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` order (a function of seed and epoch), resumable mid-epoch.

    Yields ``(dataset_index, sample_seed)`` pairs for this rank, starting ``start`` samples
    into the epoch. Works with one process too (``num_replicas=1``).
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, shuffle: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        """Iterate epoch ``epoch`` from its ``start``-th sample (of this rank)."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self):
        indices = list(super().__iter__())
        for pos in range(self.start, len(indices)):
            yield indices[pos], sample_seed(self.seed, self.epoch, self.rank, pos)

    def __len__(self) -> int:
        return self.num_samples - self.start


class SeededDataset(Dataset):
    """Wraps a dataset so that item ``(index, seed)`` is drawn with torch, numpy and Python
    ``random`` seeded from ``seed``; the caller's RNG states are restored afterwards."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % (1 << 32))
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python ``random``."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
