"""`--precision auto|fp32|bf16|int8` for predict and eval: the models as run, the measured
choice (timer replaced, so the choice is deterministic), the cache and its key, bad input."""

from __future__ import annotations

import json
import os

import pytest
import torch
from _model_helpers import randomise
from test_engine_utils import make_dataset, one_thread  # noqa: F401
from torch import nn

import xvit
from xvit.cli.main import main
from xvit.engine.deploy import precision_auto as pa
from xvit.models import load_model
from xvit.models.hardware import MATRIX_ISA
from xvit.models.storage import save_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")

SPEEDS = {"fp32": 0.30, "bf16": 0.20, "int8": 0.10}  # seconds per call the fake timer reports


def tiny(seed: int = 3, **kw) -> nn.Module:
    model = xvit.create_model(
        "xvit_tiny_patch16",
        num_classes=3,
        num_frames=4,
        img_size=32,
        embed_dim=64,
        depth=2,
        num_heads=2,
        **kw,
    )
    randomise(model, seed=seed, std=0.05)
    return model.eval()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XVIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "precision.json"


@pytest.fixture
def timer(monkeypatch):
    """The timer replaced: each precision takes SPEEDS[p] seconds; records what was timed."""
    calls: list[str] = []
    speeds = dict(SPEEDS)

    def fake(precision, fn):
        fn()
        calls.append(precision)
        return speeds[precision]

    monkeypatch.setattr(pa, "time_call", fake)
    monkeypatch.setattr(pa, "slow_precision", lambda dtype, device: None)  # as on a bf16 CPU
    return calls, speeds


class Negated(nn.Module):
    """A broken "quantiser": the model's logits negated (top-1 never agrees with fp32)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return -self.model(x)


def test_auto_picks_the_fastest_agreeing_and_caches_it(cache, timer):
    calls, speeds = timer
    model, lines = tiny(), []
    runner, choice = pa.resolve_precision(model, "auto", "cpu", min_agreement=0.0, log=lines.append)
    assert choice.precision == "int8" and not choice.cached
    assert not any(type(m) is nn.Linear for m in runner.modules())  # really the int8 model
    assert sorted(calls) == sorted(["fp32", "bf16", "int8"] * pa.ROUNDS)  # interleaved rounds
    assert calls[:3] == ["fp32", "bf16", "int8"] and calls[3:6] == ["bf16", "int8", "fp32"]
    (line,) = lines
    assert line.startswith("precision auto: int8 (measured now, cached in ")
    assert "clips/s fp32 3.33, bf16 5, int8 10" in line and "8 random + 0 real clips" in line
    figures = choice.figures
    assert figures["fp32"]["top1_agreement"] == 1.0 and figures["fp32"]["max_prob_diff"] == 0.0

    # the file: one entry, keyed by the machine, torch and the model
    data = json.loads(cache.read_text())
    (entry,) = data["entries"].values()
    assert entry["key"]["cpu"] == pa.machine_key(torch.device("cpu"))["cpu"]
    assert entry["key"]["torch"] == torch.__version__ and set(entry["key"]["flags"]) <= {
        f for f, _ in MATRIX_ISA
    }
    assert entry["key"]["model"] == pa.model_key(model)
    assert [p.name for p in cache.parent.iterdir()] == ["precision.json"]  # no temporary left

    # read back: no measuring, same figures; the threshold applies to the cached figures
    calls.clear()
    speeds.update(fp32=0.01)  # would now win, if it were measured again
    lines.clear()
    _, again = pa.resolve_precision(model, "auto", "cpu", min_agreement=0.0, log=lines.append)
    assert calls == [] and again.cached and again.precision == "int8" and again.figures == figures
    assert "(from the cache " in lines[0]

    # another model (same shape, other config) is measured again
    _, other = pa.resolve_precision(tiny(head="avg"), "auto", "cpu", min_agreement=0.0, log=lines.append)
    assert len(calls) == 3 * pa.ROUNDS and other.precision == "fp32" and not other.cached
    assert len(json.loads(cache.read_text())["entries"]) == 2


def test_another_cpu_measures_again(cache, timer, monkeypatch):
    calls, speeds = timer
    model, here = tiny(), pa.machine_key(torch.device("cpu"))["cpu"]
    pa.resolve_precision(model, "auto", "cpu", min_agreement=0.0, log=lambda _: None)
    n = len(calls)
    monkeypatch.setattr(pa, "cpu_model", lambda: "Another CPU")
    monkeypatch.setattr(pa, "cpu_flags", lambda: ["avx2", "avx512f", "avx512_vnni", "amx_bf16", "amx_tile"])
    speeds.update(bf16=0.05)
    _, choice = pa.resolve_precision(model, "auto", "cpu", min_agreement=0.0, log=lambda _: None)
    assert len(calls) == 2 * n and choice.precision == "bf16" and not choice.cached
    keys = [e["key"] for e in json.loads(cache.read_text())["entries"].values()]
    assert {k["cpu"] for k in keys} == {"Another CPU", here}
    assert ["amx_bf16", "avx512_vnni"] in [k["flags"] for k in keys]


def test_int8_refused_below_the_agreement(cache, timer, monkeypatch):
    monkeypatch.setattr(pa, "apply_quantization", lambda model, recipe: Negated(model))
    lines: list[str] = []
    runner, choice = pa.resolve_precision(tiny(), "auto", "cpu", log=lines.append)
    # int8 is the fastest but never agrees (negated logits): bf16, the next fastest, is used
    assert choice.figures["int8"]["top1_agreement"] == 0.0
    assert choice.precision == "bf16" and isinstance(runner, pa.Bf16Autocast)
    assert "int8 0.0% (refused)" in lines[0] and "--min-agreement 99.0%" in lines[0]
    # the same cached figures with no threshold: int8 is taken
    _, loose = pa.resolve_precision(tiny(), "auto", "cpu", min_agreement=0.0, log=lines.append)
    assert loose.cached and loose.precision == "int8"


def test_corrupt_cache_is_a_warning_and_measured_again(cache, timer):
    calls, _ = timer
    cache.parent.mkdir(parents=True)
    for text in ("{not json", json.dumps({"version": 1, "entries": {"k": {"figures": {"fp32": 3}}}}), "[]"):
        cache.write_text(text)
        calls.clear()
        lines: list[str] = []
        _, choice = pa.resolve_precision(tiny(), "auto", "cpu", min_agreement=0.0, log=lines.append)
        assert lines[0].startswith(f"warning: the precision cache {cache} cannot be read")
        assert calls and choice.precision == "int8" and not choice.cached
        (entry,) = json.loads(cache.read_text())["entries"].values()
        assert entry["figures"] == choice.figures


def test_cache_write_is_atomic(cache, timer, monkeypatch):
    model = tiny()
    pa.resolve_precision(model, "auto", "cpu", min_agreement=0.0, log=lambda _: None)
    before = cache.read_text()

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    lines: list[str] = []
    _, choice = pa.resolve_precision(tiny(seed=4), "auto", "cpu", min_agreement=0.0, log=lines.append)
    assert choice.precision == "int8"  # the run goes on
    assert any("cannot write the precision cache" in ln for ln in lines)
    assert cache.read_text() == before and [p.name for p in cache.parent.iterdir()] == ["precision.json"]


def test_explicit_precisions_and_a_quantised_directory(tmp_path):
    model = tiny()
    x = torch.randn(3, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(x)
        bf16, _ = pa.resolve_precision(model, "bf16")
        int8, _ = pa.resolve_precision(model, "int8")
        out_bf16, out_int8 = bf16(x), int8(x)
    assert out_bf16.dtype == torch.float32 and not torch.equal(out_bf16, ref)
    assert (out_bf16.softmax(-1) - ref.softmax(-1)).abs().max() < 0.05
    assert not torch.equal(out_int8, ref) and (out_int8.softmax(-1) - ref.softmax(-1)).abs().max() < 0.05
    assert pa.resolve_precision(model, None)[0] is model
    with pytest.raises(ValueError, match="int8 runs on the CPU only"):
        pa.resolve_precision(model, "int8", "cuda")
    for bad, match in (("fp16", "--precision must be one of"), ("auto", "--min-agreement")):
        with pytest.raises(ValueError, match=match):
            pa.resolve_precision(model, bad, min_agreement=1.5 if bad == "auto" else 0.99)
    # an int8 directory: int8 is its saved model, fp32 its fp32 weights
    save_pretrained(model, tmp_path / "ckpt")
    assert (
        main(["quantize", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "q"), "--force"])
        == 0
    )
    q = load_model(tmp_path / "q")
    assert pa.resolve_precision(q, "int8", checkpoint=tmp_path / "q")[0] is q
    fp32, _ = pa.resolve_precision(q, "fp32", checkpoint=tmp_path / "q")
    with torch.inference_mode():
        assert torch.equal(fp32(x), ref)
    with pytest.raises(ValueError, match="checkpoint directory"):
        pa.resolve_precision(q, "fp32")


def test_first_clips_skip_unreadable_items():
    good = torch.ones(2, 3, 4, 8, 8)  # two views
    items = [{"video": None}, {"video": good}, {"video": good * 2}]
    clips = pa.first_clips(items, limit=3)
    assert clips.shape == (3, 3, 4, 8, 8) and clips[2].mean() == 2
    assert pa.first_clips([{"video": None}]) is None


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("p")
    lists = make_dataset(root / "data", n_train=0, n_val=3, frames=8, size=32)
    save_pretrained(tiny(), root / "ckpt")
    return root, lists


def test_cli_predict_and_eval_with_precision(ckpt, cache, tmp_path, capsys):
    root, lists = ckpt
    videos = [str(lists["val"].parent / ln.split()[0]) for ln in lists["val"].read_text().splitlines()]
    base = ["predict", *videos, "--checkpoint", str(root / "ckpt"), "--device", "cpu", "--json"]
    assert main(base) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*base, "--precision", "auto", "--min-agreement", "0"]) == 0
    out = capsys.readouterr()
    (line,) = [ln for ln in out.err.splitlines() if ln.startswith("precision auto:")]
    assert "(measured now, cached in" in line and "8 random + 3 real clips" in line
    assert len(json.loads(out.out)) == 3
    assert main([*base, "--precision", "auto", "--min-agreement", "0"]) == 0
    assert "(from the cache " in capsys.readouterr().err
    assert main([*base, "--precision", "fp32"]) == 0
    assert json.loads(capsys.readouterr().out) == plain
    rc = main(
        ["eval", "--checkpoint", str(root / "ckpt"), "--list", str(lists["val"]), "--views", "1x1"]
        + ["--device", "cpu", "--out", str(tmp_path / "ev"), "--precision", "int8", "data.workers=0"]
    )
    assert rc == 0 and json.loads((tmp_path / "ev" / "metrics.json").read_text())["num_videos"] == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["predict", "v.mp4", "--precision", "fp16"], "--precision must be one of auto, fp32, bf16, int8"),
        (["predict", "v.mp4", "--precision", "auto", "--min-agreement", "1.5"], "--min-agreement"),
        (["predict", "v.mp4", "--precision", "int8", "--runtime", "onnxruntime"], "--runtime torch"),
        (["predict", "v.mp4", "--precision", "int8", "--timeline"], "VIDEO arguments only"),
        (["eval", "--list", "l.txt", "--precision", "half"], "--precision must be one of"),
        (["eval", "--list", "l.txt", "--precision", "bf16", "--runtime", "openvino"], "--runtime torch"),
    ],
)
def test_bad_precision_flags_are_one_line_exit_2(argv, message, capsys, tmp_path):
    rc = main([*argv, "--checkpoint", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err


class StaticStandIn(nn.Module):
    """What load_model returns for a static (ONNX) int8 directory: refuses to run in torch."""

    def __init__(self, fp32: nn.Module):
        super().__init__()
        self.fp32, self.config, self.quantization = fp32, fp32.config, {"method": "static"}

    def forward(self, x):
        raise ValueError("run it with --runtime onnxruntime")


def test_static_int8_directory_runs_its_fp32_weights_in_torch(cache, timer):
    model = tiny()
    static = StaticStandIn(model)
    with pytest.raises(ValueError, match="--method static"):
        pa.resolve_precision(static, "int8")
    assert pa.resolve_precision(static, "fp32")[0] is model
    lines: list[str] = []
    runner, choice = pa.resolve_precision(static, "auto", min_agreement=0.0, log=lines.append)
    assert isinstance(runner, pa.Bf16Autocast) and runner.model is model
    assert set(choice.figures) == {"fp32", "bf16"} and choice.precision == "bf16"
    assert lines[0].endswith("int8 not tried (the saved int8 model is ONNX: --runtime onnxruntime)")


def test_bf16_without_native_products_is_not_timed(cache, timer, monkeypatch):
    """Where bf16 products run at a fraction of fp32's (a CPU with no native bf16: minutes per
    B/16 clip), auto does not time bf16 at all and says why; an explicit bf16 warns."""
    calls, _ = timer
    why = "bf16 products run at 0.5 GFLOP/s against 30 in fp32 on this CPU (1.7%: no native bf16)"
    monkeypatch.setattr(pa, "slow_precision", lambda dtype, device: why if dtype == torch.bfloat16 else None)
    lines: list[str] = []
    _, choice = pa.resolve_precision(tiny(), "auto", "cpu", min_agreement=0.0, log=lines.append)
    assert "bf16" not in calls and sorted(set(calls)) == ["fp32", "int8"]
    assert choice.precision == "int8" and "bf16" not in choice.figures
    assert lines[0].endswith(f"; bf16 not tried ({why})")
    # read back from the cache: the same candidates, nothing measured
    calls.clear()
    _, again = pa.resolve_precision(tiny(), "auto", "cpu", min_agreement=0.0, log=lines.append)
    assert calls == [] and again.cached and again.precision == "int8"
    lines.clear()
    runner, explicit = pa.resolve_precision(tiny(), "bf16", "cpu", log=lines.append)
    assert isinstance(runner, pa.Bf16Autocast) and explicit.precision == "bf16"
    assert lines == [f"warning: --precision bf16 will be slower than fp32 here: {why}"]


def test_slow_precision_and_the_bounded_matmul_rate_on_this_machine():
    """The probe itself, on the real CPU: fp32 is never slow; bf16's verdict is None or one
    line with both rates; a product grows only within its time budget."""
    from xvit.models.hardware import matmul_rate, slow_precision

    assert slow_precision(torch.float32) is None
    verdict = slow_precision(torch.bfloat16)
    assert verdict is None or (verdict.startswith("bf16 products run at ") and "GFLOP/s" in verdict)
    small = matmul_rate(4096, torch.float32, repeats=1, max_product_s=1e-9)
    assert small["n"] == 256 and small["requested_n"] == 4096 and small["gflops_median"] > 0
    int8 = matmul_rate(64, torch.int8, repeats=1)
    assert int8["n"] == 64 and int8["kernel"] in ("int_mm", "dynamic")
