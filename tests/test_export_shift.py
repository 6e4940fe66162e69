"""The out-of-place channel shift of exported graphs: bit-identical to the in-place eager one
for every mixing configuration, and no ScatterND in the exported ONNX graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _model_helpers import randomise
from test_engine_utils import one_thread  # noqa: F401

import xvit
import xvit.models.attention as attention_module
from xvit.models.attention import channel_groups, exporting, shift_channels, shift_channels_

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_shift(x: torch.Tensor, groups) -> torch.Tensor:
    """Frame by frame, channel group by channel group (zeros where t + offset is outside)."""
    out = x.clone()
    length = x.shape[1]
    for start, end, offset in groups:
        for t in range(length):
            s = t + offset
            out[:, t, ..., start:end] = x[:, s, ..., start:end] if 0 <= s < length else 0
    return out


@pytest.mark.parametrize("split", ["released", "even"])
@pytest.mark.parametrize("window", [1, 2, 3])
@pytest.mark.parametrize("length", [1, 2, 5])
def test_out_of_place_shift_equals_in_place_and_the_reference(split, window, length):
    channels = 48
    groups = channel_groups(channels, window, split, shift_div=8)
    x = torch.randn(3, length, 4, channels, generator=torch.Generator().manual_seed(window * 10 + length))
    in_place = shift_channels_(x.clone(), groups)
    out_of_place = shift_channels(x, groups)
    assert torch.equal(out_of_place, in_place)
    assert torch.equal(out_of_place, reference_shift(x, groups))  # offsets beyond the clip are zeros
    assert torch.equal(x, x.clone()) and out_of_place.data_ptr() != x.data_ptr()


def test_out_of_place_shift_edge_groups_and_bad_groups():
    x = torch.randn(2, 4, 10)
    assert torch.equal(shift_channels(x, []), x)
    assert shift_channels(x, []).data_ptr() != x.data_ptr()
    whole = [(0, 10, 1)]  # every channel moves
    assert torch.equal(shift_channels(x, whole), shift_channels_(x.clone(), whole))
    with pytest.raises(ValueError, match="overlap"):
        shift_channels(x, [(0, 4, 1), (3, 6, -1)])
    with pytest.raises(ValueError, match="exceed"):
        shift_channels(x, [(8, 12, 1)])
    assert not exporting()  # eager


CONFIGS = [
    dict(attention="mixing"),
    dict(attention="mixing", mix_split="even"),
    dict(attention="mixing", mix_window=2, mix_split="even"),
    dict(attention="mixing", mix_window=2, shift_div=8),
    dict(attention="mixing", mix_window=3, shift_div=8),  # offsets beyond a 2-frame segment
    dict(attention="mixing", segment_len=2),
    dict(attention="mixing", mix_window=3, segment_len=2, mix_split="even"),
    dict(attention="mixing", mix_queries=True, mix_layers=[1]),
    dict(attention="summary", segment_len=2),
    dict(attention="tsm"),
    dict(attention="tsm", segment_len=2),
]


def tiny(**kw) -> torch.nn.Module:
    model = xvit.create_model(
        "vit_tiny_patch16", num_classes=5, num_frames=4, img_size=32, embed_dim=48, depth=2, num_heads=2, **kw
    )
    randomise(model, seed=3)
    return model.eval()


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_export_path_gives_bit_identical_logits(monkeypatch, kw):
    model = tiny(**kw)
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        eager = model(x)
        monkeypatch.setattr(attention_module, "exporting", lambda: True)
        exported_form = model(x)
    assert torch.equal(exported_form, eager)


@pytest.mark.parametrize("kw", [CONFIGS[0], CONFIGS[6], CONFIGS[9]], ids=["mixing", "even-w3-seg2", "tsm"])
def test_onnx_graph_has_no_scatter_and_matches_eager(tmp_path, kw):
    onnx = pytest.importorskip("onnx", reason="the onnx extra (pip install 'xvit[onnx]') is not installed")
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from xvit.engine.deploy.export import export_model

    model = tiny(**kw)
    export_model(model, "onnx", tmp_path / "m.onnx", dynamic_batch=True)
    graph = onnx.load(str(tmp_path / "m.onnx"))
    ops = {n.op_type for n in graph.graph.node}
    for f in graph.functions:
        ops |= {n.op_type for n in f.node}
    assert "ScatterND" not in ops and "ScatterElements" not in ops
    assert "Concat" in ops
    x = torch.randn(3, 3, 4, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        eager = model(x).numpy()
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, eager, atol=1e-5, rtol=0)


def test_torchscript_exporter_takes_the_out_of_place_form_too(tmp_path):
    onnx = pytest.importorskip("onnx", reason="the onnx extra (pip install 'xvit[onnx]') is not installed")
    import warnings

    model = tiny(attention="mixing")
    x = torch.randn(2, 3, 4, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(tmp_path / "ts.onnx"), dynamo=False, opset_version=18)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "ts.onnx")).graph.node}
    assert "ScatterND" not in ops and "Concat" in ops
