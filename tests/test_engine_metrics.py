"""Accuracy figures, view fusion and the views curve, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from xvit.engine.evaluate import ScoreSet, evaluate_scores, views_curve, write_views_curve
from xvit.engine.metrics import classification_metrics, fuse_views, subset_indices


def test_fuse_prob_and_logits_differ_as_by_hand():
    # one video, two views, two classes: view 1 is very sure of class 1, view 2 mildly of class 0
    logits = torch.tensor([[[0.0, 10.0], [3.0, 0.0]]])
    p1 = torch.tensor([math.exp(0) / (1 + math.exp(10)), math.exp(10) / (1 + math.exp(10))])
    p2 = torch.tensor([math.exp(3) / (1 + math.exp(3)), 1 / (1 + math.exp(3))])
    assert torch.allclose(fuse_views(logits, "prob")[0], (p1 + p2) / 2, atol=1e-6)
    assert torch.allclose(fuse_views(logits, "logits")[0], torch.tensor([1.5, 5.0]))
    with pytest.raises(ValueError):
        fuse_views(logits[0], "prob")


def test_metrics_count_failures_in_the_denominator():
    scores = torch.tensor([
        [0.9, 0.05, 0.05],   # label 0: right
        [0.6, 0.3, 0.1],     # label 1: wrong at top1, right at top2
        [0.1, 0.2, 0.7],     # label 2: right
    ])
    labels = torch.tensor([0, 1, 2])
    m = classification_metrics(scores, labels, failed_labels=[0])  # a 4th video, class 0, failed
    assert m["num_videos"] == 4 and m["num_failed"] == 1
    assert m["top1"] == pytest.approx(50.0)
    assert m["top5"] == pytest.approx(75.0)  # k capped at 3 classes; the failure is a miss
    # per class: class 0 -> 1 of 2, class 1 -> 0 of 1, class 2 -> 1 of 1
    assert m["mean_class_accuracy"] == pytest.approx(100 * (0.5 + 0.0 + 1.0) / 3)


def test_clip_level_accuracy():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0]], [[0.0, 1.0], [0.0, 3.0]]])  # (2 videos, 2 views, 2)
    m = classification_metrics(fuse_views(logits), torch.tensor([0, 1]), [1], clip_logits=logits)
    # views right: video 0 -> 1 of 2, video 1 -> 2 of 2, failed video -> 0 of 2
    assert m["clip_top1"] == pytest.approx(100 * 3 / 6)


def test_subset_indices():
    assert subset_indices(4, 1) == [2]
    assert subset_indices(4, 2) == [1, 3]
    assert subset_indices(4, 4) == [0, 1, 2, 3]
    assert subset_indices(3, 1) == [1]  # the centre crop
    with pytest.raises(ValueError):
        subset_indices(3, 4)


def test_views_curve_reuses_view_scores(tmp_path):
    # 2 videos, t=2 temporal x s=1 spatial; label 0. Video A: clip 0 wrong, clip 1 right.
    logits = torch.tensor([
        [[0.0, 1.0], [3.0, 0.0]],
        [[2.0, 0.0], [2.0, 0.0]],
    ])
    scores = ScoreSet([0, 1], torch.tensor([0, 0]), logits, [{"index": 2, "label": 1, "error": "x"}])
    rows = views_curve(scores, (2, 1), gflops_per_view=1.5)
    assert [r["temporal_clips"] for r in rows] == [1, 2]
    # k=1 keeps clip index 1 (subset_indices(2, 1) == [1]): both videos right, the failure wrong
    assert rows[0]["top1"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert rows[1]["top1"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert rows[1]["gflops"] == 3.0
    csv_path, png_path = write_views_curve(rows, tmp_path)
    assert csv_path.read_text().splitlines()[0] == "temporal_clips,spatial_crops,views,top1,top5,gflops"
    assert png_path.read_bytes()[:4] == b"\x89PNG"


def test_per_video_records_list_failures():
    logits = torch.tensor([[[0.0, 2.0]]])
    scores = ScoreSet([0], torch.tensor([1]), logits, [{"index": 1, "label": 0, "error": "bad file"}])
    metrics, records = evaluate_scores(scores, class_names=["a", "b"])
    assert metrics["top1"] == 50.0 and metrics["num_failed"] == 1
    assert records[0]["prediction"] == "b" and records[0]["correct"]
    assert records[1]["error"] == "bad file" and records[1]["label"] == "a" and not records[1]["correct"]
