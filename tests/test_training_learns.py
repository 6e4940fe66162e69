"""A first run learns: `xvit train` on a user's list with flags only, and with the paper's
temporal-attention head, reaches an accuracy far above chance on a small temporal task (real
H.264 files); the recipe it picks is the one that fits how the model starts and is said in
its first lines and in config.yaml; a collapse is reported while it happens and stops the
run, with the checkpoint kept."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_engine_utils import one_thread  # noqa: F401

from xvit.cli.main import main
from xvit.data import cores
from xvit.data.squares import write_squares_dataset
from xvit.engine.run.config import load_config, recipe_lines
from xvit.engine.run.data import mirrored_class
from xvit.engine.run.schema import OptimConfig
from xvit.engine.train.collapse import CollapseWatch, collapse_signs
from xvit.engine.train.optim import build_optimizer
from xvit.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")

# Four directions of a 6-pixel square moving one 4-pixel patch per frame on 16x16 frames:
# no single frame tells the class, and a horizontal flip swaps two of them.
TINY = [
    "--model",
    "xvit_tiny_patch16",
    "--num-frames",
    "4",
    "--img-size",
    "16",
    "--batch-size",
    "8",
    "--workers",
    "0",
    "model.overrides.embed_dim=64",
    "model.overrides.depth=2",
    "model.overrides.num_heads=2",
    "model.overrides.patch_size=4",
    "train.tensorboard=false",
]


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    root = tmp_path_factory.mktemp("squares")
    return write_squares_dataset(
        root, num_train=32, num_val=12, frames=4, size=16, square=6, speed=4, noise=2.0
    )


def _train(squares, out, *extra):
    return main(
        [
            "train",
            "--train-list",
            str(squares["train"]),
            "--val-list",
            str(squares["val"]),
            *TINY,
            "--out",
            str(out),
            *extra,
        ]
    )


@pytest.mark.parametrize("head", ["avg", "ta"])
def test_flags_only_run_on_a_list_learns(squares, tmp_path, capsys, head):
    out = tmp_path / head
    assert _train(squares, out, "--head", head, "--epochs", "12") == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    first = printed.splitlines()[:4]
    assert any(line.startswith("recipe: from scratch (model.pretrained is null): adamw") for line in first)
    assert "data.hflip off: class 'moving right'" in printed  # flips would swap right and left
    top1 = json.loads((out / "metrics.json").read_text())["top1"]
    assert top1 >= 75.0, f"{head}: {top1}% (chance 25%)"
    text = (out / "config.yaml").read_text()
    assert text.startswith("# recipe: from scratch")
    assert "hflip: false  # off: class names say a direction" in text
    assert "name: adamw  # from-scratch recipe" in text


def test_a_collapse_is_reported_and_stops_the_run(squares, tmp_path, capsys):
    out = tmp_path / "hot"
    rc = _train(squares, out, "--head", "avg", "--epochs", "8", "--lr", "0.5", "train.collapse_patience=2")
    captured = capsys.readouterr()
    assert rc == 1, captured.err
    assert "warning: epoch" in captured.out and (
        "collapsed" in captured.out or "not learning" in captured.out
    )
    assert "try a lower --lr (now 0.5)" in captured.out
    err = captured.err.strip()
    assert err.count("\n") == 0 and "stopped" in err and "train.collapse_patience=0" in err
    assert "Traceback" not in captured.err
    assert list((out / "checkpoints").glob("*")), "the epoch's checkpoint is kept"
    assert not (out / "metrics.json").exists()  # no result presented for a collapsed run
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "collapse" for e in events)


def test_recipe_follows_how_the_model_starts(tmp_path):
    lists = [("--train-list", "data.train_list=t.txt")]
    scratch = load_config(None, [], lists)
    assert (scratch.recipe, scratch.optim.name, scratch.optim.base_lr, scratch.model.head_drop_rate) == (
        "scratch",
        "adamw",
        1e-3,
        0.0,
    )
    tuned = load_config(None, [], [*lists, ("--pretrained", "model.pretrained=in21k")])
    assert (tuned.recipe, tuned.optim.name, tuned.optim.base_lr, tuned.optim.warmup_epochs) == (
        "fine-tune",
        "sgd",
        0.03,
        5.0,
    )
    assert recipe_lines(tuned)[0].startswith("recipe: fine-tuning in21k: sgd")
    # a file naming its own optimiser keeps it; from random weights the run is warned
    released = load_config("configs/ssv2_xvit_b16_16.yaml")
    assert released.optim.name == "sgd" and released.optim.base_lr == 0.03
    lines = recipe_lines(released, 0.03, 64)
    assert len(lines) == 2 and lines[1].startswith("warning: optim.name=sgd") and "--pretrained" in lines[1]
    # a file without an optimiser gets the from-scratch one; a user's key wins over both
    path = tmp_path / "mine.yaml"
    path.write_text("data:\n  num_frames: 4\n")
    mine = load_config(path, ["optim.weight_decay=0.1"])
    assert mine.optim.name == "adamw" and mine.optim.weight_decay == 0.1
    assert mine.sources["optim.name"].startswith("from-scratch recipe")


def test_the_temporal_attention_head_trains_at_its_own_rate():
    model = create_model(
        "xvit_tiny_patch16", num_classes=4, num_frames=4, img_size=16, patch_size=4, head="ta"
    )
    opt = build_optimizer(OptimConfig(name="adamw"), model, 1e-3)
    rates = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert rates[id(p)] == pytest.approx(1e-4 if name.startswith("head.") else 1e-3), name
    assert opt.param_groups[0]["lr"] == 1e-3  # the logged rate is the backbone's
    opt = build_optimizer(OptimConfig(name="adamw", head_lr_scale=1.0), model, 1e-3)
    assert {g["lr"] for g in opt.param_groups} == {1e-3}
    avg = create_model(
        "xvit_tiny_patch16", num_classes=4, num_frames=4, img_size=16, patch_size=4, head="avg"
    )
    assert {g["lr"] for g in build_optimizer(OptimConfig(name="adamw"), avg, 1e-3).param_groups} == {1e-3}


def test_collapse_signs_and_verdicts():
    k = 4
    same = torch.tensor([[2.0, 0.0, 0.0, 0.0]]).repeat(20, 1)
    labels = torch.arange(20) % k
    signs = collapse_signs(math.log(k), k, same, labels, ["a", "b", "c", "d"])
    assert len(signs) == 3 and "100% of the validation videos predicted as 'a'" in signs[1]
    assert signs[0].startswith("training loss 1.386 at chance (ln 4 = 1.386)")
    # a loss well above ln K is worse than chance, and said so
    assert collapse_signs(1.6, k)[0].startswith("training loss 1.600 above chance")
    spread = torch.nn.functional.one_hot(labels, k).float() * 5
    assert collapse_signs(0.2, k, spread, labels) == []
    # the first epochs of every run look like this: not judged until a quarter of the run
    watch = CollapseWatch(num_classes=k, epochs=12, warmup_epochs=1, patience=2)
    assert watch.observe(1, signs, math.log(k), 25.0) is None
    assert watch.observe(2, signs, math.log(k), 25.0) is None
    assert watch.observe(3, signs, math.log(k), 25.0) == "not learning" and not watch.should_stop
    assert watch.observe(4, signs, math.log(k), 25.0) == "not learning" and watch.should_stop
    watch = CollapseWatch(num_classes=k, epochs=12, warmup_epochs=1, patience=2)
    assert watch.observe(1, [], 0.5, 80.0) is None  # learned
    assert watch.observe(2, signs, math.log(k), 25.0) == "collapsed"
    assert watch.observe(3, [], 0.5, 80.0) is None and watch.in_a_row == 0


def test_direction_classes_and_default_workers(monkeypatch):
    assert (
        mirrored_class(["Pushing something from left to right", "Lifting"])
        == "Pushing something from left to right"
    )
    assert mirrored_class(["turning_clockwise"]) == "turning_clockwise"
    assert mirrored_class(["moving up", "moving down", "brighter"]) is None  # a flip keeps up and down
    assert mirrored_class(["copyright", "leftover"]) is None  # whole words only
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert cores.default_workers() == 1
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert cores.default_workers() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert cores.default_workers() == 1
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert cores.default_workers() == 0
