"""Exact reuse of segments between overlapping windows (`VideoViT.segment_len_for_reuse`,
`forward_segment_features`, `engine.infer.window_scorer`): every attention variant whose frames
meet only inside segments gives the same logits with reuse as recomputing every window."""

from __future__ import annotations

import pytest
import torch

import xvit
from xvit.engine.infer.window_scorer import WindowScorer, reuse_plan
from xvit.models.variants import VARIANTS

TINY = dict(embed_dim=32, depth=2, num_heads=2, img_size=32, num_classes=7)


def tiny(attention: str, num_frames: int = 8, seed: int = 0, **kw) -> xvit.models.VideoViT:
    """A tiny model with random weights everywhere, the temporal embedding and the head made
    large enough that frame positions and classes matter."""
    torch.manual_seed(seed)
    model = xvit.create_model("vit_tiny_patch16", num_frames=num_frames, attention=attention, **TINY, **kw)
    with torch.no_grad():
        model.temp_embed.normal_(std=0.5)
        classifier = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1]
        classifier.weight.normal_(std=1.0)
    return model.eval()


# the variants whose frames meet only inside segments, in their released-like layouts:
# 16 frames in two segments of 8, the temporal embedding of 8 entries tiled (X-ViT K600)
LOCAL = {
    "spatial": dict(temp_embed_frames=4, temp_embed_mode="tile"),
    "mixing": dict(segment_len=8, temp_embed_frames=8, temp_embed_mode="tile"),
    "tsm": dict(segment_len=8, temp_embed_frames=8, temp_embed_mode="tile"),
}


def test_every_segment_local_variant_is_covered():
    local = {name for name, v in VARIANTS.items() if not v.clip_wide}
    assert local == set(LOCAL), "a new segment-local variant needs a reuse test layout in LOCAL"


def windows(num_frames: int, stride: int, count: int, rate: int = 1) -> list[list[int]]:
    return [[s * stride + j * rate for j in range(num_frames)] for s in range(count)]


@pytest.mark.parametrize("attention", sorted(LOCAL))
@pytest.mark.parametrize("head", ["avg", "ta"])
def test_reuse_equals_recomputing_every_window(attention, head):
    model = tiny(attention, num_frames=16, head=head, **LOCAL[attention])
    unit = model.segment_len_for_reuse
    assert unit is not None and 16 % unit == 0 and unit < 16
    torch.manual_seed(1)
    frames = {i: torch.randn(3, 32, 32) for i in range(16 + 8 * 5)}
    wins = windows(16, 8, 6)
    assert reuse_plan(model, 1, 8) == (unit, "")
    reuse = WindowScorer(model, torch.device("cpu"), unit=unit)
    fresh = WindowScorer(model, torch.device("cpu"), unit=None)
    got = torch.cat([reuse.score(wins[:2], frames), reuse.score(wins[2:], frames)])  # across batches
    ref = fresh.score(wins, frames)
    assert (got - ref).abs().max().item() <= 1e-5
    assert torch.equal(got.argmax(-1), ref.argmax(-1))
    # the windows differ far beyond the tolerance: a segment taken from the wrong place shows
    assert (ref[1:] - ref[:-1]).abs().max().item() > 1e-3
    # 6 windows of 16 frames, 8 apart: 7 distinct segments of 8 frames computed, the rest reused
    assert reuse.computed == (16 + 8 * 5) // unit
    assert reuse.reused == 6 * 16 // unit - reuse.computed
    # and the plain forward of each window is the reference itself
    clips = torch.stack([torch.stack([frames[i] for i in w], dim=1) for w in wins])
    with torch.no_grad():
        assert (model(clips) - ref).abs().max().item() <= 1e-5


def test_segment_features_equal_the_slices_of_the_whole_clip():
    model = tiny("mixing", num_frames=16, **LOCAL["mixing"])
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        full = model.forward_features(x)
        for offset in (0, 8):
            part = model.forward_segment_features(x[:, :, offset : offset + 8], offset)
            assert (part - full[:, offset : offset + 8]).abs().max().item() <= 1e-5
        with pytest.raises(ValueError, match="multiples of 8"):
            model.forward_segment_features(x[:, :, 4:12], 4)
        with pytest.raises(ValueError, match="inside the clip"):
            model.forward_segment_features(x[:, :, :8], 16)


def test_spatial_attention_with_a_constant_temporal_embedding_reuses_single_frames():
    model = tiny("spatial", num_frames=8)
    with torch.no_grad():
        model.temp_embed.zero_()
    assert model.segment_len_for_reuse == 1
    frames = {i: torch.randn(3, 32, 32) for i in range(8 + 3 * 4)}
    wins = windows(8, 3, 5)  # any stride works with segments of one frame
    got = WindowScorer(model, torch.device("cpu"), unit=1).score(wins, frames)
    ref = WindowScorer(model, torch.device("cpu")).score(wins, frames)
    assert (got - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    ("attention", "kw", "why"),
    [
        ("summary", dict(segment_len=8, temp_embed_frames=8, temp_embed_mode="tile"), "summary tokens"),
        ("divided", {}, "temporal attention"),
        ("joint", {}, "joint attention"),
        ("mixing", dict(temp_embed_frames=8, temp_embed_mode="tile"), "segment_len is not set"),
        ("tsm", dict(segment_len=8), "temporal embedding"),  # interpolated: one value per position
        ("spatial", {}, "temporal embedding"),
    ],
)
def test_models_whose_frames_meet_across_the_clip_are_recomputed(attention, kw, why):
    model = tiny(attention, num_frames=16, **kw)
    assert model.segment_len_for_reuse is None
    assert why in model.why_no_segment_reuse()
    unit, reason = reuse_plan(model, 1, 8)
    assert unit is None and why in reason
    with pytest.raises(ValueError, match="no segment reuse"):
        model.forward_segment_features(torch.randn(1, 3, 8, 32, 32), 0)


def test_reuse_plan_needs_overlap_by_whole_segments():
    model = tiny("mixing", num_frames=16, **LOCAL["mixing"])
    assert reuse_plan(model, 1, 8)[0] == 8
    assert reuse_plan(model, 2, 16)[0] == 8  # every other frame: a segment spans 16 video frames
    assert "not a multiple" in reuse_plan(model, 1, 4)[1]
    assert "not a multiple" in reuse_plan(model, 2, 8)[1]
    assert "do not overlap" in reuse_plan(model, 1, 16)[1]
