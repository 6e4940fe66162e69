"""X-ViT-B/16 clips/s on this CPU in each deployment, measured side by side (interleaved).

    python benchmarks/deploy_speed.py [--frames 8] [--size 224] [--repeats 3] [--out FILE.json]

Rows: eager fp32, eager bf16 (autocast), ONNX Runtime fp32, OpenVINO fp32 (when installed),
int8 dynamic (torch.ao). Each repeat times one batch-1 clip in every row in turn, so load on
a shared machine hits every row alike; the median is reported with the load average. The
model has random (seeded) weights: speed does not depend on them; the max probability
difference to eager fp32 on the timed clips is printed as a sanity check (agreement on a
trained model is measured by `xvit quantize --list` and `xvit eval --runtime`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import torch

import xvit
from xvit.engine.export import export_model
from xvit.engine.runtimes import OnnxRuntime, OpenVINORuntime, RuntimeUnavailable, TorchRuntime
from xvit.models.quantization import apply_quantization


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="xvit_base_patch16")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = xvit.create_model(args.model, num_frames=args.frames, img_size=args.size).eval()
    x = torch.randn(1, 3, args.frames, args.size, args.size)
    rows = {"eager fp32": TorchRuntime(model)}

    class Bf16:
        name = "torch-bf16"

        def run(self, batch):
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
                return model(torch.from_numpy(batch)).float().numpy()

    rows["eager bf16"] = Bf16()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        export_model(model, "onnx", f"{tmp}/m.onnx", batch=1)
        print(f"ONNX export + check: {time.perf_counter() - t0:.0f} s", flush=True)
        rows["onnxruntime fp32"] = OnnxRuntime(f"{tmp}/m.onnx")
        try:
            rows["openvino fp32"] = OpenVINORuntime(f"{tmp}/m.onnx")
        except RuntimeUnavailable as e:
            print(f"openvino skipped: {e}")
        rows["int8 dynamic (torch)"] = TorchRuntime(apply_quantization(model, {"method": "dynamic"}))
        batch = x.numpy()
        ref = torch.from_numpy(rows["eager fp32"].run(batch)).softmax(-1)
        diffs = {
            k: float((torch.from_numpy(r.run(batch)).softmax(-1) - ref).abs().max()) for k, r in rows.items()
        }
        times: dict[str, list[float]] = {k: [] for k in rows}
        for _ in range(args.repeats):
            for k, r in rows.items():
                t = time.perf_counter()
                r.run(batch)
                times[k].append(time.perf_counter() - t)
    base = 1 / statistics.median(times["eager fp32"])
    result = {
        "model": args.model,
        "input": [1, 3, args.frames, args.size, args.size],
        "threads": torch.get_num_threads(),
        "loadavg": os.getloadavg(),
        "rows": {},
    }
    print(f"{'runtime':24s} {'clips/s':>8s} {'x eager':>8s} {'max prob diff':>14s}")
    for k in rows:
        cps = 1 / statistics.median(times[k])
        result["rows"][k] = {"clips_per_s": cps, "speedup": cps / base, "max_prob_diff": diffs[k]}
        print(f"{k:24s} {cps:8.3f} {cps / base:8.2f} {diffs[k]:14.2e}")
    print(f"load average {os.getloadavg()}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
