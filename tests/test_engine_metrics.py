"""Accuracy and mAP figures, view fusion and the views curve, against hand computations and
scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xvit.engine.evaluate.evaluator import evaluate_scores
from xvit.engine.evaluate.views_curve import views_curve, write_views_curve
from xvit.engine.run.metrics import (
    average_precision,
    classification_metrics,
    fuse_views,
    multilabel_metrics,
    scores_to_probs,
    subset_indices,
)
from xvit.engine.run.scoring import ScoreSet


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
    scores = torch.tensor(
        [
            [0.9, 0.05, 0.05],  # label 0: right
            [0.6, 0.3, 0.1],  # label 1: wrong at top1, right at top2
            [0.1, 0.2, 0.7],  # label 2: right
        ]
    )
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
    logits = torch.tensor(
        [
            [[0.0, 1.0], [3.0, 0.0]],
            [[2.0, 0.0], [2.0, 0.0]],
        ]
    )
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


# ----------------------------------------------------------------------------- multi-label


def _sklearn_ap(y, s):
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(np.asarray(y), np.asarray(s)))


def test_average_precision_matches_sklearn_with_ties():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(300):
        n = int(rng.integers(1, 40))
        scores = rng.integers(0, 6, n) / 5.0  # few distinct values: many ties
        targets = rng.integers(0, 2, n)
        if targets.sum() == 0:
            assert math.isnan(average_precision(torch.tensor(scores), torch.tensor(targets)))
            continue
        ours = average_precision(torch.tensor(scores), torch.tensor(targets))
        assert ours == pytest.approx(_sklearn_ap(targets, scores), abs=1e-12)
        checked += 1
    assert checked > 200


def test_average_precision_by_hand():
    # ranking (desc): 0.9 pos, 0.8 neg, 0.7 pos -> (1/2)(1/1) + (1/2)(2/3)
    assert average_precision(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 0, 1])) == pytest.approx(
        0.5 + 1 / 3
    )
    # a tie of a positive and a negative at the top is one threshold: precision 1/2 there
    assert average_precision(torch.tensor([0.5, 0.5]), torch.tensor([1, 0])) == pytest.approx(0.5)
    # two more positives that were never ranked (failed videos) halve the recall gains
    assert average_precision(torch.tensor([0.9, 0.8]), torch.tensor([1, 1]), missed=2) == pytest.approx(0.5)
    assert average_precision(torch.tensor([0.9]), torch.tensor([0]), missed=1) == 0.0
    with pytest.raises(ValueError, match="NaN"):
        average_precision(torch.tensor([float("nan"), 0.1]), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="shape"):
        average_precision(torch.tensor([0.1, 0.2]), torch.tensor([1]))


def test_multilabel_map_macro_and_micro_match_sklearn():
    pytest.importorskip("sklearn")
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    n, c = 30, 6
    targets = (rng.random((n, c)) < 0.3).astype(np.float32)
    targets[:, 4] = 0  # a class with no positive: left out of the macro mean
    targets[0, 5], targets[1:, 5] = 1, 0  # a class with a single positive
    scores = np.round(rng.random((n, c)), 1)  # ties
    m = multilabel_metrics(torch.tensor(scores), torch.tensor(targets), class_names=list("abcdef"))
    present = [k for k in range(c) if targets[:, k].any()]
    expected_macro = np.mean([average_precision_score(targets[:, k], scores[:, k]) for k in present])
    assert m["mAP"] == pytest.approx(100 * expected_macro, abs=1e-9)
    assert m["micro_mAP"] == pytest.approx(
        100 * average_precision_score(targets, scores, average="micro"), abs=1e-9
    )
    assert m["num_classes_with_positives"] == c - 1 and "e" not in m["per_class_ap"]
    assert m["per_class_ap"]["a"] == pytest.approx(
        100 * average_precision_score(targets[:, 0], scores[:, 0]), abs=1e-3
    )
    assert (m["num_videos"], m["num_failed"]) == (n, 0)


def test_multilabel_failures_lower_recall():
    pytest.importorskip("sklearn")
    from sklearn.metrics import average_precision_score

    scores = torch.tensor([[0.9, 0.2, 0.1], [0.3, 0.8, 0.1], [0.6, 0.7, 0.2]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    failed = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # class 2: its only positive failed
    m = multilabel_metrics(scores, targets, failed)
    ap0 = average_precision_score(targets[:, 0], scores[:, 0]) * 2 / 3  # 2 of 3 positives ranked
    ap1 = average_precision_score(targets[:, 1], scores[:, 1])
    assert m["mAP"] == pytest.approx(100 * (ap0 + ap1 + 0.0) / 3)
    micro = average_precision_score(targets.flatten(), scores.flatten()) * 4 / 6
    assert m["micro_mAP"] == pytest.approx(100 * micro)
    assert (m["num_videos"], m["num_failed"], m["num_classes_with_positives"]) == (5, 2, 3)
    # every video failed: nothing was retrieved
    m = multilabel_metrics(torch.zeros(0, 3), torch.zeros(0, 3), failed)
    assert m["mAP"] == 0.0 and m["micro_mAP"] == 0.0


def test_multilabel_metrics_bad_input():
    with pytest.raises(ValueError, match="must both be"):
        multilabel_metrics(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="no video has any label"):
        multilabel_metrics(torch.rand(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="no videos"):
        multilabel_metrics(torch.zeros(0, 3), torch.zeros(0, 3))


def test_fuse_views_multi_label_uses_the_sigmoid():
    logits = torch.tensor([[[0.0, 2.0], [4.0, -2.0]]])
    expected = (torch.sigmoid(logits[0, 0]) + torch.sigmoid(logits[0, 1])) / 2
    assert torch.allclose(fuse_views(logits, "prob", multi_label=True)[0], expected)
    fused = fuse_views(logits, "logits", multi_label=True)
    assert torch.allclose(
        scores_to_probs(fused, "logits", multi_label=True)[0], torch.sigmoid(torch.tensor([2.0, 0.0]))
    )


def test_evaluate_scores_multi_label_records_and_failures():
    logits = torch.tensor([[[2.0, -1.0, 0.0]], [[-3.0, 1.0, 3.0]]])  # 2 videos, 1 view, 3 classes
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    failures = [{"index": 1, "label": [1], "num_classes": 3, "error": "v1: broken"}]
    scores = ScoreSet([0, 2], targets, logits, failures)
    metrics, records = evaluate_scores(scores, class_names=["a", "b", "c"], multi_label=True, topk=2)
    probs = torch.sigmoid(logits[:, 0])
    expected = multilabel_metrics(probs, targets, torch.tensor([[0.0, 1.0, 0.0]]))
    assert metrics["mAP"] == pytest.approx(expected["mAP"]) and metrics["num_failed"] == 1
    assert metrics["fuse"] == "mean of sigmoid over views" and metrics["num_non_finite"] == 0
    assert [r["index"] for r in records] == [0, 1, 2]
    assert records[0]["labels"] == ["a"] and records[0]["predicted"] == ["a", "c"]  # sigmoid(0) = 0.5
    assert records[0]["probs"] == pytest.approx(probs[0].tolist(), abs=1e-6)
    assert [k for k, _ in records[2]["top"]] == ["c", "b"]
    assert records[1] == {"index": 1, "path": "1", "labels": ["b"], "predicted": None, "error": "v1: broken"}
    # all failed: the number of classes comes from the failures
    m, _ = evaluate_scores(ScoreSet([], torch.zeros(0), torch.zeros(0, 1, 1), failures), multi_label=True)
    assert m["mAP"] == 0.0 and m["num_videos"] == 1


def test_views_curve_multi_label(tmp_path):
    # t=2 clips; video 0 is class 0, video 1 class 1. With clip 1 alone (k=1 takes the middle
    # of 2, index 1) both classes rank their positive first; with both clips video 0's clip 0
    # (very sure of class 1) puts video 0 above video 1 for class 1: AP 1/2 there.
    logits = torch.tensor([[[-2.0, 3.0], [3.0, -1.0]], [[-1.0, 0.0], [-1.0, 0.0]]])
    scores = ScoreSet([0, 1], torch.tensor([[1.0, 0.0], [0.0, 1.0]]), logits)
    rows = views_curve(scores, (2, 1), multi_label=True)
    assert [r["temporal_clips"] for r in rows] == [1, 2] and "top1" not in rows[0]
    assert rows[0]["mAP"] == pytest.approx(100.0) and rows[1]["mAP"] == pytest.approx(75.0)
    full, _ = evaluate_scores(scores, multi_label=True)
    assert rows[1]["mAP"] == pytest.approx(full["mAP"], abs=1e-3)
    _, png = write_views_curve(rows, tmp_path)
    assert png.read_bytes()[:4] == b"\x89PNG"
