"""A NaN or infinite loss stops the run with a clear message; the last good checkpoint stays.
Non-finite logits in evaluation and prediction are failures, never numbers."""

from __future__ import annotations

import json

import pytest
import torch
from test_engine_utils import TINY_MODEL, make_dataset, one_thread  # noqa: F401
from torch import nn

from xvit.engine.run.config import load_config
from xvit.engine.run.data import build_datasets
from xvit.engine.run.model import build_model
from xvit.engine.train import checkpoint as ckpt
from xvit.engine.train.loop import Trainer
from xvit.engine.train.nonfinite import NonFiniteLossError

pytestmark = pytest.mark.usefixtures("one_thread")


class PoisonAt(nn.Module):
    """The real model, except that forward call number ``at`` (1-based) returns ``value``."""

    def __init__(self, model: nn.Module, at: int, value: float) -> None:
        super().__init__()
        self.model, self.at, self.value, self.calls = model, at, value, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.model(x)
        return out * self.value if self.calls == self.at else out


class PoisonEvery(nn.Module):
    """The real model, except that every ``every``-th forward call returns ``value`` times it."""

    def __init__(self, model: nn.Module, every: int, value: float) -> None:
        super().__init__()
        self.model, self.every, self.value, self.calls = model, every, value, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.model(x)
        return out * self.value if self.calls % self.every == 0 else out


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, value):
    lists = make_dataset(tmp_path / "data", n_train=12, n_val=2)
    cfg = load_config(
        None,
        [
            *TINY_MODEL,
            f"data.train_list={lists['train']}",
            "train.epochs=2",
            "data.batch_size=2",
            "data.workers=0",
            "train.checkpoint_every=2",
            "train.tensorboard=false",
            f"train.out={tmp_path / 'run'}",
        ],
    )
    data = build_datasets(cfg, (1, 1))
    model = PoisonAt(build_model(cfg, len(data.class_names)), at=5, value=value)
    trainer = Trainer(cfg, data=data, model=model, echo=False)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.run()
    msg = str(err.value)
    assert "non-finite loss" in msg and "step 5" in msg and "step_00000004.pt" in msg

    saved = ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [p.name for p in saved] == ["step_00000002.pt", "step_00000004.pt"]
    state = ckpt.load_checkpoint(saved[-1])
    assert state["global_step"] == 4
    # the non-finite loss is found on the device at the next check (here the step-6
    # checkpoint), before anything is written: the checkpoint holds the finite step-4 weights
    for k, v in state["model"].items():
        assert torch.isfinite(v).all() if v.is_floating_point() else True, k
    assert not (tmp_path / "run" / "model.safetensors").exists()


# ------------------------------------------------- non-finite logits in evaluation and prediction


def _strict_json(text: str):
    def refuse(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _broken_model(directory, where: str, value: float):
    import xvit

    model = xvit.create_model(
        "xvit_tiny_patch16",
        num_classes=3,
        num_frames=4,
        img_size=32,
        head="avg",
        embed_dim=64,
        depth=2,
        num_heads=2,
        class_names=["class_0", "class_1", "class_2"],
    )
    with torch.no_grad():
        dict(model.named_parameters())[where].view(-1)[0] = value
    model.save_pretrained(directory)
    return directory


@pytest.mark.parametrize(
    "where, value",
    [
        ("patch_embed.proj.weight", float("nan")),  # every logit NaN
        ("head.fc.bias", float("inf")),  # one class +inf: the softmax is NaN
    ],
)
def test_eval_counts_non_finite_logits_as_failed(tmp_path, capsys, where, value):
    from xvit.cli.main import main

    lists = make_dataset(tmp_path / "data", n_train=1, n_val=3)
    ckpt_dir = _broken_model(tmp_path / "model", where, value)
    out = tmp_path / "eval"
    rc = main(
        [
            "eval",
            "--checkpoint",
            str(ckpt_dir),
            "--list",
            str(lists["val"]),
            "--views",
            "1x1",
            "--workers",
            "0",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1
    summary = captured.out.splitlines()[0]
    assert summary.endswith("failed 3") and "nan" not in summary.lower()
    assert captured.out.count("non-finite logits") == 3  # one failure line per video
    errors = [line for line in captured.err.splitlines() if "non-finite" in line]
    assert len(errors) == 1 and errors[0].startswith("error: 3 of 3 videos had non-finite logits")
    m = _strict_json((out / "metrics.json").read_text())  # no NaN / Infinity anywhere
    assert (m["num_videos"], m["num_failed"], m["num_non_finite"]) == (3, 3, 3)
    assert m["top1"] == 0.0 and m["top5"] == 0.0 and m["mean_class_accuracy"] == 0.0
    assert all("non-finite logits" in f["error"] for f in m["failed"])


def test_eval_mixes_good_and_non_finite_videos(tmp_path):
    """Only the videos with non-finite logits fail; the others are scored as usual."""
    import xvit
    from xvit.engine.run.config import load_config
    from xvit.engine.run.data import build_eval_dataset, read_split
    from xvit.engine.run.scoring import score_dataset

    lists = make_dataset(tmp_path / "data", n_train=1, n_val=4)
    cfg = load_config(None, [*TINY_MODEL, "data.workers=0"])
    samples, _, _ = read_split(cfg, str(lists["val"]))
    dataset = build_eval_dataset(cfg, samples, (1, 1))
    model = xvit.create_model(
        "xvit_tiny_patch16",
        num_classes=3,
        num_frames=4,
        img_size=32,
        head="avg",
        embed_dim=64,
        depth=2,
        num_heads=2,
    )
    poisoned = PoisonEvery(model, every=2, value=float("nan"))  # the 2nd and 4th video
    scores = score_dataset(poisoned, dataset, batch_size=1)
    assert scores.indices == [0, 2]
    assert [f["index"] for f in scores.failures] == [1, 3] and scores.num_non_finite == 2
    assert all(
        f["error"].endswith("non-finite logits (NaN or infinity in the model output)")
        and samples[f["index"]].path in f["error"]
        for f in scores.failures
    )
    assert [f["label"] for f in scores.failures] == [samples[1].label, samples[3].label]
    assert torch.isfinite(scores.view_logits).all() and scores.labels.tolist() == [0, 2]
    expected = model.eval()(dataset[0]["video"][None])
    assert torch.allclose(scores.view_logits[0, 0], expected[0], atol=1e-5)


def test_predict_reports_non_finite_logits(tmp_path, capsys):
    from xvit.cli.main import main

    lists = make_dataset(tmp_path / "data", n_train=1, n_val=2)
    ckpt_dir = _broken_model(tmp_path / "model", "patch_embed.proj.weight", float("nan"))
    videos = [str(lists["val"].parent / "val_000.mp4"), str(lists["val"].parent / "val_001.mp4")]
    rc = main(["predict", *videos, "--checkpoint", str(ckpt_dir)])
    captured = capsys.readouterr()
    assert rc == 1 and captured.out == ""  # no "nan" answer
    lines = captured.err.strip().splitlines()
    assert [line.split(": ", 2)[:2] for line in lines] == [["error", v] for v in videos]
    assert all("non-finite logits" in line for line in lines)
