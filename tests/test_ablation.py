"""`xvit ablate` (the seed's Table 2): variant configs, aggregation over seeds checked by hand,
resuming, failed runs, twin-pair accuracy, and one real tiny run through the engine."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
from test_engine_utils import TINY_MODEL, make_dataset, one_thread  # noqa: F401

from xvit.cli.ablate import add_arguments, add_parser
from xvit.cli.train import parse_intermixed
from xvit.data.synth import CLASS_NAMES
from xvit.engine.run.config import load_config
from xvit.engine.train.ablation import (
    VARIANTS,
    format_markdown,
    mean_std,
    pair_accuracy,
    run_ablation,
    variant_config,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# Known accuracies the stand-in training returns, per (variant, seed).
KNOWN = {
    ("tsm-avg", 0): 40.0,
    ("tsm-avg", 1): 50.0,
    ("xvit-ta", 0): 62.5,
    ("xvit-ta", 1): 70.0,
}
MODEL_OF = {("tsm_vit_tiny_patch16", "avg"): "tsm-avg", ("xvit_tiny_patch16", "ta"): "xvit-ta"}


def _fake_train(calls: list):
    """A stand-in for the engine: writes metrics.json / config.json like a finished run."""

    def train_fn(cfg, command):
        key = MODEL_OF[(cfg.model.name, cfg.model.head)]
        calls.append((key, cfg.train.seed, cfg.train.out, cfg.train.epochs, command))
        out = Path(cfg.train.out)
        out.mkdir(parents=True, exist_ok=True)
        top1 = KNOWN[(key, cfg.train.seed)]
        history = [{"epoch": 1, "val": {"top1": top1 / 2}}, {"epoch": 2, "val": {"top1": top1}}]
        metrics = {"top1": top1, "predictions": [], "history": history}
        (out / "metrics.json").write_text(json.dumps(metrics))
        return {"top1": top1}  # like the engine: history and predictions only in the file

    return train_fn


def test_variant_config_swaps_family_and_head_only():
    base = load_config(None, ["train.epochs=3", "optim.lr=0.002"])
    for key, family in [
        ("vit-avg", "vit"),
        ("tsm-ta", "tsm_vit"),
        ("xvit-avg", "xvit"),
        ("xvit_st-ta", "xvit_st"),
    ]:
        cfg = variant_config(base, VARIANTS[key], seed=4, out="o")
        assert cfg.model.name == f"{family}_tiny_patch16"
        assert cfg.model.head == VARIANTS[key].head
        assert (cfg.train.seed, cfg.train.out, cfg.train.epochs, cfg.optim.lr) == (4, "o", 3, 0.002)
        assert cfg.model.overrides == base.model.overrides  # same backbone width / depth / patch
    with pytest.raises(ValueError, match="'timesformer_tiny_patch16'"):
        variant_config(
            load_config(None, ["model.name=timesformer_tiny_patch16"]), VARIANTS["vit-avg"], 0, "o"
        )


def test_mean_std_by_hand():
    assert mean_std([50.0, 60.0, 70.0]) == (60.0, 10.0)
    mean, std = mean_std([40.0, 50.0])
    assert mean == 45.0 and math.isclose(std, math.sqrt(50.0))  # ((5^2 + 5^2) / 1) ** 0.5
    assert mean_std([33.0]) == (33.0, None) and mean_std([]) == (None, None)


def test_table_from_known_accuracies_and_resume(tmp_path):
    calls: list = []
    out = tmp_path / "abl"
    doc = run_ablation(
        None,
        ["train.epochs=2"],
        variants=["tsm-avg", "xvit-ta"],
        seeds=[0, 1],
        out=out,
        train_fn=_fake_train(calls),
        command=["xvit", "ablate", "x"],
    )
    assert [(c[0], c[1]) for c in calls] == [("tsm-avg", 0), ("xvit-ta", 0), ("tsm-avg", 1), ("xvit-ta", 1)]
    assert all(c[3] == 2 and c[2] == str(out / c[0] / f"seed-{c[1]}") for c in calls)
    assert calls[0][4][:2] == ["xvit", "train"] and "--seed" in calls[0][4]
    tsm, xv = doc["rows"]
    assert (tsm["top1"], tsm["n"], tsm["top1_mean"]) == ([40.0, 50.0], 2, 45.0)
    assert math.isclose(tsm["top1_std"], 7.0710678, rel_tol=1e-6)
    assert (xv["top1"], xv["top1_mean"]) == ([62.5, 70.0], 66.25)
    assert math.isclose(xv["top1_std"], 5.3033009, rel_tol=1e-6)  # 3.75 * sqrt(2)

    md = (out / "ablation.md").read_text()
    # Per-epoch curve: epoch 1 = (20 + 25) / 2, epoch 2 = (40 + 50) / 2.
    assert "| TSM-ViT + avg | 45.0 ± 7.1 | 40.0, 50.0 | 2 | 22.5 / 45.0 |" in md
    assert "| X-ViT + temporal attention | 66.2 ± 5.3 | 62.5, 70.0 | 2 | 33.1 / 66.2 |" in md
    assert "Command: `xvit ablate x`" in md and "Missing" not in md
    assert json.loads((out / "ablation.json").read_text())["rows"][1]["top1_mean"] == 66.25

    # Run again: every run is read back from its metrics.json, nothing is retrained.
    again: list = []
    doc2 = run_ablation(
        None,
        ["train.epochs=2"],
        variants=["tsm-avg", "xvit-ta"],
        seeds=[0, 1],
        out=out,
        train_fn=_fake_train(again),
    )
    assert again == [] and all(r["reused"] for r in doc2["runs"])
    assert [r["top1_mean"] for r in doc2["rows"]] == [45.0, 66.25]


def test_failed_run_leaves_a_marked_cell(tmp_path):
    calls: list = []
    ok = _fake_train(calls)

    def train_fn(cfg, command):
        if cfg.train.seed == 1:
            raise RuntimeError("non-finite loss (nan) at epoch 1")
        return ok(cfg, command)

    doc = run_ablation(None, [], variants=["tsm-avg"], seeds=[0, 1], out=tmp_path, train_fn=train_fn)
    row = doc["rows"][0]
    assert row["top1"] == [40.0, None] and row["n"] == 1 and row["top1_std"] is None
    assert "non-finite" in row["errors"]["1"]
    md = format_markdown(doc)
    assert (
        "| TSM-ViT + avg | 40.0 | 40.0, — | 1 | 20.0 / 40.0 |" in md
        and "Missing runs" in md
        and "tsm-avg seed 1" in md
    )
    with pytest.raises(ValueError, match="unknown variant"):
        run_ablation(None, [], variants=["tsm-max"], seeds=[0], out=tmp_path, train_fn=train_fn)


def test_pair_accuracy_by_hand():
    n = CLASS_NAMES
    recs = [
        # moving right, predicted right: right.
        {"label": n[0], "prediction": n[0], "top": [[n[0], 0.6], [n[1], 0.3], [n[2], 0.1]]},
        # growing, the twin (shrinking) scores higher: wrong.
        {"label": n[2], "prediction": n[3], "top": [[n[3], 0.5], [n[2], 0.4]]},
        # disappearing: wrong class overall (rotating) but above its twin appearing, which is unlisted: right.
        {"label": n[7], "prediction": n[4], "top": [[n[4], 0.5], [n[7], 0.2]]},
        # rotating anticlockwise: neither it nor its twin in the top classes: one half.
        {"label": n[5], "prediction": n[0], "top": [[n[0], 0.9], [n[1], 0.1]]},
        # a failed video is not scored.
        {"label": n[1], "prediction": None, "error": "bad"},
    ]
    assert pair_accuracy(recs, n) == pytest.approx(100 * 2.5 / 4)
    assert pair_accuracy(recs, ["a", "b"]) is None


def test_cli_parses_flags_and_overrides_in_any_order():
    parser = argparse.ArgumentParser(prog="xvit")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(
        [
            "ablate",
            "train.epochs=1",
            "--seeds",
            "0,3",
            "--variants",
            "xvit-ta,vit-avg",
            "optim.lr=0.01",
            "--out",
            "runs/t",
        ]
    )
    args = parse_intermixed(args, add_arguments, "xvit ablate", "items")
    assert args.items == ["train.epochs=1", "optim.lr=0.01"]
    assert (args.seeds, args.variants, args.out) == ("0,3", "xvit-ta,vit-avg", "runs/t")


def test_cli_rejects_bad_seeds_and_variants(capsys):
    parser = argparse.ArgumentParser(prog="xvit")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["ablate", "--seeds", "0,x"])
    assert args.func(args) == 2
    assert "--seeds must be comma-separated integers" in capsys.readouterr().err
    args = parser.parse_args(["ablate", "--variants", "xvit-max"])
    assert args.func(args) == 2 and "unknown variant(s) xvit-max" in capsys.readouterr().err


def test_real_tiny_runs_through_the_engine(tmp_path):
    lists = make_dataset(tmp_path / "data", n_train=8, n_val=4, classes=2)
    overrides = [
        *TINY_MODEL,
        f"data.train_list={lists['train']}",
        f"data.val_list={lists['val']}",
        "data.batch_size=4",
        "data.workers=0",
        "train.epochs=1",
        "train.threads=1",
        "train.tensorboard=false",
        "train.log_every=100",
    ]
    out = tmp_path / "abl"
    doc = run_ablation(None, overrides, variants=["tsm-avg", "xvit-ta"], seeds=[0], out=out)
    for row in doc["rows"]:
        metrics = json.loads((out / row["variant"] / "seed-0" / "metrics.json").read_text())
        assert row["top1"] == [metrics["top1"]] and row["top1_mean"] == metrics["top1"] and row["n"] == 1
        assert metrics["num_videos"] == 4
        assert row["pair_top1"] == [None]  # not the synthetic classes
    assert load_config(out / "tsm-avg" / "seed-0" / "config.yaml").model.name == "tsm_vit_tiny_patch16"
    assert load_config(out / "xvit-ta" / "seed-0" / "config.yaml").model.head == "ta"


def _bright_cells(frame) -> set[tuple[int, int]]:
    rows, cols = (frame.max(-1) >= 150).nonzero()
    return set(zip(rows.tolist(), cols.tolist()))


def test_squares_move_one_way_and_wrap():
    import numpy as np

    from xvit.data.squares import SQUARES_CLASSES, render_squares_clip

    moves = {"moving right": (0, 1), "moving left": (0, -1), "moving down": (1, 0), "moving up": (-1, 0)}
    for label, name in enumerate(SQUARES_CLASSES):
        clip = render_squares_clip(
            label, np.random.default_rng(label), frames=8, size=32, square=8, speed=2, noise=0.0
        )
        assert clip.shape == (8, 32, 32, 3) and clip.dtype == np.uint8
        first = _bright_cells(clip[0])
        assert len(first) == 64  # one 8x8 square, nothing else bright
        dy, dx = moves[name]
        for t in range(1, 8):
            expected = {((r + 2 * dy * t) % 32, (c + 2 * dx * t) % 32) for r, c in first}
            assert _bright_cells(clip[t]) == expected
    with_distractor = render_squares_clip(0, np.random.default_rng(9), noise=0.0, distractors=1)
    static = _bright_cells(with_distractor[0]) & _bright_cells(with_distractor[7])
    assert len(static) >= 64  # the distractor stays bright in every frame


def test_squares_dataset_files_decode_close_to_the_render(tmp_path):
    import numpy as np

    from xvit.data import read_frames
    from xvit.data.squares import SQUARES_CLASSES, render_squares_clip, write_squares_dataset

    lists = write_squares_dataset(tmp_path / "sq", num_train=1, num_val=1, seed=3)
    lines = lists["train"].read_text().split()
    assert lines == [
        "train/00000.mp4",
        "0",
        "train/00001.mp4",
        "1",
        "train/00002.mp4",
        "2",
        "train/00003.mp4",
        "3",
    ]
    assert lists["classnames"].read_text().split("\n")[:4] == list(SQUARES_CLASSES)
    rng = np.random.default_rng([3, 0])
    for i in range(4):
        ref = render_squares_clip(i, rng)
        got = read_frames(tmp_path / "sq" / f"train/{i:05d}.mp4", list(range(8))).permute(0, 2, 3, 1).numpy()
        assert np.abs(got.astype(np.float32) - ref).mean() < 4.0  # crf 10, 4:4:4
