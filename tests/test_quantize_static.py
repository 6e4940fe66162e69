"""`xvit quantize --method static`: ONNX Runtime's static int8 on a tiny X-ViT, calibrated on
real encoded videos; the agreement figures checked against `xvit eval` run separately on the
fp32 and int8 models; the int8 file runs with --runtime onnxruntime only."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from _model_helpers import randomise
from test_engine_utils import make_dataset, one_thread  # noqa: F401

import xvit
from xvit.cli.main import main
from xvit.models import load_model
from xvit.models.quantization import StaticInt8InTorch, StaticInt8Model
from xvit.models.storage import save_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")
onnx = pytest.importorskip("onnx", reason="the onnx extra (pip install 'xvit[onnx]') is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'xvit[onnx]') is not installed")


@pytest.fixture(scope="module")
def static(tmp_path_factory):
    """A tiny X-ViT, its static int8 directory (calibration list with one broken video) and
    the quantize command's output."""
    root = tmp_path_factory.mktemp("qs")
    lists = make_dataset(root / "data", n_train=0, n_val=6, frames=8, size=32, broken_val=1)
    model = xvit.create_model(
        "xvit_tiny_patch16", num_classes=3, num_frames=4, img_size=32, embed_dim=64, depth=2, num_heads=2
    )
    randomise(model, seed=3, std=0.05)
    save_pretrained(model.eval(), root / "ckpt")
    calib = root / "data" / "calib.txt"  # 4 good videos and the broken one
    calib.write_text("".join(lists["val"].read_text().splitlines(keepends=True)[2:]))
    good = root / "data" / "good.txt"
    good.write_text("".join(lists["val"].read_text().splitlines(keepends=True)[:6]))
    out = root / "int8"
    argv = ["quantize", "--checkpoint", str(root / "ckpt"), "--out", str(out), "--method", "static"]
    argv += ["--calib", str(calib), "--list", str(good)]
    return root, out, argv, calib, good


def test_static_round_trip_and_figures(static, capfd):
    root, out, argv, calib, good = static
    assert main(argv) == 0
    captured = capfd.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.int8.onnx",
        "model.safetensors",
        "quantization.json",
    ]
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary left
    recipe = json.loads((out / "quantization.json").read_text())
    assert recipe["method"] == "static" and recipe["onnx"] == "model.int8.onnx" and recipe["format"] == "QDQ"
    cal = recipe["calibration"]
    assert cal["list"] == str(calib) and cal["size"] == 32 and cal["videos_used"] == 4
    assert len(cal["failures"]) == 1 and "broken_0.mp4" in cal["failures"][0]
    assert "calibration video skipped" in captured.err and "broken_0.mp4" in captured.err
    assert "int8 (static) written to" in captured.out and "calibrated on 4 videos" in captured.out
    figures = recipe["figures"]
    assert figures["clips"] == 6 and figures["measured_on"] == str(good)

    # the graph: int8 weights per output channel on exactly the model's Linear layers (not
    # the patch embedding's Conv, not the attention products)
    graph = onnx.load(str(out / "model.int8.onnx")).graph
    inits = {i.name: i for i in graph.initializer}
    int8_weights = [i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 2]
    fp32 = load_model(root / "ckpt")
    linears = [m for m in fp32.modules() if isinstance(m, torch.nn.Linear)]
    assert len(int8_weights) == len(linears)
    dq_of_weights = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert dq_of_weights and all(len(inits[n.input[1]].dims) == 1 for n in dq_of_weights)  # per channel
    assert {i.name for i in int8_weights} <= {n.input[0] for n in dq_of_weights}
    assert not any(n.op_type == "ConvInteger" or n.op_type == "QLinearConv" for n in graph.node)

    # agreement and accuracy recomputed by `xvit eval` on each model separately
    def eval_probs(checkpoint, name, *extra):
        rc = main(
            [
                "eval",
                "--checkpoint",
                str(checkpoint),
                "--list",
                str(good),
                "--views",
                "1x1",
                "--device",
                "cpu",
            ]
            + ["--out", str(root / name), *extra, "data.workers=0"]
        )
        assert rc == 0
        preds = json.loads((root / name / "metrics.json").read_text())["predictions"]
        return np.array([[dict(p["top"])[f"class_{c}"] for c in range(3)] for p in preds])

    p32 = eval_probs(root / "ckpt", "ev32")
    p8 = eval_probs(out, "ev8", "--runtime", "onnxruntime")
    capfd.readouterr()
    agreement = float((p32.argmax(1) == p8.argmax(1)).mean())
    assert figures["top1_agreement"] == pytest.approx(agreement)
    assert figures["max_prob_diff"] == pytest.approx(np.abs(p32 - p8).max(), abs=2e-6)
    assert 0 < figures["max_prob_diff"] < 0.05  # really int8, and close
    labels = np.arange(6) % 3
    assert figures["accuracy_int8"] == pytest.approx(float((p8.argmax(1) == labels).mean()))
    assert figures["accuracy_fp32"] == pytest.approx(float((p32.argmax(1) == labels).mean()))


def test_static_directory_runs_in_onnxruntime_only(static, capfd):
    root, out, argv, _, _ = static
    if not out.exists():
        assert main(argv) == 0
    video = str(root / "data" / "val_000.mp4")
    assert main(["predict", video, "--checkpoint", str(out), "--runtime", "onnxruntime", "--json"]) == 0
    captured = capfd.readouterr()
    assert "model.int8.onnx (static int8)" in captured.err
    probs = {p["index"]: p["prob"] for p in json.loads(captured.out)[0]["predictions"]}
    # the same clip straight through ONNX Runtime
    from xvit.data.annotations import Sample
    from xvit.engine.run.data import build_eval_dataset
    from xvit.engine.run.saved import load_run

    _, cfg = load_run(out)
    clip = build_eval_dataset(cfg, [Sample(path=video, label=0)], (1, 1))[0]["video"]
    session = ort.InferenceSession(str(out / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"video": clip.reshape(1, *clip.shape[-4:]).numpy()})[0][0]
    expected = torch.tensor(logits).softmax(-1)
    for c in range(3):
        assert probs[c] == pytest.approx(float(expected[c]), abs=2e-6)

    loaded = load_model(out)
    assert isinstance(loaded, StaticInt8Model) and loaded.quantization["method"] == "static"
    with pytest.raises(StaticInt8InTorch, match="--runtime onnxruntime"):
        loaded(torch.zeros(1, 3, 4, 32, 32))
    for runtime in ("torch", "openvino"):
        rc = main(["predict", video, "--checkpoint", str(out), "--runtime", runtime])
        err = capfd.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "is an ONNX int8 model" in err[0]
        assert "--runtime onnxruntime" in err[0]
    rc = main(["export", "--checkpoint", str(out), "--format", "onnx", "--out", str(root / "x.onnx")])
    assert rc == 2 and not (root / "x.onnx").exists()
    capfd.readouterr()


def test_static_refuses_low_agreement(static, monkeypatch, capfd):
    import xvit.engine.deploy.quantize as quantize

    root, _, _, calib, _ = static
    real = quantize._static_int8

    class Flipped(torch.nn.Module):  # an int8 model that disagrees on every clip
        def __init__(self, path, config):
            super().__init__()
            self.inner, self.config = real(path, config), config

        def forward(self, x):
            return -self.inner(x)

    monkeypatch.setattr(quantize, "_static_int8", Flipped)
    out = root / "low"
    argv = ["quantize", "--checkpoint", str(root / "ckpt"), "--out", str(out), "--method", "static"]
    assert main([*argv, "--calib", str(calib), "--calib-size", "2"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    # negated logits pick the fp32 class only where the int8 model's least likely class is
    # fp32's most likely one (a near-tie, rare and CPU-dependent): far below the floor
    found = re.search(
        r"int8 agrees with fp32 on ([0-9.]+)% of 32 clips, below --min-agreement 99.00%", err[0]
    )
    assert len(err) == 1 and found and float(found.group(1)) <= 10.0, err
    assert not out.exists() and not [p for p in root.iterdir() if p.name.startswith(".")]


def test_static_bad_input(static, tmp_path, capfd):
    root, _, _, _, good = static
    base = ["quantize", "--checkpoint", str(root / "ckpt"), "--out", str(tmp_path / "o")]
    broken = tmp_path / "broken.txt"
    broken.write_text(f"{root / 'data' / 'broken_0.mp4'} 0\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    cases = [
        ([*base, "--method", "static"], "--method static needs --calib LIST"),
        ([*base, "--method", "static", "--calib", str(tmp_path / "none.txt")], "none.txt: no such file"),
        ([*base, "--calib", str(good)], "--calib applies to --method static"),
        ([*base, "--calib-size", "4"], "--calib-size applies to --method static"),
        (
            [*base, "--method", "static", "--calib", str(good), "--calib-size", "0"],
            "--calib-size must be >= 1",
        ),
        ([*base, "--method", "static", "--calib", str(broken)], "none of its first 1 videos could be read"),
        ([*base, "--method", "static", "--calib", str(empty)], "the list has no videos"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert sorted(tmp_path.iterdir()) == sorted([broken, empty])  # nothing written


def test_static_directory_without_its_onnx_file(static, tmp_path, capfd):
    root, out, argv, _, _ = static
    if not out.exists():
        assert main(argv) == 0
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("config.json", "model.safetensors", "quantization.json"):
        (bad / name).write_bytes((out / name).read_bytes())
    capfd.readouterr()
    assert main(["predict", str(root / "data" / "val_000.mp4"), "--checkpoint", str(bad)]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.int8.onnx is missing" in err[0]
