"""`xvit eval` (multi-view, failures in the denominator, views curve) and `xvit predict`."""

from __future__ import annotations

import csv
import json
import logging

import pytest
import torch
from test_engine_utils import TINY_MODEL, make_dataset, one_thread  # noqa: F401

import xvit
from xvit.cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evalrun")
    lists = make_dataset(root / "data", n_train=8, n_val=4, broken_val=1)
    out = root / "run"
    rc = main(
        [
            "train",
            *TINY_MODEL,
            "--train-list",
            str(lists["train"]),
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--out",
            str(out),
            "train.tensorboard=false",
        ]
    )
    torch.set_num_threads(threads)
    assert rc == 0
    return root, lists, out


def test_eval_counts_broken_videos_as_wrong(run, capsys):
    root, lists, ckpt = run
    out = root / "eval23"
    rc = main(
        [
            "eval",
            "--checkpoint",
            str(ckpt),
            "--list",
            str(lists["val"]),
            "--views",
            "2x3",
            "--out",
            str(out),
            "--views-curve",
            "--workers",
            "0",
        ]
    )
    assert rc == 1  # a video failed
    printed = capsys.readouterr().out
    broken = str(lists["val"].parent / "broken_0.mp4")
    assert f"failed: {broken}" in printed

    m = json.loads((out / "metrics.json").read_text())
    assert m["num_videos"] == 5 and m["num_failed"] == 1 and m["views"] == "2x3"
    assert m["fuse"] == "mean of softmax over views"
    assert m["failed"][0]["path"] == broken and "broken_0.mp4" in m["failed"][0]["error"]
    assert m["command"].startswith("xvit eval --checkpoint") and "--views 2x3" in m["command"]
    preds = m["predictions"]
    assert [p["path"].rsplit("/", 1)[-1] for p in preds] == [
        "val_000.mp4",
        "val_001.mp4",
        "val_002.mp4",
        "val_003.mp4",
        "broken_0.mp4",
    ]
    correct = sum(p["correct"] for p in preds)
    assert m["top1"] == pytest.approx(100 * correct / 5)  # the failure stays in the denominator
    assert m["video_top1"] == m["top1"]
    for p in preds[:4]:
        probs = [v for _, v in p["top"]]
        assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-4)

    with open(out / "views_curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["temporal_clips"]), int(r["spatial_crops"])) for r in rows] == [
        (1, 1),
        (2, 1),
        (1, 2),
        (2, 2),
        (1, 3),
        (2, 3),
    ]
    assert float(rows[-1]["top1"]) == pytest.approx(m["top1"], abs=1e-3)  # all views = the main figure
    gflops = xvit.count_flops(xvit.load_model(ckpt), (1, 3, 4, 32, 32)) / 1e9
    assert float(rows[-1]["gflops"]) == pytest.approx(round(6 * gflops, 4))  # rows keep 4 decimals
    assert (out / "views_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_fuse_logits_is_recorded(run):
    root, lists, ckpt = run
    out = root / "eval_logits"
    main(
        [
            "eval",
            "--checkpoint",
            str(ckpt),
            "--list",
            str(lists["val"]),
            "--views",
            "2x1",
            "--fuse",
            "logits",
            "--out",
            str(out),
            "--workers",
            "0",
        ]
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["fuse"] == "mean of logits over views" and m["views"] == "2x1"


def test_predict_answers_good_videos_and_names_the_broken_one(run, capsys, caplog):
    _root, lists, ckpt = run
    data = lists["val"].parent
    videos = [str(data / "val_000.mp4"), str(data / "broken_0.mp4"), str(data / "val_001.mp4")]
    rc = main(["predict", *videos, "--checkpoint", str(ckpt), "--json", "--topk", "2"])
    captured = capsys.readouterr()
    assert rc == 1
    results = json.loads(captured.out)
    assert [r["path"] for r in results] == videos
    assert "error" in results[1] and videos[1] in results[1]["error"]
    assert f"error: {videos[1]}" in captured.err
    # one line per bad video: no second report of it by the dataset's logger ("evaluation: ...")
    assert captured.err.strip().splitlines() == [f"error: {results[1]['error']}"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    names = {"class_0", "class_1", "class_2"}
    for r in (results[0], results[2]):
        probs = [p["prob"] for p in r["predictions"]]
        assert len(probs) == 2 and probs[0] >= probs[1] and 0 < sum(probs) <= 1 + 1e-6
        assert {p["class"] for p in r["predictions"]} <= names

    # text mode: one line per good video
    rc = main(["predict", videos[0], "--checkpoint", str(ckpt)])
    line = capsys.readouterr().out.strip()
    assert rc == 0 and line.startswith(f"{videos[0]}: ") and line.count(",") == 2  # top 3 of 3 classes


def test_eval_and_predict_agree(run, capsys):
    """The same video through `xvit eval` (1x1) and `xvit predict` gets the same scores."""
    root, lists, ckpt = run
    out = root / "eval11"
    main(
        [
            "eval",
            "--checkpoint",
            str(ckpt),
            "--list",
            str(lists["val"]),
            "--views",
            "1x1",
            "--out",
            str(out),
            "--workers",
            "0",
        ]
    )
    capsys.readouterr()
    preds = json.loads((out / "metrics.json").read_text())["predictions"]
    main(["predict", preds[0]["path"], "--checkpoint", str(ckpt), "--json"])
    answer = json.loads(capsys.readouterr().out)[0]["predictions"]
    assert [p["class"] for p in answer] == [c for c, _ in preds[0]["top"]]
    assert [p["prob"] for p in answer] == pytest.approx([v for _, v in preds[0]["top"]], abs=1e-5)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--topk", "-2"], "--topk must be an integer >= 1, got -2"),
        (["--topk", "0"], "--topk must be an integer >= 1, got 0"),
        (["--threshold", "1.5"], "--threshold must be a probability in [0, 1], got 1.5"),
        (["--threshold", "-0.1"], "--threshold must be a probability in [0, 1], got -0.1"),
        (["--threshold", "nan"], "--threshold must be a probability in [0, 1], got nan"),
        # numeric flags are checked whichever mode reads them: 0 is never taken for the default
        (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
        (["--batch-size", "-3"], "--batch-size must be an integer >= 1, got -3"),
        (["--workers", "-1"], "--workers must be an integer >= 0, got -1"),
        (["--stride", "0"], "--stride must be an integer >= 1, got 0"),
        (["--sampling-rate", "0"], "--sampling-rate must be an integer >= 1, got 0"),
        (["--smooth", "0"], "--smooth must be an integer >= 1, got 0"),
        (["--max-windows", "0"], "--max-windows must be an integer >= 1, got 0"),
        (["--max-seconds", "0"], "--max-seconds must be > 0, got 0.0"),
        (["--max-seconds", "nan"], "--max-seconds must be > 0, got nan"),
    ],
)
def test_predict_bad_options_are_one_line_errors(run, capsys, flags, message):
    _root, lists, ckpt = run
    rc = main(["predict", str(lists["val"].parent / "val_000.mp4"), "--checkpoint", str(ckpt), *flags])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    assert captured.err.strip().splitlines() == [f"xvit predict: error: {message}"]


def test_predict_threshold_filters_the_softmax_topk(run, capsys):
    _root, lists, ckpt = run
    video = str(lists["val"].parent / "val_000.mp4")
    main(["predict", video, "--checkpoint", str(ckpt), "--json", "--topk", "3"])
    everything = json.loads(capsys.readouterr().out)[0]["predictions"]
    cut = (everything[0]["prob"] + everything[1]["prob"]) / 2  # between the first and second
    main(["predict", video, "--checkpoint", str(ckpt), "--json", "--topk", "3", "--threshold", str(cut)])
    kept = json.loads(capsys.readouterr().out)[0]
    assert kept["predictions"] == everything[:1] and kept["threshold"] == pytest.approx(cut)
    rc = main(["predict", video, "--checkpoint", str(ckpt), "--threshold", "1"])
    assert rc == 0 and capsys.readouterr().out.strip() == f"{video}: no class with probability >= 1"
