"""Streaming latency and dropped frames of `xvit predict --stream` on a realtime-paced file.

Writes a synthetic video (default 20 s at 25 fps, 640x360 H.264: a moving gradient; cached
next to the output), saves each model with random weights (400 classes, 8 frames, 224x224:
speed does not depend on the weights), runs

    xvit predict --checkpoint MODEL --stream VIDEO --realtime --topk 1

for each model as a separate process, and reports the summary line: windows predicted and
skipped, frames read and dropped, median and p95 latency (last frame decoded -> probabilities
ready). Prints a table and writes JSON with the machine (and its load average).

    python benchmarks/stream_latency.py --json stream_latency.json
    python benchmarks/stream_latency.py --models xvit_tiny_patch16 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np

import xvit
from xvit.benchmarks.machine import machine_info


def synthetic_video(path: Path, seconds: float, fps: int = 25, width: int = 640, height: int = 360) -> Path:
    """A moving colour gradient (H.264, yuv420p), written once."""
    if path.exists():
        return path
    y, x = np.mgrid[0:height, 0:width]
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.stack([(x + 7 * i) % 256, (y + 3 * i) % 256, np.full_like(x, (5 * i) % 256)], -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="xvit_tiny_patch16,xvit_base_patch16")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the stream (default 20)")
    p.add_argument("--work", default="stream_latency_work", help="where the video and models go")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    video = synthetic_video(work / f"stream_{args.seconds:g}s_25fps_640x360.mp4", args.seconds)
    results = []
    for name in args.models.split(","):
        model_dir = work / name
        if not (model_dir / "model.safetensors").exists():
            xvit.create_model(name, num_classes=400, num_frames=8).save_pretrained(model_dir)
        command = ["xvit", "predict", "--checkpoint", str(model_dir), "--stream", str(video), "--realtime"]
        command += ["--topk", "1"]
        before = machine_info()["load_average"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines or lines[-1].get("type") != "summary":
            print(f"{name}: exit code {done.returncode}: {done.stderr.strip()}", file=sys.stderr)
            return 1
        summary = dict(lines[-1], model=name, command=" ".join(command), load_average_before=before)
        summary["warnings"] = done.stderr.count("warning:")
        results.append(summary)
    print(
        f"{'model':22} {'windows':>8} {'skipped':>8} {'frames':>7} {'dropped':>8} {'median ms':>10} {'p95 ms':>9}"
    )
    for r in results:
        print(
            f"{r['model']:22} {r['windows']:8d} {r['windows_skipped']:8d} {r['frames_read']:7d} "
            f"{r['frames_dropped']:8d} {r['latency_ms_median']:10.1f} {r['latency_ms_p95']:9.1f}"
        )
    if args.json:
        out = Path(args.json)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps({"machine": machine_info(), "results": results}, indent=2) + "\n")
        os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
