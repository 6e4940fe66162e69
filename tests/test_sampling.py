"""Dense and uniform-segment clip samplers against hand-computed indices."""

from __future__ import annotations

import pytest
import torch

from xvit.data.sampling import DenseSampler, UniformSampler, build_sampler


def test_dense_test_views_evenly_spread():
    s = DenseSampler(num_frames=4, sampling_rate=2)  # span 7
    # 31 frames: starts range over [0, 24]; 3 views start at the centres of 3 equal parts
    # of that range: 4, 12, 20.
    assert s.views(31, 3).tolist() == [[4, 6, 8, 10], [12, 14, 16, 18], [20, 22, 24, 26]]
    assert s.views(31, 1).tolist() == [[12, 14, 16, 18]]  # one view: the centre
    assert s.views(7, 2).tolist() == [[0, 2, 4, 6]] * 2  # exactly one clip fits


def test_dense_short_video_loop_and_repeat_last():
    assert DenseSampler(6, 2, pad="loop").views(5, 1).tolist() == [[0, 2, 4, 1, 3, 0]]
    assert DenseSampler(6, 2, pad="repeat_last").views(5, 1).tolist() == [[0, 2, 4, 4, 4, 4]]
    g = torch.Generator().manual_seed(0)
    assert DenseSampler(6, 2, pad="repeat_last").sample(5, g).tolist() == [0, 2, 4, 4, 4, 4]


def test_dense_training_starts_cover_valid_range_uniformly():
    s = DenseSampler(num_frames=3, sampling_rate=4)  # span 9
    g = torch.Generator().manual_seed(0)
    starts = torch.tensor([int(s.sample(12, g)[0]) for _ in range(4000)])
    clips = torch.stack([s.sample(12, g) for _ in range(10)])
    assert (clips[:, 1:] - clips[:, :-1] == 4).all()
    counts = torch.bincount(starts, minlength=4)
    assert counts.numel() == 4 and (counts > 850).all()  # starts 0..3, each ~1000


def test_uniform_segments_train_and_test():
    s = UniformSampler(4)
    # 20 frames, 4 segments of 5: centres floor(2.5 + 5i).
    assert s.views(20, 1).tolist() == [[2, 7, 12, 17]]
    # two temporal views: offsets 1/4 and 3/4 of each segment.
    assert s.views(20, 2).tolist() == [[1, 6, 11, 16], [3, 8, 13, 18]]
    g = torch.Generator().manual_seed(1)
    for _ in range(200):
        idx = s.sample(20, g)
        assert ((idx >= torch.tensor([0, 5, 10, 15])) & (idx < torch.tensor([5, 10, 15, 20]))).all()


def test_uniform_fewer_frames_than_segments():
    s = UniformSampler(8)
    # floor((i + 0.5) * 3 / 8) for i = 0..7
    assert s.views(3, 1).tolist() == [[0, 0, 0, 1, 1, 2, 2, 2]]
    g = torch.Generator().manual_seed(0)
    idx = s.sample(3, g)
    assert idx.min() >= 0 and idx.max() <= 2 and (idx[1:] >= idx[:-1]).all()


def test_deterministic_given_generator_and_errors():
    for s in (DenseSampler(8, 2), UniformSampler(8)):
        a = s.sample(100, torch.Generator().manual_seed(5))
        b = s.sample(100, torch.Generator().manual_seed(5))
        assert torch.equal(a, b)
        with pytest.raises(ValueError, match="0 frames"):
            s.sample(0)
    with pytest.raises(ValueError, match="pad"):
        DenseSampler(8, pad="mirror")
    with pytest.raises(ValueError, match="unknown sampler"):
        build_sampler("random", 8)
