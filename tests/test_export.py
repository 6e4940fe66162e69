"""`xvit export` (ONNX, torch.export) for every family, and `--runtime` for predict / eval,
checked against the eager model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _model_helpers import randomise
from test_engine_utils import make_dataset, one_thread  # noqa: F401

import xvit
from xvit.cli.main import main
from xvit.engine.deploy.export import ExportError, export_model
from xvit.models.storage import save_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'xvit[onnx]') is not installed")

# every family, and each head at least twice
FAMILIES = [
    ("vit", "avg"),
    ("xvit", "ta"),
    ("xvit_st", "linear"),
    ("tsm_vit", "avg"),
    ("timesformer", "linear"),
    ("joint_vit", "ta"),
    ("vivit_fe", "ta"),
]


def tiny(family: str, head: str, classes: int = 5) -> torch.nn.Module:
    model = xvit.create_model(
        f"{family}_tiny_patch16",
        num_classes=classes,
        num_frames=4,
        img_size=32,
        head=head,
        embed_dim=32,
        depth=2,
        num_heads=2,
    )
    randomise(model, seed=1)
    return model.eval()


def clips(batch: int, seed: int = 5) -> torch.Tensor:
    return torch.randn(batch, 3, 4, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("family", "head"), FAMILIES)
def test_onnx_and_pt2_round_trip(tmp_path, family, head):
    model = tiny(family, head)
    x = clips(3)
    with torch.inference_mode():
        eager = model(x).numpy()
    report = export_model(model, "onnx", tmp_path / "m.onnx", dynamic_batch=True)
    assert report.max_abs_diff <= 1e-4 and report.top1_agreement == 1.0
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]  # batch 3, traced with 2
    np.testing.assert_allclose(got, eager, atol=1e-4, rtol=0)
    export_model(model, "pt2", tmp_path / "m.pt2")  # fixed batch 2
    program = torch.export.load(str(tmp_path / "m.pt2")).module()
    with torch.inference_mode():
        np.testing.assert_allclose(program(x[:2]).numpy(), eager[:2], atol=1e-4, rtol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.pt2"]  # no temporary left


def test_cli_export_prints_the_check_and_fixed_batch_is_fixed(tmp_path, capsys):
    save_pretrained(tiny("xvit", "ta"), tmp_path / "ckpt")
    out = tmp_path / "x.onnx"
    rc = main(["export", "--checkpoint", str(tmp_path / "ckpt"), "--format", "onnx", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and out.is_file()
    assert "via dynamo" in text and "top-1 agreement 100.0%" in text and "checked with onnxruntime" in text
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 4, 32, 32]


def test_failed_export_writes_nothing_and_says_why(tmp_path, monkeypatch, capsys):
    save_pretrained(tiny("vit", "avg"), tmp_path / "ckpt")

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::frobnicate")

    monkeypatch.setattr(torch.onnx, "export", broken)
    out = tmp_path / "x.onnx"
    rc = main(["export", "--checkpoint", str(tmp_path / "ckpt"), "--format", "onnx", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "ckpt"]
    assert len(err.splitlines()) == 1
    assert "dynamo exporter" in err and "TorchScript exporter" in err and "aten::frobnicate" in err


def test_export_that_does_not_match_is_refused(tmp_path, monkeypatch):
    import xvit.engine.deploy.export as export

    monkeypatch.setattr(export, "TOLERANCE", 1e-4)
    with pytest.raises(ExportError, match="differs from the eager one"):
        export_model(tiny("vit", "avg"), "onnx", tmp_path / "m.onnx", tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_export_bad_input(tmp_path, capsys):
    save_pretrained(tiny("vit", "avg"), tmp_path / "ckpt")
    base = ["export", "--checkpoint", str(tmp_path / "ckpt"), "--out"]
    assert main([*base, str(tmp_path / "m.onnx"), "--format", "onnx", "--opset", "17"]) == 2
    assert main([*base, str(tmp_path / "m.txt"), "--format", "onnx"]) == 2
    assert main(["export", "--checkpoint", str(tmp_path / "nope"), "--format", "pt2", "--out", "a.pt2"]) == 2
    assert main([*base, str(tmp_path / "m.pt2"), "--format", "pt2", "--frames", "0"]) == 2
    (tmp_path / "file").write_text("")
    assert main([*base, str(tmp_path / "file" / "m.onnx"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and all(line.startswith("xvit export: error:") for line in err)
    assert "--opset must be >= 18" in err[0] and "written to a .onnx file" in err[1]
    assert "is not a directory" in err[4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "file"]  # nothing written
    # a missing folder is made, once the export is checked
    assert main([*base, str(tmp_path / "new" / "deeper" / "m.onnx"), "--format", "onnx"]) == 0
    assert (tmp_path / "new" / "deeper" / "m.onnx").is_file()
    assert not list(tmp_path.rglob(".tmp-*"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("rt")
    lists = make_dataset(root / "data", n_train=0, n_val=3, frames=8, size=32)
    model = tiny("xvit", "ta", classes=3)
    save_pretrained(model, root / "ckpt")
    return root, lists


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_predict_runtime_matches_torch(videos, runtime, tmp_path, monkeypatch, capsys):
    if runtime == "openvino":
        pytest.importorskip("openvino", reason="the openvino extra is not installed")
    monkeypatch.setenv("XVIT_CACHE", str(tmp_path / "cache"))
    root, lists = videos
    paths = [str(root / "data" / line.split()[0]) for line in lists["val"].read_text().splitlines()]
    base = ["predict", *paths, "--checkpoint", str(root / "ckpt"), "--json", "--topk", "3", "--device", "cpu"]
    assert main(base) == 0
    ref = json.loads(capsys.readouterr().out)
    assert main([*base, "--runtime", runtime]) == 0
    captured = capsys.readouterr()
    got = json.loads(captured.out)
    assert "exported to the cache" in captured.err  # first use: exported and checked
    for a, b in zip(ref, got):
        assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
        for pa, pb in zip(a["predictions"], b["predictions"]):
            assert abs(pa["prob"] - pb["prob"]) <= 1e-4
    assert main([*base, "--runtime", runtime]) == 0
    assert "using the cached export" in capsys.readouterr().err  # second use: the cache


def test_eval_runtime_matches_torch(videos, tmp_path, monkeypatch):
    monkeypatch.setenv("XVIT_CACHE", str(tmp_path / "cache"))
    root, lists = videos
    ckpt = root / "ckpt"
    # an export next to the checkpoint is used as it is
    assert (
        main(
            ["export", "--checkpoint", str(ckpt), "--format", "onnx", "--dynamic-batch"]
            + ["--out", str(ckpt / "model.onnx")]
        )
        == 0
    )
    figures = {}
    for runtime in ("torch", "onnxruntime"):
        out = tmp_path / runtime
        args = ["eval", "--checkpoint", str(ckpt), "--list", str(lists["val"]), "--views", "2x1"]
        assert (
            main([*args, "--device", "cpu", "--runtime", runtime, "--out", str(out), "data.workers=0"]) == 0
        )
        figures[runtime] = json.loads((out / "metrics.json").read_text())
    assert not (tmp_path / "cache").exists()  # DIR/model.onnx was used
    a, b = figures["torch"], figures["onnxruntime"]
    assert a["top1"] == b["top1"]
    (ckpt / "model.onnx").unlink()
