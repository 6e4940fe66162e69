"""X-ViT clips/s on this CPU in each deployment, measured side by side (interleaved), and
top-1 agreement of each deployment with eager fp32 on a trained model.

    python benchmarks/deploy_speed.py [--frames 8 16] [--size 224] [--repeats 3] [--peer] [--out FILE.json]
    python benchmarks/deploy_speed.py --agreement RUN_DIR [--list VAL_LIST] [--calib LIST] [--out FILE.json]

Speed rows, for every ``--frames``: eager fp32, eager bf16 (autocast), ONNX Runtime fp32,
OpenVINO fp32 (when installed), int8 dynamic (torch.ao), int8 static (ONNX Runtime's
quantiser, as ``xvit quantize --method static``; calibrated on 4 seeded random clips for the
speed rows, whose ranges do not change the work done); with ``--peer``, transformers'
TimeSformer-base (random weights, eager attention) in eager fp32 and ONNX Runtime fp32 at the
same clip sizes. Each repeat times one batch-1 clip in every row in turn, so load on a shared
machine hits every row alike; the median is reported with the load average. The models have
random (seeded) weights: speed does not depend on them; the max probability difference to
eager fp32 on the timed clip is printed as a sanity check (for TimeSformer, whose
output is its encoder's last hidden state, the softmax over that state's features).

``--agreement RUN_DIR`` scores the run's validation list (its ``data.val_list``, or
``--list``; one centre view per video, through the same scoring loop as ``xvit eval``) with
every deployment of the trained model and prints each one's top-1 agreement with eager fp32,
max probability difference and accuracy. The static int8 row is calibrated on the first
``--calib-size`` (32) videos of ``--calib`` (default: the run's training list, else the
``train.txt`` next to the validation list).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import xvit
from xvit.engine.deploy.export import export_model
from xvit.engine.deploy.quantize_static import INPUT_NAME, CalibrationClips, quantize_onnx_static
from xvit.engine.deploy.runtimes import (
    OnnxRuntime,
    OpenVINORuntime,
    RuntimeModule,
    RuntimeUnavailable,
    TorchRuntime,
)
from xvit.engine.run.data import build_eval_dataset, cache_dir, read_split
from xvit.engine.run.metrics import agreement_figures
from xvit.engine.run.saved import load_run
from xvit.engine.run.scoring import score_dataset
from xvit.models.quantization import apply_quantization


class Bf16Runtime:
    """The eager model under CPU bf16 autocast."""

    name = "torch-bf16"

    def __init__(self, model: nn.Module):
        self.model = model.eval()

    def run(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
            return self.model(torch.from_numpy(np.ascontiguousarray(batch, np.float32))).float().numpy()


class RandomClips:
    """Seeded random calibration clips (``quantize_onnx_static``'s reader) for the speed rows."""

    def __init__(self, model: nn.Module, count: int = 4):
        c = model.config  # type: ignore[attr-defined]
        g = torch.Generator().manual_seed(1)
        self.clips = [
            torch.randn(1, 3, c.num_frames, c.img_size, c.img_size, generator=g) for _ in range(count)
        ]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return {INPUT_NAME: self.clips.pop().numpy()} if self.clips else None


def deployments(model: nn.Module, tmp: str, dynamic_batch: bool, calib: object = None) -> dict[str, object]:
    """Every deployment of ``model`` (its ONNX exports written under ``tmp``); ``calib``: the
    static int8 row's calibration reader (default ``RandomClips``)."""
    rows: dict[str, object] = {"eager fp32": TorchRuntime(model), "eager bf16": Bf16Runtime(model)}
    t0 = time.perf_counter()
    path = f"{tmp}/{onnx_name(model)}.onnx"
    export_model(model, "onnx", path, batch=2 if dynamic_batch else 1, dynamic_batch=dynamic_batch)
    print(f"ONNX export + check: {time.perf_counter() - t0:.0f} s", flush=True)
    rows["onnxruntime fp32"] = OnnxRuntime(path)
    try:
        rows["openvino fp32"] = OpenVINORuntime(path)
    except RuntimeUnavailable as e:
        print(f"openvino skipped: {e}")
    rows["int8 dynamic (torch)"] = TorchRuntime(apply_quantization(model, {"method": "dynamic"}))
    t0 = time.perf_counter()
    static = f"{tmp}/{onnx_name(model)}.int8.onnx"
    quantize_onnx_static(model, calib if calib is not None else RandomClips(model), static)
    print(f"static int8 quantisation: {time.perf_counter() - t0:.0f} s", flush=True)
    rows["int8 static (onnxruntime)"] = OnnxRuntime(static)
    return rows


def onnx_name(model: nn.Module) -> str:
    c = model.config  # type: ignore[attr-defined]
    return f"{c.name}_{c.num_frames}x{c.img_size}"


class PeerLayout(nn.Module):
    """A transformers peer fed our ``(B, 3, T, H, W)`` clips."""

    def __init__(self, peer: nn.Module):
        super().__init__()
        self.peer = peer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.peer(x.transpose(1, 2))


def peer_deployments(frames: int, size: int, tmp: str) -> dict[str, object]:
    from xvit.benchmarks.peers import build_peer

    peer = PeerLayout(build_peer("hf_timesformer", num_frames=frames, img_size=size)).eval()
    rows: dict[str, object] = {"eager fp32": TorchRuntime(peer)}
    path = f"{tmp}/timesformer_{frames}x{size}.onnx"
    t0 = time.perf_counter()
    try:
        x = torch.randn(1, 3, frames, size, size)
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # one line per torchvision op
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(peer, (x,), dynamo=True, opset_version=18, verbose=False)
        program.save(path, external_data=False)
        rows["onnxruntime fp32"] = OnnxRuntime(path)
        print(f"TimeSformer ONNX export: {time.perf_counter() - t0:.0f} s", flush=True)
    except Exception as e:  # the exporter raises many types; the row is then absent
        print(f"TimeSformer ONNX export failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}")
    return rows


def speed(args: argparse.Namespace) -> dict:
    rows: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for frames in args.frames:
            torch.manual_seed(0)
            model = xvit.create_model(args.model, num_frames=frames, img_size=args.size).eval()
            for k, r in deployments(model, tmp, dynamic_batch=False).items():
                rows[f"{args.model} {frames}x{args.size} {k}"] = r
            if args.peer:
                torch.manual_seed(0)
                for k, r in peer_deployments(frames, args.size, tmp).items():
                    rows[f"timesformer_base {frames}x{args.size} {k}"] = r
        clips = {f: torch.randn(1, 3, f, args.size, args.size).numpy() for f in args.frames}

        def clip(key: str) -> np.ndarray:
            return clips[int(key.split()[1].split("x")[0])]

        # one untimed run per row (warm-up) gives the sanity difference to the eager fp32 row
        outs = {k: torch.from_numpy(r.run(clip(k))).softmax(-1) for k, r in rows.items()}
        diffs = {}
        for k in rows:
            ref = " ".join(k.split()[:2]) + " eager fp32"
            diffs[k] = float((outs[k] - outs[ref]).abs().max())
        times: dict[str, list[float]] = {k: [] for k in rows}
        for _ in range(args.repeats):
            for k, r in rows.items():
                t = time.perf_counter()
                r.run(clip(k))
                times[k].append(time.perf_counter() - t)
    result = {"threads": torch.get_num_threads(), "loadavg": os.getloadavg(), "rows": {}}
    print(f"{'deployment':52s} {'clips/s':>8s} {'x eager':>8s} {'max prob diff':>14s}")
    for k in rows:
        base = 1 / statistics.median(times[" ".join(k.split()[:2]) + " eager fp32"])
        cps = 1 / statistics.median(times[k])
        result["rows"][k] = {
            "clips_per_s": cps,
            "speedup": cps / base,
            "max_prob_diff": diffs[k],
            "seconds": times[k],
        }
        print(f"{k:52s} {cps:8.3f} {cps / base:8.2f} {diffs[k]:14.2e}")
    print(f"load average {os.getloadavg()}")
    return result


def agreement(args: argparse.Namespace) -> dict:
    model, cfg = load_run(args.agreement)
    model = model.cpu().eval()
    val_list = args.list or cfg.data.val_list
    if val_list is None:  # the built-in synthetic data (what `xvit train` used without lists)
        root = Path(cfg.data.synth_dir) if cfg.data.synth_dir else cache_dir() / "synth"
        val_list = str(root / "val.txt")
    class_names = list(model.config.class_names) if model.config.class_names else None
    samples, _, _ = read_split(cfg, str(val_list), class_names=class_names)
    dataset = build_eval_dataset(cfg, samples, (1, 1))
    calib_list = args.calib or cfg.data.train_list or str(Path(val_list).parent / "train.txt")
    calib = CalibrationClips(cfg, calib_list, args.calib_size, class_names)
    logits: dict[str, torch.Tensor] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, r in deployments(model, tmp, dynamic_batch=True, calib=calib).items():
            scores = score_dataset(RuntimeModule(r), dataset, batch_size=8, workers=0, device="cpu")
            assert scores is not None
            logits[k], labels = scores.view_logits[:, 0], scores.labels
    ref = logits["eager fp32"]
    result = {
        "run": str(args.agreement),
        "list": str(val_list),
        "videos": int(ref.shape[0]),
        "calibration": calib.facts(),
        "rows": {},
    }
    print(
        f"{len(samples)} videos of {val_list}, {ref.shape[0]} scored; static int8 calibration {calib.facts()}"
    )
    print(f"{'deployment':26s} {'top-1 agree':>11s} {'max prob diff':>14s} {'accuracy':>9s}")
    for k, out in logits.items():
        row = {**agreement_figures(ref, out), "accuracy": float((out.argmax(-1) == labels).float().mean())}
        result["rows"][k] = row
        print(f"{k:26s} {row['top1_agreement']:11.2%} {row['max_prob_diff']:14.2e} {row['accuracy']:9.2%}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="xvit_base_patch16")
    ap.add_argument("--frames", type=int, nargs="+", default=[8])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer", action="store_true", help="add TimeSformer-base (transformers) rows")
    ap.add_argument("--agreement", metavar="RUN_DIR", help="agreement on a trained run's validation list")
    ap.add_argument("--list", help="validation list for --agreement (default: the run's data.val_list)")
    ap.add_argument(
        "--calib", help="static int8 calibration list for --agreement (default: the run's train list)"
    )
    ap.add_argument("--calib-size", type=int, default=32, help="calibration videos (default 32)")
    ap.add_argument("--out")
    args = ap.parse_args()
    result = agreement(args) if args.agreement else speed(args)
    if args.out:
        tmp = f"{args.out}.tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
