"""The benchmark harness: well-formed results on tiny models (no timing assertions)."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xvit
from xvit.benchmarks import ModelSpec, count_forward_flops, run_benchmark, write_report
from xvit.benchmarks import peers as peers_mod
from xvit.benchmarks.report import frame_scaling
from xvit.benchmarks.targets import evaluate_targets, load_goals
from xvit.cli import benchmark as cli

TINY = dict(embed_dim=64, depth=2, num_heads=2)
# The project's speed goals (configuration outside the package, read as `xvit benchmark` users would).
GOALS = load_goals(Path(__file__).resolve().parents[1] / "benchmarks" / "speed_targets.yaml")


@pytest.fixture(autouse=True)
def native_bf16(monkeypatch):
    """Every test here runs as on a CPU with native bf16 (the rows are timed), whatever this
    CPU is; test_bf16_rows_without_native_products_say_why sets the other case."""
    import xvit.benchmarks.speed as speed

    monkeypatch.setattr(speed, "slow_precision", lambda dtype, device: None)


def tiny_spec(name: str, frames: int = 2) -> ModelSpec:
    return ModelSpec(name, frames, 32, overrides=dict(TINY))


def test_run_benchmark_tiny_models_with_memory():
    specs = [tiny_spec("xvit_tiny_patch16"), tiny_spec("vit_tiny_patch16")]
    payload = run_benchmark(
        specs,
        batches=(1, 2),
        dtypes=("fp32", "bf16"),
        repeats=2,
        warmup=1,
        threads=1,
        memory=True,
        matmul_n=64,
        log=lambda _: None,
    )
    results = payload["results"]
    assert len(results) == 2 * 2 * 2
    for spec, row in zip(specs, payload["models"]):
        model = spec.build()
        # FLOPs and parameters agree with the model library's own counters.
        assert row["gflops_per_clip"] * 1e9 == pytest.approx(xvit.count_flops(model, spec.input_shape(1)))
        assert row["params"] == xvit.count_params(model)
        assert row["bf16_mode"] in ("bf16-model", "bf16-autocast")
    bf16_mode = {m["display"]: m["bf16_mode"] for m in payload["models"]}
    for r in results:
        assert len(r["times_s"]) == 2 and all(t > 0 for t in r["times_s"])
        assert r["median_s"] == pytest.approx(statistics.median(r["times_s"]))
        assert r["min_s"] <= r["q1_s"] <= r["median_s"] <= r["q3_s"] <= r["max_s"]
        assert r["clips_per_s"] == pytest.approx(r["batch"] / r["median_s"])
        assert r["ms_per_clip"] == pytest.approx(1000 / r["clips_per_s"])
        assert r["achieved_gflops"] == pytest.approx(r["gflops_per_clip"] * r["clips_per_s"])
        assert r["dtype_mode"] == ("fp32" if r["dtype"] == "fp32" else bf16_mode[r["display"]])
        # Peak RSS of a process running torch is far above 50 MiB; the forward part is >= 0.
        assert r["memory_kind"] == "rss"
        assert r["peak_mem_mib"] > 50 and 0 <= r["activation_mib"] < r["peak_mem_mib"]
    meta = payload["meta"]
    assert meta["matmul"]["fp32"]["gflops_median"] > 0 and meta["torch"] == torch.__version__
    assert "int8" not in meta["matmul"]  # measured only when an int8 row is timed
    for r in results:  # the roofline share: over the same precision's in-run matmul rate
        rate = meta["matmul"][r["precision"]]["gflops_median"]
        assert r["matmul_share"] == pytest.approx(r["achieved_gflops"] / rate)
    json.dumps(payload)  # JSON-able


def test_bf16_rows_without_native_products_say_why(monkeypatch):
    """Where bf16 products run at a fraction of fp32's (no native bf16), the bf16 rows are not
    timed (minutes per clip on a real model) and say why; the other rows are timed."""
    import xvit.benchmarks.speed as speed
    from xvit.benchmarks.report import results_table

    why = "bf16 products run at 0.5 GFLOP/s against 30 in fp32 on this CPU (1.7%: no native bf16)"
    monkeypatch.setattr(speed, "slow_precision", lambda dtype, device: why)
    payload = run_benchmark(
        [tiny_spec("xvit_tiny_patch16")],
        batches=(1,),
        dtypes=("fp32", "bf16"),
        repeats=1,
        warmup=1,
        threads=1,
        memory=False,
        matmul_n=64,
        log=lambda _: None,
    )
    fp32, bf16 = payload["results"]
    assert fp32["precision"] == "fp32" and fp32["clips_per_s"] > 0
    assert bf16["precision"] == "bf16" and bf16["error"] == f"not timed: {why}" and not bf16.get("times_s")
    assert f"| not timed: {why} |" in results_table(payload["results"])


def test_int8_rows_are_judged_against_the_int8_matmul_rate():
    from xvit.benchmarks.machine import measure_matmul_rate
    from xvit.benchmarks.report import machine_summary, results_table

    rate = measure_matmul_rate(64, torch.int8, repeats=3)
    assert rate["dtype"] == "int8" and rate["gflops_max"] >= rate["gflops_median"] > 0
    payload = run_benchmark(
        [tiny_spec("xvit_tiny_patch16")],
        dtypes=("fp32", "int8"),
        repeats=2,
        warmup=1,
        threads=1,
        memory=False,
        matmul_n=64,
        log=lambda _: None,
    )
    matmul = payload["meta"]["matmul"]
    assert set(matmul) == {"fp32", "bf16", "int8"}
    int8 = next(r for r in payload["results"] if r["precision"] == "int8")
    assert int8["matmul_share"] == pytest.approx(int8["achieved_gflops"] / matmul["int8"]["gflops_median"])
    table = results_table(payload["results"])
    assert "| achieved GFLOP/s | of matmul |" in table
    assert f"| {int8['achieved_gflops']:.0f} | {int8['matmul_share']:.0%} |" in table
    assert "64x64 int8 matmul:" in machine_summary(payload["meta"]) and "GOP/s" in machine_summary(
        payload["meta"]
    )


@pytest.mark.parametrize(
    ("flags", "summary"),
    [
        (
            ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"],
            "bf16 on AMX tiles, int8 on AMX tiles",
        ),
        (["avx2", "avx512f", "avx512_vnni", "avx512_bf16"], "bf16 on AVX512-BF16, int8 on AVX512-VNNI"),
        (["avx2", "avx512f", "avx512_vnni"], "int8 on AVX512-VNNI"),
        (["avx2", "avx_vnni"], "int8 on AVX-VNNI"),
        (["avx2"], "no native bf16 or int8 products"),
    ],
)
def test_isa_summary_names_the_matrix_hardware(flags, summary):
    from xvit.benchmarks.machine import isa_summary

    assert isa_summary(flags) == summary


class _Recorder(nn.Module):
    """A tiny model that appends its tag to ``calls`` on every forward."""

    def __init__(self, tag: str, calls: list[str]) -> None:
        super().__init__()
        self.tag, self.calls = tag, calls
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(self.tag)
        return self.lin(x.flatten(1)[:, :4])


def _record_calls(monkeypatch) -> list[str]:
    """Every ModelSpec builds a `_Recorder` named after it; returns the shared call log."""
    calls: list[str] = []
    monkeypatch.setattr(ModelSpec, "build", lambda self: _Recorder(self.name, calls).eval())
    return calls


def test_repeats_are_interleaved_round_robin(monkeypatch):
    calls = _record_calls(monkeypatch)
    specs = [ModelSpec("a", 1, 2), ModelSpec("b", 1, 2), ModelSpec("c", 1, 2)]
    run_benchmark(specs, batches=(1,), repeats=3, warmup=1, memory=False, matmul_n=None, log=lambda _: None)
    timed = calls[-9:]  # after the FLOP count and one warm-up call per model
    assert timed == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_count_forward_flops_matches_hand_count():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(12, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, N, 12)
            q = k = v = self.fc(x).view(x.shape[0], x.shape[1], 2, 4).transpose(1, 2)
            return F.scaled_dot_product_attention(q, k, v)

    b, n = 3, 5
    linear = 2 * b * n * 12 * 8
    attention = 2 * (2 * b * 2 * n * n * 4)  # QK^T and AV, 2 heads of width 4
    assert count_forward_flops(Net(), (b, n, 12)) == linear + attention


def test_peer_takes_its_own_layout_and_missing_transformers_is_clear(monkeypatch):
    pytest.importorskip("transformers")
    spec = ModelSpec(
        "hf_vivit", 4, 32, size="tiny", overrides=dict(hidden_size=64, num_layers=1, num_heads=2)
    )
    assert spec.input_shape(2) == (2, 4, 3, 32, 32)
    model = spec.build()
    with torch.inference_mode():
        out = model(torch.randn(spec.input_shape(2)))
    assert out.shape == (2, 1 + 2 * 4, 64)  # CLS + (T/2) x 2 x 2 tubelets
    assert spec.attention_backend() == "sdpa"
    assert ModelSpec("hf_timesformer").attention_backend() == "eager"
    with pytest.raises(ValueError, match="not divisible"):
        peers_mod.build_peer("hf_videomae", 5, 32)
    monkeypatch.setattr(peers_mod, "peers_available", lambda: False)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[bench\]'"):
        peers_mod.build_peer("hf_timesformer", 8)


def _row(model, frames, dtype, clips, gflops=100.0, batch=1):
    return dict(
        model=model,
        frames=frames,
        img_size=224,
        batch=batch,
        dtype=dtype,
        dtype_mode=dtype,
        compiled=False,
        clips_per_s=clips,
        median_s=batch / clips,
        gflops_per_clip=gflops,
        achieved_gflops=gflops * clips,
    )


def test_targets_and_frame_scaling_on_hand_numbers(tmp_path):
    results = [
        _row("xvit_base_patch16", 8, "fp32", 1.0, 280),
        _row("vit_base_patch16", 8, "fp32", 1.02, 280),
        _row("hf_timesformer", 8, "fp32", 0.8, 392),
        _row("xvit_base_patch16", 8, "bf16", 2.5, 280),
        _row("xvit_base_patch16", 16, "fp32", 0.5),
        _row("xvit_base_patch16", 32, "fp32", 0.25),
        _row("joint_vit_base_patch16", 8, "fp32", 1.0),
        _row("joint_vit_base_patch16", 16, "fp32", 0.25),
        _row("joint_vit_base_patch16", 32, "fp32", 1 / 16),
    ]
    payload = {
        "meta": {"matmul": {"fp32": {"n": 2048, "gflops_median": 400.0, "gflops_max": 410.0}}},
        "models": [],
        "results": results,
    }
    got = {t["target"]: (round(t["value"], 4), t["status"]) for t in evaluate_targets(payload, GOALS)}
    assert got["X-ViT vs spatial ViT clips/s, 8x224 fp32"] == (round(1 / 1.02, 4), "PASS")
    assert got["X-ViT / HF TimeSformer clips/s, 8x224 fp32"] == (1.25, "MISS")
    assert got["X-ViT time(T=32) / time(T=8), fp32"] == (4.0, "PASS")
    assert got["X-ViT achieved GFLOP/s / fp32 matmul GFLOP/s, 8x224"] == (0.7, "MISS")
    assert got["X-ViT bf16 / fp32 clips/s, 8x224"] == (2.5, "MISS")
    scaling = frame_scaling(payload)
    assert scaling["xvit"]["exponent"] == pytest.approx(1.0)
    assert scaling["joint_vit"]["exponent"] == pytest.approx(2.0)
    assert scaling["joint_vit"]["time_ratio_to_first"] == pytest.approx([1, 4, 16])
    assert scaling["joint_vit"]["quadratic_share_at_max_T"] == pytest.approx(1.0)
    assert scaling["xvit"]["quadratic_share_at_max_T"] == pytest.approx(0.0, abs=1e-9)
    payload["meta"].update(cpu="test", repeats=1, warmup=1)
    for r in results:
        r.update(
            display=r["model"],
            params=1e6,
            q1_s=r["median_s"],
            q3_s=r["median_s"],
            min_s=r["median_s"],
            max_s=r["median_s"],
            ms_per_clip=1000 / r["clips_per_s"],
            error=None,
            compile_s=None,
        )
    paths = write_report(payload, tmp_path, "hand", goals=GOALS)
    for key in ("json", "markdown", "speed_plot", "frames_plot"):
        assert paths[key].exists() and paths[key].stat().st_size > 0
    text = paths["markdown"].read_text()
    assert "| X-ViT / HF TimeSformer clips/s, 8x224 fp32 | >= 1.35 | 1.250 | MISS |" in text


def _parse(argv):
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    return parser.parse_args(["benchmark", *argv])


def test_cli_specs_and_smoke_run(tmp_path, capsys):
    args = _parse(["--models", "xvit,vit_small_patch16", "--frames", "8,16", "--peers"])
    got = [(s.name, s.num_frames) for s in cli.build_specs(args)]
    assert got[:4] == [
        ("xvit_base_patch16", 8),
        ("vit_small_patch16", 8),
        ("xvit_base_patch16", 16),
        ("vit_small_patch16", 16),
    ]
    assert got[4:] == [
        ("hf_timesformer", 8),
        ("hf_timesformer", 16),
        ("hf_vivit", 8),
        ("hf_vivit", 16),
        ("hf_vivit", 32),
        ("hf_videomae", 8),
        ("hf_videomae", 16),
    ]
    args = _parse(["--models", "xvit@8+32,vit@8,hf_timesformer@16", "--frames", "16"])
    got = [(s.name, s.num_frames) for s in cli.build_specs(args)]
    assert got == [
        ("xvit_base_patch16", 8),
        ("vit_base_patch16", 8),
        ("xvit_base_patch16", 32),
        ("hf_timesformer", 16),
    ]
    with pytest.raises(ValueError, match="--frames"):
        cli.build_specs(_parse(["--frames", "8,x"]))

    args = _parse(
        [
            "--models",
            "xvit",
            "--size",
            "tiny",
            "--img-size",
            "32",
            "--frames",
            "2",
            "--batch",
            "1",
            "--repeats",
            "1",
            "--no-memory",
            "--matmul-n",
            "0",
            "--override",
            "embed_dim=64",
            "--override",
            "depth=1",
            "--override",
            "num_heads=2",
            "--out",
            str(tmp_path),
        ]
    )
    assert args.func(args) == 0
    payload = json.loads((tmp_path / "benchmark.json").read_text())
    (row,) = payload["results"]
    assert row["model"] == "xvit_tiny_patch16" and row["frames"] == 2 and row["clips_per_s"] > 0
    assert "| xvit_tiny_patch16 | 2x32 | 1 | fp32 | no |" in capsys.readouterr().out


def test_goals_file_refuses_unknown_targets_and_non_numbers(tmp_path):
    assert GOALS == {
        "xvit_vs_vit": 0.97,
        "xvit_vs_timesformer": 1.35,
        "frames_32_over_8": 4.3,
        "matmul_fraction": 0.75,
        "bf16_speedup": 3.0,
    }
    bad = tmp_path / "goals.yaml"
    for text, message in [
        ("xvit_vs_vits: 1\n", "unknown target"),
        ("bf16_speedup: fast\n", "must be a number"),
        ("- 1\n", "expected a mapping"),
        ("a: [\n", "not a YAML mapping"),
    ]:
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_goals(bad)
    payload = {
        "meta": {},
        "results": [_row("xvit_base_patch16", 8, "fp32", 1.0), _row("vit_base_patch16", 8, "fp32", 1.0)],
    }
    assert evaluate_targets(payload, {}) == []  # no goals, no targets
    assert [t["status"] for t in evaluate_targets(payload, {"xvit_vs_vit": 1.0})] == ["PASS"]


def test_runtime_rows_join_the_interleaved_rounds(monkeypatch):
    calls = _record_calls(monkeypatch)

    def target(spec, model, runtime, batches):
        if spec.name == "b":
            raise RuntimeError("cannot export b")

        def bind(x):
            def call():
                calls.append(f"{runtime}:{spec.name}")
                return model.lin(x.flatten(1)[:, :4]) + 1.0

            return call

        return bind

    specs = [ModelSpec("a", 1, 2), ModelSpec("b", 1, 2)]
    payload = run_benchmark(
        specs,
        batches=(1,),
        dtypes=("fp32", "bf16-autocast"),
        runtimes=("torch", "onnxruntime"),
        runtime_target=target,
        repeats=3,
        warmup=1,
        memory=False,
        matmul_n=None,
        log=lambda _: None,
    )
    rows = [(r["model"], r["runtime"], r["precision"], r["error"]) for r in payload["results"]]
    assert rows == [
        ("a", "torch", "fp32", None),
        ("a", "torch", "bf16", None),
        ("b", "torch", "fp32", None),
        ("b", "torch", "bf16", None),
        ("a", "onnxruntime", "fp32", None),
        ("b", "onnxruntime", "fp32", "RuntimeError: cannot export b"),
    ]
    # 5 live rows, each timed once per round in turn, the start moving by 5 * round // 3
    timed = calls[-15:]
    order = ["a", "a", "b", "b", "onnxruntime:a"]
    assert timed == order + order[1:] + order[:1] + order[3:] + order[:3]
    r = {(x["model"], x["runtime"], x["precision"]): x for x in payload["results"]}
    assert r[("a", "onnxruntime", "fp32")]["max_abs_diff_vs_fp32"] == pytest.approx(1.0)
    assert r[("a", "torch", "fp32")]["max_abs_diff_vs_fp32"] == 0.0
    assert payload["meta"]["notes"] == ["onnxruntime: fp32 only here (bf16 rows are eager torch)"]
    table = cli_results_table(payload)
    assert "| a | 1x2 | 1 | fp32 | no | onnxruntime |" in table
    assert (
        "| b | 1x2 | 1 | fp32 | no | onnxruntime | 0.0 | 0.0 | failed: RuntimeError: cannot export b |"
        in table
    )
    widths = {line.count("|") for line in table.splitlines()}
    assert len(widths) == 1  # every row has the header's columns
    with pytest.raises(ValueError, match="runtime_target"):
        run_benchmark(specs, runtimes=("torch", "openvino"), memory=False, matmul_n=None)


def cli_results_table(payload):
    from xvit.benchmarks.report import results_table

    return results_table(payload["results"])


_RUNTIME_ROWS = """
import json, sys
from pathlib import Path
from xvit.benchmarks.spec import ModelSpec
from xvit.benchmarks.speed import run_benchmark
from xvit.engine.deploy.runtime_targets import OnnxTargets

tmp = Path(sys.argv[1])
peer = ModelSpec("hf_timesformer", 2, 32, size="tiny", overrides=dict(hidden_size=32, num_layers=1, num_heads=2))
specs = [ModelSpec("xvit_tiny_patch16", 2, 32, overrides=dict(embed_dim=32, depth=1, num_heads=2)), peer]
targets = OnnxTargets(tmp)


def target(spec, model, runtime, batches):
    return targets.target(spec.display, model, runtime, num_frames=spec.num_frames, img_size=spec.img_size,
                          channels_last_time=spec.source == "hf", batches=batches)


payload = run_benchmark(specs, batches=(1,), dtypes=("fp32", "int8"), runtimes=("torch", "onnxruntime", "openvino"),
                        runtime_target=target, repeats=1, warmup=1, threads=1, memory=False, matmul_n=None,
                        log=lambda _: None)
print(json.dumps({"results": payload["results"], "files": len(targets.files)}))
"""


def test_int8_rows_and_onnx_runtimes_for_ours_and_a_peer(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is an optional extra (xvit[onnx])")
    pytest.importorskip("openvino", reason="openvino is an optional extra (xvit[openvino])")
    pytest.importorskip("transformers", reason="the peer needs transformers (xvit[bench])")
    # In a child process: with OpenVINO's CPU plugin loaded into the test process, a later
    # in-process libx264 encode (tests/test_data_prepare.py) crashed the process (SIGSEGV).
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _RUNTIME_ROWS, str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    got = {(r["model"], r["runtime"], r["precision"]): r for r in out["results"]}
    assert len(got) == 8 and all(r["clips_per_s"] > 0 and not r["error"] for r in got.values())
    for model in ("xvit_tiny_patch16", "hf_timesformer"):
        for runtime in ("onnxruntime", "openvino"):  # the same answers as eager fp32
            # outputs of order 1 (the peer's are hidden states): runtimes' float32 sums of
            # another order differ by up to ~1e-4 (1.1e-4 seen with OpenVINO)
            assert got[(model, runtime, "fp32")]["max_abs_diff_vs_fp32"] < 1e-3
        assert 0 < got[(model, "torch", "int8")]["max_abs_diff_vs_fp32"] < 0.5  # really quantised
    assert out["files"] == 2  # one export per model, opened by both runtimes


def test_benchmark_precision_and_runtime_flags(tmp_path, capsys):
    args = _parse(["--precision", "all", "--runtime", "torch,openvino"])
    assert cli.dtypes_and_runtimes(args) == (["fp32", "bf16", "int8"], ["torch", "openvino"])
    assert cli.dtypes_and_runtimes(_parse(["--runtime", "all"]))[1] == ["torch", "onnxruntime", "openvino"]
    assert cli.dtypes_and_runtimes(_parse([])) == (["fp32"], ["torch"])
    for argv, message in [
        (["--precision", "fp64"], "--precision must be a comma list of fp32, bf16, int8 or all"),
        (["--runtime", "tensorrt"], "--runtime must be a comma list of torch, onnxruntime, openvino"),
        (["--dtype", "fp32", "--precision", "int8"], "give --dtype or --precision, not both"),
        (["--dtype", "fp8"], "--dtype must be a comma list"),
    ]:
        args = _parse([*argv, "--out", str(tmp_path)])
        assert args.func(args) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"xvit benchmark: error: {message}" or (message in err and len(err.splitlines()) == 1)
    from xvit.benchmarks.forward import prepare_model

    with pytest.raises(ValueError, match="int8 .* runs on the CPU only"):
        prepare_model(nn.Linear(2, 2), "int8", torch.device("cuda"))


# A valid tiny command line; each case below appends one bad flag (the last value wins).
_GOOD = "--models xvit_tiny_patch16 --img-size 32 --frames 2 --batch 1 --repeats 1 --warmup 1 --no-memory --matmul-n 64"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "nosuch"], "unknown model 'nosuch'"),
        (["--models", ""], "--models has an empty item"),
        (["--models", "xvit,,vit"], "--models has an empty item"),
        (["--models", "xvit@"], "the frames of xvit@"),
        (["--models", "xvit@8+x"], "the frames of xvit@"),
        (["--models", "hf_vivit@3"], "hf_vivit groups 2 frames per token"),
        (["--img-size", "50"], "--img-size 50 is not divisible by patch_size 16"),
        (["--img-size", "0"], "--img-size must be a positive integer"),
        (["--img-size", "abc"], "argument --img-size: invalid int value"),
        (["--repeats", "0"], "--repeats must be at least 1"),
        (["--repeats", "-2"], "--repeats must be at least 1"),
        (["--warmup", "-1"], "--warmup must be 0 or more"),
        (["--warmup", "1.5"], "argument --warmup: invalid int value"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--threads", "-3"], "--threads must be at least 1"),
        (["--min-time", "-0.5"], "--min-time must be a number of seconds"),
        (["--min-time", "nan"], "--min-time must be a number of seconds"),
        (["--min-time", "inf"], "--min-time must be a number of seconds"),
        (["--min-time", "x"], "argument --min-time: invalid float value"),
        (["--matmul-n", "-1"], "--matmul-n must be 0 (skip) or a positive size"),
        (["--batch", "-1"], "--batch must be a comma list of positive integers"),
        (["--batch", "0"], "--batch must be positive integers"),
        (["--batch", "1,,2"], "--batch must be a comma list of positive integers"),
        (["--batch", "a"], "--batch must be a comma list of positive integers"),
        (["--batch", ""], "--batch must be a comma list of positive integers"),
        (["--frames", "0"], "--frames must be positive integers"),
        (["--frames", "2,"], "--frames must be a comma list of positive integers"),
        (["--frames", "1.5"], "--frames must be a comma list of positive integers"),
        (["--size", "huge"], "argument --size: invalid choice: 'huge'"),
        (["--dtype", "fp8"], "--dtype must be a comma list"),
        (["--dtype", "fp32,,bf16"], "--dtype must be a comma list"),
        (["--precision", "fp64"], "--precision must be a comma list"),
        (["--runtime", "tensorrt"], "--runtime must be a comma list"),
        (["--override", "depth"], "--override wants KEY=VALUE"),
        (["--override", "=3"], "--override wants KEY=VALUE"),
        (["--override", "depth=["], "--override 'depth=[': the value is not YAML"),
        (["--override", "dpth=3"], "unknown model option(s) for xvit_tiny_patch16: 'dpth'"),
        (["--override", "depth=0"], "depth must be >= 1"),
        (["--device", "foo"], "device 'foo' is not a device"),
        (["--device", "mps"], "device 'mps' is not supported"),
        (["--device", "cuda"], "device 'cuda': CUDA is not available here"),
        (["--name", "a/b"], "--name must be a plain file name"),
        (["--name", ""], "--name must be a plain file name"),
        (["--targets", "MISSING"], "--targets MISSING: No such file or directory"),
    ],
)
def test_bad_flags_are_one_line_exit_2_before_any_work(tmp_path, monkeypatch, capsys, argv, message):
    from xvit.benchmarks import speed
    from xvit.cli.main import main

    def no_run(*args, **kwargs):
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(speed, "run_benchmark", no_run)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a GPU machine
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    try:
        code = main(["benchmark", *_GOOD.split(), "--out", str(out), *argv])
    except SystemExit as e:  # argparse's own checks (types, choices)
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("xvit benchmark: error: "), err
    assert message in err
    assert not out.exists()


def test_good_flags_pass_the_checks(tmp_path, monkeypatch, capsys):
    """The base command line of the test above is accepted: each of its cases fails for its flag."""
    from xvit.benchmarks import speed
    from xvit.cli.main import main

    class Ran(Exception):
        pass

    def ran(*args, **kwargs):
        raise Ran

    monkeypatch.setattr(speed, "run_benchmark", ran)
    with pytest.raises(Ran):
        main(["benchmark", *_GOOD.split(), "--out", str(tmp_path / "out"), "--threads", "1"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["file", "under_file", "dir_named_like_report"])
def test_unusable_out_is_refused_before_measuring(tmp_path, monkeypatch, capsys, where):
    from xvit.benchmarks import speed
    from xvit.cli.main import main

    monkeypatch.setattr(speed, "run_benchmark", lambda *a, **k: pytest.fail("the benchmark ran"))
    (tmp_path / "file").write_text("keep")
    (tmp_path / "prev").mkdir()
    (tmp_path / "prev" / "benchmark.json").mkdir()
    out = {"file": "file", "under_file": "file/sub", "dir_named_like_report": "prev"}[where]
    code = main(["benchmark", *_GOOD.split(), "--out", str(tmp_path / out)])
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"xvit benchmark: error: --out {tmp_path / out}: ")
    assert (tmp_path / "file").read_text() == "keep"


def _payload(frames):
    rows = [_row("xvit_base_patch16", t, "fp32", 10.0 / t) for t in frames]
    for r in rows:
        r.update(display=f"xvit {r['frames']}", params=1e6, q1_s=r["median_s"], q3_s=r["median_s"])
        r.update(min_s=r["median_s"], max_s=r["median_s"], ms_per_clip=1000 / r["clips_per_s"])
        r.update(error=None, compile_s=None)
    return {"meta": {"cpu": "test", "repeats": 1, "warmup": 1}, "models": [], "results": rows}


def test_report_replaces_a_previous_one_whole_or_not_at_all(tmp_path, monkeypatch):
    from xvit.benchmarks import report

    other = tmp_path / "other.json"
    other.write_text("another report")
    first = write_report(_payload([8, 16]), tmp_path)
    assert set(first) == {"json", "markdown", "speed_plot", "frames_plot"}
    # one clip length: no frames plot; the previous one would contradict the new JSON
    second = write_report(_payload([8]), tmp_path)
    assert "frames_plot" not in second and not first["frames_plot"].exists()
    assert [r["frames"] for r in json.loads(second["json"].read_text())["results"]] == [8]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(payload, path):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(report, "plot_speed", broken)
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_report(_payload([8, 16, 32]), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no staging left either
    assert other.read_text() == "another report"
