"""What `xvit data prepare` buys: training-clip throughput from camera-like originals against
the same videos re-encoded (short side 256 or 320, a keyframe every 16 frames, no B-frames).

Writes ``--videos`` source videos once into ``--cache-dir/src/<class>/`` (H.264 1280x720,
30 fps, 10 s, GOP 250 and 3 B-frames: what a camera or a default ffmpeg re-encode gives),
prepares them with :func:`xvit.data.prepare.prepare_dataset` (2 processes, timed), then
measures decode + transform of 8x224 training clips exactly as ``xvit train`` builds them
(:class:`xvit.data.VideoDataset` with :class:`xvit.data.TrainTransform`, scale jitter
[256, 320], random crop 224, flip), in one process with one thread, each clip from a freshly
opened video (the reader's index cache is cleared, as in an epoch over a large dataset).
Reports wall clips/s and the median CPU milliseconds per clip (the figure that carries over
when other jobs share the machine), for uniform (the engine's default) and dense (stride 8)
sampling. Prints a table, writes JSON.

    python benchmarks/prepare_speed.py --cache-dir /tmp/bench/prepare --clips 12 --json prepare_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import av
import numpy as np
import torch
from scene import scene_frames, write_h264

import xvit.data.video as xvideo
from xvit.benchmarks.machine import cpu_model
from xvit.data import TrainTransform, VideoDataset
from xvit.data.folders import read_class_folders
from xvit.data.prepare import PrepareSettings, prepare_dataset, read_source


def make_camera_video(path: Path, seconds: int, fps: int, height: int, width: int, seed: int) -> None:
    """A panning textured scene with moving blocks, encoded like a camera: long GOP (250),
    B-frames (3), x264 ``veryfast`` (to keep generation short)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.mp4")
    write_h264(
        tmp,
        scene_frames(seconds * fps, height, width, seed),
        fps,
        height,
        width,
        250,
        {"preset": "veryfast", "x264-params": "keyint=250:min-keyint=25:bframes=3", "threads": "2"},
    )
    os.replace(tmp, path)


def measure(samples: list, sampling: str, clips: int, seed: int = 0) -> tuple[float, float]:
    """Wall clips/s and median CPU ms per clip of the training dataset over ``samples``."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rate = 8 if sampling == "dense" else 1
    dataset = VideoDataset(
        samples,
        num_frames=8,
        sampler=sampling,
        sampling_rate=rate,
        transform=TrainTransform(crop_size=224),
        mode="train",
    )
    order = np.random.default_rng(seed).integers(0, len(samples), size=clips + 1)
    cpu, start = [], None
    for k, i in enumerate(order):
        if k == 1:
            start = time.perf_counter()  # the first clip warms up imports and caches
        xvideo._INDEX_CACHE.clear()
        t = time.process_time()
        item = dataset[int(i)]
        cpu.append(time.process_time() - t)
        assert item["video"].shape == (3, 8, 224, 224) and not item["replaced"]
    return clips / (time.perf_counter() - start), 1000 * float(np.median(cpu[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/prepare_bench"))
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--short-sides", type=int, nargs="+", default=[256, 320])
    parser.add_argument("--gop", type=int, default=16)
    parser.add_argument("--clips", type=int, default=12, help="clips per measurement")
    parser.add_argument("--samplings", nargs="+", default=["uniform", "dense"])
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()

    src = args.cache_dir / "src"
    for v in range(args.videos):
        path = src / f"c{v % 2}" / f"v{v}_{args.width}x{args.height}_{args.seconds}s.mp4"
        if not path.exists():
            print(f"writing {path} ...", flush=True)
            make_camera_video(path, args.seconds, args.fps, args.height, args.width, seed=v)
    original = read_class_folders(src).samples
    mb = sum(Path(s.path).stat().st_size for s in original) / len(original) / 2**20
    sets = [("original", f"{args.width}x{args.height}, GOP 250, B-frames", original, mb, None)]
    for short in args.short_sides:
        out = args.cache_dir / f"prepared_{short}_gop{args.gop}"
        shutil.rmtree(out, ignore_errors=True)  # time the full preparation
        t = time.perf_counter()
        result = prepare_dataset(
            read_source(src, val_split=0.0),
            out,
            PrepareSettings(short_side=short, gop=args.gop),
            workers=2,
            progress=False,
        )
        seconds = time.perf_counter() - t
        assert result.prepared == len(original) and not result.failed
        samples = read_class_folders(out / "videos").samples
        size = sum(Path(s.path).stat().st_size for s in samples) / len(samples) / 2**20
        sets.append(
            (
                f"prepared {short}",
                f"short side {short}, GOP {args.gop}, no B-frames",
                samples,
                size,
                seconds / len(samples),
            )
        )
        print(
            f"prepared {len(samples)} videos at short side {short} in {seconds:.1f} s (2 processes)",
            flush=True,
        )

    rows = []
    for name, desc, samples, size, prep_s in sets:
        for sampling in args.samplings:
            rate, cpu_ms = measure(samples, sampling, args.clips)
            rows.append(
                {
                    "videos": name,
                    "format": desc,
                    "sampling": sampling,
                    "clips_per_s": round(rate, 3),
                    "cpu_ms_per_clip": round(cpu_ms, 1),
                    "video_mb": round(size, 2),
                    "prepare_s_per_video": None if prep_s is None else round(prep_s, 2),
                }
            )
            print(f"{name:<14} {sampling:<8}: {rate:6.2f} clips/s, {cpu_ms:7.1f} CPU ms/clip", flush=True)

    print("\n| videos | format | MB / video | sampling | clips/s (1 process) | CPU ms / clip |")
    print("|---|---|---:|---|---:|---:|")
    for r in rows:
        print(
            f"| {r['videos']} | {r['format']} | {r['video_mb']:.2f} | {r['sampling']} | "
            f"{r['clips_per_s']:.2f} | {r['cpu_ms_per_clip']:.0f} |"
        )
    if args.json:
        info = {
            "clip": "8x224, TrainTransform(crop_size=224): scale jitter [256, 320], flip",
            "videos": f"{args.videos} x {args.seconds}s {args.width}x{args.height} {args.fps}fps",
            "python": platform.python_version(),
            "torch": torch.__version__,
            "av": av.__version__,
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "results": rows,
        }
        args.json.write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()
