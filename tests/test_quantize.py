"""`xvit quantize`: int8 dynamic quantisation, measured against fp32, accepted by load_model,
predict and eval; refused below --min-agreement."""

from __future__ import annotations

import json

import pytest
import torch
from _model_helpers import randomise
from test_engine_utils import make_dataset, one_thread  # noqa: F401

import xvit
from xvit.cli.main import main
from xvit.models import load_model
from xvit.models.storage import save_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("q")
    lists = make_dataset(root / "data", n_train=0, n_val=4, frames=8, size=32)
    model = xvit.create_model(
        "xvit_tiny_patch16", num_classes=3, num_frames=4, img_size=32, embed_dim=64, depth=2, num_heads=2
    )
    randomise(model, seed=3, std=0.05)
    save_pretrained(model.eval(), root / "ckpt")
    return root, lists


def test_quantize_writes_a_model_load_model_and_eval_accept(ckpt, tmp_path, capsys):
    root, lists = ckpt
    out = tmp_path / "int8"
    rc = main(
        ["quantize", "--checkpoint", str(root / "ckpt"), "--out", str(out), "--list", str(lists["val"])]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    recipe = json.loads((out / "quantization.json").read_text())
    assert recipe["method"] == "dynamic" and recipe["figures"]["clips"] == 4
    assert recipe["figures"]["top1_agreement"] >= 0.99 and "accuracy_int8" in recipe["figures"]
    assert "top-1 agreement with fp32 100.00% on 4 clips" in text
    fp32, int8 = load_model(root / "ckpt"), load_model(out)
    assert int8.quantization["method"] == "dynamic"
    # every Linear is a dynamically quantised one, and the answers stay close to fp32
    assert not any(type(m) is torch.nn.Linear for m in int8.modules())
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in int8.modules())
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b = fp32(x), int8(x)
    assert (a.softmax(-1) - b.softmax(-1)).abs().max() < 0.05
    assert not torch.equal(a, b)  # really quantised
    rc = main(
        ["eval", "--checkpoint", str(out), "--list", str(lists["val"]), "--views", "1x1"]
        + ["--device", "cpu", "--out", str(tmp_path / "ev"), "data.workers=0"]
    )
    assert rc == 0 and json.loads((tmp_path / "ev" / "metrics.json").read_text())["num_videos"] == 4
    # int8 runs in torch only
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(out),
                "--list",
                str(lists["val"]),
                "--runtime",
                "onnxruntime",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "ev2"),
            ]
        )
        == 2
    )
    assert "int8 quantised model" in capsys.readouterr().err


def test_quantize_refuses_low_agreement_unless_forced(ckpt, tmp_path, monkeypatch, capsys):
    import xvit.engine.deploy.quantize as quantize

    class Flipped(torch.nn.Module):  # a "quantised" model that disagrees on every clip
        def __init__(self, model):
            super().__init__()
            self.model, self.config = model, model.config

        def forward(self, x):
            return -self.model(x)

    monkeypatch.setattr(quantize, "apply_quantization", lambda model, recipe: Flipped(model))
    root, _ = ckpt
    out = tmp_path / "int8"
    assert main(["quantize", "--checkpoint", str(root / "ckpt"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "below --min-agreement 99.00%" in err and len(err.splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert main(["quantize", "--checkpoint", str(root / "ckpt"), "--out", str(out), "--force"]) == 0
    assert json.loads((out / "quantization.json").read_text())["figures"]["top1_agreement"] < 0.99


def test_quantize_bad_input(ckpt, tmp_path, capsys):
    root, _ = ckpt
    base = ["quantize", "--checkpoint", str(root / "ckpt")]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main([*base, "--out", str(tmp_path / "full")]) == 2
    assert main([*base, "--out", str(tmp_path / "a"), "--min-agreement", "1.5"]) == 2
    assert main(["quantize", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "b")]) == 2
    (tmp_path / "bad").mkdir()
    save_pretrained(load_model(root / "ckpt"), tmp_path / "bad")
    (tmp_path / "bad" / "quantization.json").write_text('{"method": "magic"}')
    assert main(["predict", "x.mp4", "--checkpoint", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "not an empty directory" in err[0] and "--min-agreement must be in [0, 1]" in err[1]
    assert "unknown quantisation method 'magic'" in err[-1]


def test_quantize_refuses_a_list_with_labels_the_model_cannot_produce(ckpt, tmp_path, capsys):
    root, lists = ckpt
    wide = tmp_path / "wide.txt"
    rows = lists["val"].read_text().splitlines()
    wide.write_text("\n".join([*rows, f"{(lists['val'].parent / rows[0].split()[0])} 7"]) + "\n")
    out = tmp_path / "int8"
    assert main(["quantize", "--checkpoint", str(root / "ckpt"), "--out", str(out), "--list", str(wide)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "label 7" in err and "3 classes" in err, err
    assert not out.exists()


def test_quantize_counts_unreadable_videos_as_eval_does(ckpt, tmp_path, capsys):
    """A list with an unreadable video: the agreement is over the clips both models saw, the
    accuracies count the unreadable one as wrong (the figure `xvit eval` prints), and
    quantization.json names it; each video is decoded once (one warning per bad file)."""
    root, _ = ckpt
    lists = make_dataset(tmp_path / "data", n_train=0, n_val=4, frames=8, size=32, broken_val=1)
    out = tmp_path / "int8"
    rc = main(
        ["quantize", "--checkpoint", str(root / "ckpt"), "--out", str(out), "--list", str(lists["val"])]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    figures = json.loads((out / "quantization.json").read_text())["figures"]
    assert figures["clips"] == 4 and len(figures["failed"]) == 1 and "broken" in figures["failed"][0]["path"]
    assert "1 unreadable" in captured.out and "of 5 videos" in captured.out
    assert sum("broken" in line for line in captured.err.splitlines()) <= 1
    rc = main(
        ["eval", "--checkpoint", str(root / "ckpt"), "--list", str(lists["val"]), "--views", "1x1"]
        + ["--device", "cpu", "--out", str(tmp_path / "ev"), "data.workers=0"]
    )
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert rc == 1 and metrics["num_failed"] == 1
    assert figures["accuracy_fp32"] == pytest.approx(
        metrics["top1"] / 100 if metrics["top1"] > 1 else metrics["top1"]
    )
