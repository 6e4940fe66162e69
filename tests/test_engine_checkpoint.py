"""Atomic checkpoint files and RNG state capture."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from xvit.engine.train import checkpoint as ckpt
from xvit.engine.train.sampling import ResumableSampler, SeededDataset, sample_seed


def _draw():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_rng_round_trip_through_a_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    _draw()
    state = {"format": "xvit-train-checkpoint", "rng": [ckpt.capture_rng()]}
    expected = _draw()
    ckpt.atomic_save(state, ckpt.checkpoint_path(tmp_path, 5))
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    loaded = ckpt.load_checkpoint(tmp_path / "step_00000005.pt")  # weights_only=True inside
    ckpt.restore_rng(loaded["rng"][0])
    assert _draw() == expected


def test_atomic_save_list_and_prune(tmp_path):
    for step in (3, 12, 7):
        ckpt.atomic_save(
            {"format": "xvit-train-checkpoint", "step": step}, ckpt.checkpoint_path(tmp_path, step)
        )
    (tmp_path / ".step_00000099.pt.tmp123").write_bytes(b"partial")  # a crash mid-write
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "step_00000003.pt",
        "step_00000007.pt",
        "step_00000012.pt",
    ]
    ckpt.prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000007.pt", "step_00000012.pt"]
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir() if p.name.startswith("step"))


def test_prune_keeps_the_checkpoint_just_written_and_ignores_later_steps(tmp_path):
    for step in (2, 4, 6):
        ckpt.atomic_save({"format": "xvit-train-checkpoint"}, ckpt.checkpoint_path(tmp_path, step))
    (tmp_path / "step_00000100.pt").write_bytes(b"foreign or unreadable")
    ckpt.prune_checkpoints(tmp_path, keep=1, newest=tmp_path / "step_00000006.pt")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000006.pt", "step_00000100.pt"]
    moved = ckpt.quarantine(tmp_path / "step_00000100.pt")
    assert moved.name == "step_00000100.pt.unreadable" and moved.read_bytes() == b"foreign or unreadable"
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000006.pt"]


def test_failed_save_leaves_the_old_file_and_no_temporary(tmp_path):
    path = ckpt.checkpoint_path(tmp_path, 1)
    ckpt.atomic_save({"format": "xvit-train-checkpoint", "v": torch.ones(3)}, path)
    good = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - a lambda cannot be pickled
        ckpt.atomic_save({"format": "xvit-train-checkpoint", "f": lambda: 0}, path)
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_load_rejects_foreign_and_truncated_files(tmp_path):
    torch.save({"model": {}}, tmp_path / "step_00000001.pt")
    with pytest.raises(RuntimeError, match="not an xvit training checkpoint"):
        ckpt.load_checkpoint(tmp_path / "step_00000001.pt")
    ckpt.atomic_save(
        {"format": "xvit-train-checkpoint", "w": torch.ones(1000)}, tmp_path / "step_00000002.pt"
    )
    data = (tmp_path / "step_00000002.pt").read_bytes()
    (tmp_path / "step_00000002.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match="step_00000002.pt: truncated") as err:
        ckpt.load_checkpoint(tmp_path / "step_00000002.pt")
    assert "\n" not in str(err.value)  # one line


def test_sampler_order_depends_only_on_seed_and_epoch():
    data = list(range(10))
    a = ResumableSampler(data, num_replicas=1, rank=0, seed=4)
    a.set_position(epoch=2, start=0)
    full = list(a)
    b = ResumableSampler(data, num_replicas=1, rank=0, seed=4)
    b.set_position(epoch=2, start=6)
    assert list(b) == full[6:] and len(b) == 4
    a.set_position(epoch=3, start=0)
    assert [i for i, _ in a] != [i for i, _ in full]
    assert sorted(i for i, _ in full) == data
    # two ranks: disjoint shards of the same permutation covering everything
    r0 = ResumableSampler(data, num_replicas=2, rank=0, seed=4)
    r1 = ResumableSampler(data, num_replicas=2, rank=1, seed=4)
    assert sorted([i for i, _ in r0] + [i for i, _ in r1]) == data


def test_seeded_dataset_draws_are_a_function_of_the_seed_only():
    class Rand:
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return torch.rand(2), np.random.rand(), random.random()

    ds = SeededDataset(Rand())
    torch.manual_seed(0)
    before = torch.get_rng_state()
    x = ds[(0, sample_seed(1, 2, 0, 3))]
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is untouched
    torch.rand(5)
    y = ds[(0, sample_seed(1, 2, 0, 3))]
    z = ds[(0, sample_seed(1, 2, 0, 4))]
    assert torch.equal(x[0], y[0]) and x[1:] == y[1:]
    assert not torch.equal(x[0], z[0])
