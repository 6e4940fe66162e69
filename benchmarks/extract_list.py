"""Feature extraction over a list of synthetic videos with some broken ones, in 1 and N processes.

    python benchmarks/extract_list.py --videos 100 --broken 3 --frames 24 --img-size 112 --procs 1 2

writes WORK/videos/*.mp4 (moving-square clips, plus garbage files), WORK/videos.txt, then runs
`xvit extract --list ... --model xvit_tiny_patch16 --random-init` once per process count
(`torchrun --nproc-per-node N` for N > 1) into WORK/out-N, checks that every good video got
its file and every broken one is in failed.csv, and prints videos/s (the command's wall time,
process start included, and the extraction loop's own figure from its summary line).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np


def write_clip(path: Path, frames: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        y, x = rng.integers(10, 80, size=2)
        for t in range(frames):
            img = np.full((120, 160, 3), rng.integers(0, 80), np.uint8)
            img[y : y + 24, x + 2 * t : x + 2 * t + 24] = 230
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/xvit_extract_bench")
    ap.add_argument("--videos", type=int, default=100)
    ap.add_argument("--broken", type=int, default=3)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--model", default="xvit_tiny_patch16")
    ap.add_argument("--num-frames", type=int, default=8)
    ap.add_argument("--img-size", type=int, default=112)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    work = Path(args.work)
    vids = work / "videos"
    vids.mkdir(parents=True, exist_ok=True)
    names = []
    broken = set(np.linspace(0, args.videos - 1, args.broken, dtype=int).tolist()) if args.broken else set()
    for i in range(args.videos):
        p = vids / f"v{i:04d}.mp4"
        if not p.exists():
            if i in broken:
                p.write_bytes(b"\x00\x00\x00\x18ftypmp42 broken" * 4)
            else:
                write_clip(p, args.frames, i)
        names.append(p.name)
    (work / "videos.txt").write_text("\n".join(f"videos/{n}" for n in names) + "\n")
    for n in args.procs:
        out = work / f"out-{n}"
        if out.exists():
            for f in out.iterdir():
                f.unlink()
        launch = [sys.executable, "-m", "xvit.cli.main"]
        if n > 1:
            launch = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc-per-node",
                str(n),
                "-m",
                "xvit.cli.main",
            ]
        cmd = launch + [
            "extract", "--list", str(work / "videos.txt"), "--model", args.model, "--random-init",
            "--num-frames", str(args.num_frames), "--img-size", str(args.img_size), "--out", str(out), "--no-progress",
        ]  # fmt: skip
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.perf_counter() - t0
        with open(out / "manifest.csv") as f:
            written = len(list(csv.DictReader(f)))
        failed = 0
        if (out / "failed.csv").exists():
            with open(out / "failed.csv") as f:
                failed = len(list(csv.DictReader(f)))
        loop = re.search(r"\(([\d.]+) videos/s", res.stdout)
        ok = written == args.videos - len(broken) and failed == len(broken)
        print(
            f"{n} process(es): {written} written, {failed} failed ({'as expected' if ok else 'UNEXPECTED'}); "
            f"wall {wall:.1f} s = {args.videos / wall:.2f} videos/s; loop {loop[1] if loop else '?'} videos/s",
            flush=True,
        )
        if not ok:
            print(res.stdout[-2000:], res.stderr[-2000:], file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
