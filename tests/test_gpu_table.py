"""benchmarks/gpu_table.py in its CPU fallback (--device cpu --quick): it runs, every check
passes, every model has timed speed rows and the single-process DDP step trains. It runs as
it will on a lent GPU machine, whose image has torch and transformers but neither xvit
installed nor PyAV, FastAPI, uvicorn or OpenVINO: from the source tree (``PYTHONPATH=src``),
with those packages unimportable and xvit's distribution metadata absent."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from xvit.benchmarks.peers import peers_available

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_table.py"
# Runs SCRIPT (argv[1:]) with the packages a GPU machine's image lacks made unimportable.
AS_ON_GPU_MACHINE = """
import importlib.abc, importlib.metadata as md, runpy, sys
ABSENT = {"av", "fastapi", "uvicorn", "openvino"}
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Absent())
version = md.version
def no_xvit(name):
    if name == "xvit":
        raise md.PackageNotFoundError(name)
    return version(name)
md.version = no_xvit
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_gpu_table_quick_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu_table.json"
    args = ["--device", "cpu", "--quick", "--threads", "1", "--json", str(out)]
    cmd = [sys.executable, "-c", AS_ON_GPU_MACHINE, str(SCRIPT), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "| model | T x S | batch | precision | clips/s |" in res.stdout
    data = json.loads(out.read_text())
    assert data["meta"]["quick"] and data["meta"]["device"] == "cpu"

    models = {"xvit_base_patch16", "vit_base_patch16"} | ({"hf_timesformer"} if peers_available() else set())
    checks = data["checks"]
    assert {c["model"] for c in checks} == models
    for model in models:
        mine = {c["precision"]: c for c in checks if c["model"] == model}
        assert mine["fp32"]["passed"] and mine["fp32"]["max_abs_diff"] <= 1e-6
        bf16 = mine["bf16"]
        assert bf16["passed"] and 0.0 <= bf16["top1_agreement"] <= 1.0
        assert bf16["max_prob_diff"] < bf16["prob_tol"]
        assert "skipped" in mine["fp16"]  # no fp16 autocast on the CPU

    speed = [r for r in data["speed"] if "skipped" not in r]
    assert {r["model"] for r in speed} == models
    for model in models:
        rows = [r for r in speed if r["model"] == model]
        keys = {(r["frames"], r["batch"], r["precision"]) for r in rows}
        assert keys == {(t, b, p) for t in (4, 8) for b in (1, 2) for p in ("fp32", "bf16")}
        assert all(r["clips_per_s"] > 0 and r["peak_mib"] is None for r in rows)

    ddp = data["ddp"]
    assert ddp["passed"] and ddp["backend"] == "gloo" and ddp["world_size"] == 1
    assert all(math.isfinite(loss) for loss in ddp["losses"])
    assert ddp["params_changed"] == ddp["params_with_grad"] > 0
    assert ddp["step_ms"] > 0
