"""The synthetic temporal dataset: real mp4 files, caching, twins, and the per-frame leak check."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch

from xvit.benchmarks.leak_check import leak_check
from xvit.cli.main import main as xvit_main
from xvit.data import read_frames
from xvit.data.annotations import read_annotations
from xvit.data.dataset import VideoDataset
from xvit.data.synth import (
    CLASS_NAMES,
    SynthConfig,
    ensure_synth,
    render_split,
    render_video,
    twin_of,
)
from xvit.data.transforms import EvalTransform


def test_twin_is_exact_time_reversal():
    forward = render_video(2, np.random.default_rng(7))
    backward = render_video(3, np.random.default_rng(7))
    assert np.array_equal(backward, forward[::-1])
    assert twin_of(2) == 3 and twin_of(3) == 2
    assert forward.shape == (8, 32, 32, 3) and forward.dtype == np.uint8
    # Something moves in every class: consecutive frames differ.
    for label in range(len(CLASS_NAMES)):
        v = render_video(label, np.random.default_rng(label)).astype(int)
        assert (np.abs(np.diff(v, axis=0)).sum(axis=(1, 2, 3)) > 0).mean() > 0.8, CLASS_NAMES[label]


def test_generate_cache_and_regenerate(tmp_path, capsys):
    root = tmp_path / "synth"
    assert xvit_main(["data", "synth", str(root), "--num-train", "2", "--num-val", "1", "--seed", "3"]) == 0
    assert "16 training and 8 validation videos" in capsys.readouterr().out
    marker = json.loads((root / "synth.json").read_text())
    assert marker["seed"] == 3 and marker["num_train"] == 2

    ann = read_annotations(root / "train.txt")
    assert ann.class_names == list(CLASS_NAMES) and len(ann) == 16
    assert sorted(s.label for s in ann.samples) == sorted(list(range(8)) * 2)
    first = ann.samples[0]
    frames = read_frames(first.path, range(8))
    assert frames.shape == (8, 3, 32, 32)
    # The encoded video is close to the rendered one (H.264 at crf 18 smooths the
    # renderer's pixel noise of std 8).
    rendered = render_video(first.label, np.random.default_rng([3, 0, 0]))
    err = (frames.permute(0, 2, 3, 1).float() - torch.from_numpy(rendered).float()).abs().mean()
    assert err < 10.0
    # Every frame is coded on its own (a keyframe), so no frame carries its neighbours.
    with av.open(str(first.path)) as container:
        assert [f.key_frame for f in container.decode(video=0)] == [True] * 8

    # Same parameters: reused (files untouched); another seed: regenerated.
    mtime = (root / "train.txt").stat().st_mtime_ns
    info = ensure_synth(root, seed=3, config=SynthConfig(num_train=2, num_val=1))
    assert (root / "train.txt").stat().st_mtime_ns == mtime and info.train_list == root / "train.txt"
    ensure_synth(root, seed=4, config=SynthConfig(num_train=2, num_val=1))
    assert json.loads((root / "synth.json").read_text())["seed"] == 4
    again = read_frames(read_annotations(root / "train.txt").samples[0].path, range(8))
    assert not torch.equal(again, frames)

    # The lists feed VideoDataset directly.
    ds = VideoDataset(
        read_annotations(root / "val.txt").samples,
        num_frames=8,
        sampler="uniform",
        mode="eval",
        transform=EvalTransform(32),
    )
    assert ds[0]["video"].shape == (3, 8, 32, 32)


def test_generation_is_deterministic(tmp_path):
    a = ensure_synth(tmp_path / "a", seed=1, config=SynthConfig(num_train=1, num_val=1))
    b = ensure_synth(tmp_path / "b", seed=1, config=SynthConfig(num_train=1, num_val=1))
    for line_a, line_b in zip(a.val_list.read_text().split(), b.val_list.read_text().split()):
        assert line_a == line_b
    path = a.val_list.read_text().split()[0]
    assert torch.equal(read_frames(a.root / path, range(8)), read_frames(b.root / path, range(8)))


@pytest.fixture(scope="module")
def rendered():
    return render_split(64, seed=0, size=32), render_split(32, seed=1, size=32)


def test_no_single_frame_tells_twins_apart(rendered):
    """A per-frame classifier that knows the time index stays at chance inside twin pairs,
    while the same model fed frame differences does well: the classes need frame order."""
    train, test = rendered
    result = leak_check(train, test, steps=300)
    assert abs(result["per_frame"] - 0.5) < 0.1, result  # 256 held-out videos: std 0.031
    assert result["temporal"] > 0.85, result


def test_leak_check_detects_a_leaky_generator():
    """Control: with phases starting at 0 (growing starts small, rotation at angle 0, ...)
    the same per-frame classifier reads the class off single frames."""
    train = render_split(64, seed=0, size=32, stationary=False)
    test = render_split(32, seed=1, size=32, stationary=False)
    result = leak_check(train, test, steps=300, models=("per_frame",))
    assert result["per_frame"] > 0.8, result
