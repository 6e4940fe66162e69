"""`xvit train`: flags and overrides, bad configs, and the run directory it leaves."""

from __future__ import annotations

import json

import pytest
import torch
from test_engine_utils import TINY_MODEL, make_dataset, one_thread  # noqa: F401

import xvit
from xvit.cli._common import parse_intermixed, split_items
from xvit.cli.main import build_parser, main
from xvit.cli.train import add_arguments, flag_overrides
from xvit.engine.run.config import load_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_flags_and_overrides_resolve():
    args = build_parser().parse_args(
        [
            "train",
            "optim.weight_decay=0.2",
            "--model",
            "vit_tiny_patch16",
            "--head",
            "ta",
            "--epochs",
            "3",
            "--lr",
            "0.01",
            "--batch-size",
            "4",
            "--num-frames",
            "4",
            "--img-size",
            "48",
            "--workers",
            "0",
            "--seed",
            "7",
            "--out",
            "runs/x",
            "--fresh",
        ]
    )
    args = parse_intermixed(args, add_arguments, "xvit train", "items")  # flags after overrides
    config, overrides = split_items(args.items)
    cfg = load_config(config, overrides, flag_overrides(args))
    assert config is None and args.fresh
    assert (cfg.model.name, cfg.model.head, cfg.train.epochs, cfg.optim.lr) == (
        "vit_tiny_patch16",
        "ta",
        3,
        0.01,
    )
    assert (cfg.data.batch_size, cfg.data.num_frames, cfg.data.img_size, cfg.data.workers) == (4, 4, 48, 0)
    assert (cfg.train.seed, cfg.train.out, cfg.optim.weight_decay) == (7, "runs/x", 0.2)


def test_config_then_overrides_order():
    assert split_items(["a.yaml", "x.y=1"]) == ("a.yaml", ["x.y=1"])
    with pytest.raises(ValueError, match="unexpected argument"):
        split_items(["x.y=1", "a.yaml"])


def test_misspelt_key_is_an_error_naming_the_closest(tmp_path, capsys):
    assert main(["train", "optim.lrr=0.1", "--out", str(tmp_path / "r")]) == 2
    assert "did you mean 'optim.lr'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  num_frame: 8\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "'data.num_frame'" in err and "did you mean 'data.num_frames'" in err and str(bad) in err
    assert not (tmp_path / "r").exists()


def test_run_directory_layout(tmp_path, capsys):
    lists = make_dataset(tmp_path / "data", n_train=8, n_val=3)
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            *TINY_MODEL,
            "--train-list",
            str(lists["train"]),
            "--val-list",
            str(lists["val"]),
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "epoch 2/2" in printed and "validation (1x1 views, 3 videos, 0 failed): top1" in printed

    assert load_config(out / "config.yaml").data.train_list == str(lists["train"])
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("top1", "top5", "mean_class_accuracy", "num_videos", "num_failed"):
        assert key in metrics
    assert metrics["num_videos"] == 3 and 0 <= metrics["top1"] <= metrics["top5"] <= 100
    card = (out / "README.md").read_text()  # the model card carries the run's final figures
    assert (
        card.startswith("---\nlibrary_name: xvit") and f"| top-1 accuracy | {metrics['top1']:.2f} |" in card
    )
    events = [json.loads(line)["event"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert events[0] == "start" and "train" in events and "val" in events and events[-1] == "end"
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002.pt", "step_00000004.pt"]

    model = xvit.load_model(out)  # model.safetensors + config.json
    assert model.config.class_names == ["class_0", "class_1", "class_2"]
    assert model.config.num_frames == 4 and model(torch.zeros(1, 3, 4, 32, 32)).shape == (1, 3)


def test_missing_weights_or_list_is_an_error_not_a_traceback(tmp_path, capsys):
    lists = make_dataset(tmp_path / "data", n_train=4, n_val=2)
    common = [*TINY_MODEL, "--val-list", str(lists["val"]), "--epochs", "1", "--workers", "0"]
    missing = tmp_path / "no-such-weights.safetensors"
    rc = main(
        [
            "train",
            *common,
            "--train-list",
            str(lists["train"]),
            "--pretrained",
            str(missing),
            "--out",
            str(tmp_path / "a"),
        ]
    )
    assert rc == 2 and str(missing) in capsys.readouterr().err
    rc = main(["train", *common, "--train-list", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2 and "xvit train: error:" in err and "nope.txt" in err
