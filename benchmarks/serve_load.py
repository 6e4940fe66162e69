"""Load test of `xvit serve` on loopback: concurrent clients posting 2-second clips.

Starts `xvit serve` as a subprocess on 127.0.0.1 (a free port) for each server setting,
then, for each number of concurrent clients, every client posts the same 2-second clip (50
frames at 25 fps, 320x240 H.264) in a loop until the level has sent `--requests` requests
or run `--seconds` seconds, whichever comes first. Per level: throughput (answers per
second), p50 / p95 / p99 latency of the 200 answers, counts by status, and the server's RSS
(main process; main + decode workers) before and after. Settings: batching on (max-batch 8)
and off (max-batch 1) below the queue limit, and batching on with a queue limit smaller
than the number of clients (503s expected). Stops by itself; loopback only.

    python benchmarks/serve_load.py --json /tmp/serve_load.json

The model is a tiny X-ViT (embed 64, depth 2, 8 frames, 32x32 input, random weights) unless
`--checkpoint` names another (a run or save_pretrained directory, or a registry name).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx


def tiny_model(root: Path) -> Path:
    import torch

    import xvit

    torch.manual_seed(0)
    model = xvit.create_model(
        "xvit_tiny_patch16",
        num_frames=8,
        num_classes=10,
        embed_dim=64,
        depth=2,
        num_heads=2,
        img_size=32,
        head="avg",
    )
    model.save_pretrained(root / "model")
    return root / "model"


def two_second_clip(path: Path) -> Path:
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(50):
            img = np.zeros((240, 320, 3), np.uint8)
            img[:, :, 0] = (np.arange(320)[None, :] + 6 * i) % 256
            img[60:120, (5 * i) % 260 : (5 * i) % 260 + 60] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, children: bool) -> float:
    def one(p: int) -> int:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    total = one(pid)
    if children:
        kids = Path(f"/proc/{pid}/task/{pid}/children")
        for child in kids.read_text().split() if kids.exists() else []:
            total += rss_mb(int(child), True) * 1024
    return total / 1024


class Server:
    def __init__(self, checkpoint: str, log: Path, **flags: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "xvit.cli.main", "serve", "--checkpoint", checkpoint]
        cmd += ["--port", str(self.port), "--log-level", "warning"]
        for k, v in flags.items():
            cmd += [f"--{k.replace('_', '-')}", str(v)]
        self.command = " ".join(cmd[3:])
        self.log = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"xvit serve exited with {self.proc.returncode}; see {log}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("xvit serve did not start within 120 s")

    def stop(self) -> int:
        self.proc.terminate()  # SIGTERM: graceful
        try:
            return self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()


def run_level(url: str, clip: bytes, clients: int, requests: int, seconds: float) -> dict:
    lock = threading.Lock()
    sent = [0]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    deadline = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(timeout=60) as c:
            while True:
                with lock:
                    if sent[0] >= requests or time.monotonic() >= deadline:
                        return
                    sent[0] += 1
                t0 = time.perf_counter()
                try:
                    code = str(c.post(f"{url}/v1/predict", files={"file": ("clip.mp4", clip)}).status_code)
                except httpx.HTTPError as e:
                    code = type(e).__name__
                dt = time.perf_counter() - t0
                with lock:
                    statuses[code] = statuses.get(code, 0) + 1
                    if code == "200":
                        latencies.append(dt)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client) for _ in range(clients)]:
            f.result()
    wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {
        "clients": clients,
        "requests": sum(statuses.values()),
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 2),
        "p50_ms": round(q[49] * 1000, 1) if q else None,
        "p95_ms": round(q[94] * 1000, 1) if q else None,
        "p99_ms": round(q[98] * 1000, 1) if q else None,
        "statuses": statuses,
        "errors": sum(v for k, v in statuses.items() if k != "200"),
    }


def batch_stats(url: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics").text
    vals = {}
    for line in text.splitlines():
        if line.startswith(("xvit_serve_batch_size_sum", "xvit_serve_batch_size_count")):
            name, value = line.split()
            vals[name] = float(value)
    return vals.get("xvit_serve_batch_size_count", 0.0), vals.get("xvit_serve_batch_size_sum", 0.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="model to serve (default: a tiny X-ViT made here)")
    ap.add_argument("--clients", default="1,4,16", help="concurrent clients per level (default 1,4,16)")
    ap.add_argument("--requests", type=int, default=200, help="requests per level at most (default 200)")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per level at most (default 10)")
    ap.add_argument("--decode-workers", type=int, default=2)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    root = Path(tempfile.mkdtemp(prefix="xvit-serve-load-"))
    checkpoint = args.checkpoint or str(tiny_model(root))
    clip = two_second_clip(root / "clip.mp4").read_bytes()
    settings = [
        ("batching on", {"max_batch": 8, "max_wait_ms": 10, "max_queue": 64}, levels),
        ("batching off", {"max_batch": 1, "max_wait_ms": 0, "max_queue": 64}, levels),
        ("over the queue limit", {"max_batch": 8, "max_wait_ms": 10, "max_queue": 4}, [max(levels)]),
    ]
    out = {"clip": "2 s, 50 frames, 320x240 H.264", "load_average_start": os.getloadavg(), "runs": []}
    for name, flags, clients in settings:
        server = Server(checkpoint, root / "server.log", decode_workers=args.decode_workers, **flags)
        try:
            run_level(server.url, clip, 1, 3, 10)  # warm up
            for c in clients:
                before = (rss_mb(server.proc.pid, False), rss_mb(server.proc.pid, True))
                calls0, clips0 = batch_stats(server.url)
                r = run_level(server.url, clip, c, args.requests, args.seconds)
                calls1, clips1 = batch_stats(server.url)
                after = (rss_mb(server.proc.pid, False), rss_mb(server.proc.pid, True))
                r.update(
                    setting=name,
                    command=server.command,
                    mean_batch=round((clips1 - clips0) / max(calls1 - calls0, 1), 2),
                    rss_mb_start=round(before[0], 1),
                    rss_mb_end=round(after[0], 1),
                    rss_total_mb_start=round(before[1], 1),
                    rss_total_mb_end=round(after[1], 1),
                    load_average=os.getloadavg(),
                )
                out["runs"].append(r)
                print(json.dumps(r), flush=True)
        finally:
            r_code = server.stop()
            print(f"{name}: server exit code {r_code}", flush=True)
    out["load_average_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
