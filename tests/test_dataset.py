"""VideoDataset on real encoded files: sampling, multi-view decoding, failures, collate, loaders."""

from __future__ import annotations

import itertools
import logging

import pytest
import torch
from _video_fixtures import write_frame_folder, write_test_video

import xvit.data.dataset as dataset_module
from xvit.data import read_frames
from xvit.data.annotations import Sample
from xvit.data.dataset import VideoDataset, build_loader, collate
from xvit.data.sampling import DenseSampler, UniformSampler
from xvit.data.transforms import EvalTransform, TrainTransform


def frame_numbers(frames: torch.Tensor) -> list[int]:
    """Read the binary frame code that the fixtures paint on each ``(3, H, W)`` frame."""
    h, w = frames.shape[-2:]
    block = w // 8
    out = []
    for f in frames:
        top = f[:, : h // 3].float().mean(0)
        out.append(sum(1 << b for b in range(8) if top[:, b * block + 2 : (b + 1) * block - 2].mean() > 128))
    return out


def identity(clip, generator=None):
    return clip


def eval_identity(clip, generator=None):
    return clip.permute(1, 0, 2, 3)[None]  # (1, 3, T, H, W)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    good = write_test_video(root / "a.mp4", "mp4", num_frames=40)
    short = write_test_video(root / "short.mp4", "mp4", num_frames=5)
    zero = root / "zero.mp4"
    zero.write_bytes(b"")
    garbage = root / "garbage.mp4"
    garbage.write_bytes(bytes(range(256)) * 40)
    truncated = root / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    frames = write_frame_folder(root / "P01" / "rgb_frames" / "P01_01", 30, template="frame_{:010d}.jpg")
    gap = write_frame_folder(root / "gap", 12)
    (gap / "img_00007.jpg").unlink()  # inside every 8-frame window
    return {
        "good": good,
        "short": short,
        "zero": zero,
        "garbage": garbage,
        "truncated": truncated,
        "missing": root / "missing.mp4",
        "frames": frames,
        "gap": gap,
    }


def test_training_clip_follows_dense_sampler(videos):
    ds = VideoDataset([Sample(str(videos["good"]), 4)], sampler=DenseSampler(8, 3), transform=identity)
    torch.manual_seed(0)
    for _ in range(5):
        item = ds[0]
        nums = frame_numbers(item["video"])
        assert item["label"] == 4 and item["index"] == 0 and item["replaced"] == 0
        assert [b - a for a, b in itertools.pairwise(nums)] == [3] * 7 and 0 <= nums[0] <= 40 - 22


def test_short_video_loops_and_segment_range(videos):
    ds = VideoDataset(
        [Sample(str(videos["short"]), 0)],
        sampler=DenseSampler(8, 1, pad="loop"),
        mode="eval",
        transform=eval_identity,
    )
    assert frame_numbers(ds[0]["video"].transpose(0, 1)) == [0, 1, 2, 3, 4, 0, 1, 2]
    # A segment [10, 26) of the longer video, uniform sampling: centres of 4 segments of 4.
    seg = Sample(str(videos["good"]), 1, start_frame=10, end_frame=26)
    ds = VideoDataset([seg], sampler=UniformSampler(4), mode="eval", transform=eval_identity)
    assert frame_numbers(ds[0]["video"].transpose(0, 1)) == [12, 16, 20, 24]


def test_epic_style_frame_folder_segment(videos):
    # EPIC start_frame=5, stop_frame=12 (1-based, inclusive) -> reader indices 4..11.
    sample = Sample(str(videos["frames"]), {"verb": 2, "noun": 7, "action": 0}, start_frame=4, end_frame=12)
    ds = VideoDataset(
        [sample], sampler=UniformSampler(4), mode="eval", transform=eval_identity, label_key="verb"
    )
    item = ds[0]
    assert item["label"] == 2
    assert frame_numbers(item["video"].transpose(0, 1)) == [5, 7, 9, 11]


def test_multiview_decodes_once_in_temporal_major_order(videos, monkeypatch):
    opened, reads = [], []
    real_open = dataset_module.open_video

    def counting_open(path, **kwargs):
        reader = real_open(path, **kwargs)
        opened.append(path)
        real_read = reader.read
        reader.read = lambda idx: reads.append(list(idx)) or real_read(idx)
        return reader

    monkeypatch.setattr(dataset_module, "open_video", counting_open)
    sampler = DenseSampler(4, 2)
    transform = EvalTransform(crop_size=32, resize=40, num_crops=3, mean=(0, 0, 0), std=(1, 1, 1))
    ds = VideoDataset(
        [Sample(str(videos["good"]), 0)], sampler=sampler, mode="eval", views=(3, 3), transform=transform
    )
    video = ds[0]["video"]
    assert video.shape == (9, 3, 4, 32, 32)
    assert len(opened) == 1 and len(reads) == 1  # one open, one read for all 9 views
    views = sampler.views(40, 3)
    assert reads[0] == sorted(set(views.flatten().tolist()))
    for v in range(9):
        t, s = divmod(v, 3)
        expected = transform(read_frames(videos["good"], views[t]))[s]
        assert torch.allclose(video[v], expected, atol=1e-5), v


@pytest.mark.parametrize("bad", ["missing", "zero", "garbage", "truncated", "gap"])
def test_training_replaces_broken_samples(videos, bad, caplog):
    samples = [Sample(str(videos[bad]), 1), Sample(str(videos["good"]), 2)]
    ds = VideoDataset(samples, num_frames=8, sampling_rate=1, transform=TrainTransform(16, scale=(16, 20)))
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING):
        item = ds[0]
    assert item["index"] == 1 and item["label"] == 2 and item["replaced"] >= 1
    assert item["video"].shape == (3, 8, 16, 16)
    assert str(videos[bad]) in caplog.text and ds.num_failures == 1


def test_training_gives_up_after_bounded_retries(videos):
    ds = VideoDataset(
        [Sample(str(videos["zero"]), 0), Sample(str(videos["garbage"]), 1)],
        transform=TrainTransform(16, scale=(16, 20)),
        max_retries=4,
    )
    with pytest.raises(RuntimeError, match=r"4 random replacements failed to decode"):
        ds[0]


def test_eval_failures_reported_and_collated(videos):
    samples = [
        Sample(str(videos["good"]), 3),
        Sample(str(videos["truncated"]), 5),
        Sample(str(videos["missing"]), 6),
        Sample(str(videos["good"]), 7),
    ]
    ds = VideoDataset(
        samples, num_frames=4, sampling_rate=2, mode="eval", views=(2, 1), transform=EvalTransform(16)
    )
    items = [ds[i] for i in range(4)]
    assert items[1]["video"] is None and str(videos["truncated"]) in items[1]["error"]
    assert items[2]["error"].startswith(str(videos["missing"]))
    batch = collate(items)
    assert batch["video"].shape == (2, 2, 3, 4, 16, 16)
    assert batch["label"].tolist() == [3, 7] and batch["index"].tolist() == [0, 3]
    assert [(f["index"], f["label"]) for f in batch["failed"]] == [(1, 5), (2, 6)]
    assert collate([items[2]])["video"] is None


def test_loader_workers_match_single_process(videos):
    samples = [
        Sample(str(videos[k]), i) for i, k in enumerate(["good", "short", "missing", "good", "frames"])
    ]
    ds = VideoDataset(samples, num_frames=4, sampling_rate=2, mode="eval", transform=EvalTransform(16))
    serial = list(build_loader(ds, batch_size=2, workers=0))
    loader = build_loader(ds, batch_size=2, workers=2)
    assert loader.persistent_workers and loader.pin_memory == torch.cuda.is_available()
    parallel = list(loader)
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel):
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["label"], b["label"])
        assert a["failed"] == b["failed"]
    assert [f["index"] for b in serial for f in b["failed"]] == [2]


def test_train_loader_sums_replacements(videos):
    samples = [Sample(str(videos["good"]), 0), Sample(str(videos["zero"]), 1)] * 2
    ds = VideoDataset(samples, num_frames=4, transform=TrainTransform(16, scale=(16, 20)))
    torch.manual_seed(0)
    batches = list(build_loader(ds, batch_size=4, workers=0, shuffle=True, seed=1))
    assert batches[0]["video"].shape == (4, 3, 4, 16, 16)
    assert batches[0]["replaced"] >= 2 and batches[0]["label"].tolist().count(1) == 0


def test_bad_views_and_transform_mismatch():
    with pytest.raises(ValueError, match="spatial crops"):
        VideoDataset([], mode="eval", views=(2, 3), transform=EvalTransform(16, num_crops=1))
    with pytest.raises(ValueError, match="mode='eval' only"):
        VideoDataset([], mode="train", views=(2, 1))
