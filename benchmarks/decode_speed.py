"""Decode + transform throughput for 8x224 clips from 10-second 720p videos.

Writes test videos with PyAV (H.264, default x264 settings, GOP 250 as ffmpeg's default and
GOP 30) into a cache folder once, then measures clips/s of

    decode 8 frames (stride 8) -> float -> short-side resize to 224 (antialiased) -> centre crop

for each installed backend, seek-based (``xvit.data.VideoReader``: seek to the keyframe before
the clip, decode forward, stop after its last frame) against a full decode of the video (every
frame decoded, only the clip's frames converted to RGB: the cheapest full decode), with one
and two DataLoader workers. Each clip opens its video afresh and the reader's index cache is
cleared, as a dataset visiting each video once per epoch would. "seek-noskip" is the seek-based
reader without its non-reference-frame skipping (an ablation). Prints a table, writes JSON.

    python benchmarks/decode_speed.py --clips 24 --json decode_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from scene import scene_frames, write_h264
from torch.utils.data import DataLoader, Dataset

import xvit.data.video as xvideo
from xvit.benchmarks.machine import cpu_model
from xvit.data import VideoReader, torchcodec_available

NUM_FRAMES, STRIDE, SIZE = 8, 8, 224


def make_video(path: Path, seconds: int, fps: int, height: int, width: int, gop: int, seed: int) -> None:
    """A panning textured background with moving blocks: H.264, x264 defaults, given GOP."""
    frames = scene_frames(seconds * fps, height, width, seed)
    write_h264(path, frames, fps, height, width, gop, {"keyint_min": str(min(gop, 25)), "threads": "2"})


def transform(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (T, 3, H, W) -> float (3, T, 224, 224): short-side resize and centre crop."""
    h, w = frames.shape[-2:]
    scale = SIZE / min(h, w)
    x = F.interpolate(
        frames.float(),
        size=(round(h * scale), round(w * scale)),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    top, left = (x.shape[-2] - SIZE) // 2, (x.shape[-1] - SIZE) // 2
    x = x[..., top : top + SIZE, left : left + SIZE]
    return ((x / 255 - 0.5) / 0.5).permute(1, 0, 2, 3).contiguous()


def full_decode_clip(path: Path, indices: list[int]) -> torch.Tensor:
    """Decode every frame of the video; keep (convert to RGB) only the clip's frames."""
    wanted, frames = set(indices), {}
    with av.open(str(path)) as container:
        container.streams.video[0].thread_count = 1  # one decoder thread, as VideoReader
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                frames[i] = torch.from_numpy(frame.to_ndarray(format="rgb24"))
    return torch.stack([frames[i] for i in indices]).permute(0, 3, 1, 2)


class ClipSet(Dataset):
    """Clip i: a random video and a random start (seeded), 8 frames with stride 8."""

    def __init__(
        self, videos: list[Path], num_frames: int, clips: int, mode: str, backend: str, seed: int = 0
    ) -> None:
        rng = np.random.default_rng(seed)
        span = (NUM_FRAMES - 1) * STRIDE + 1
        self.items = [
            (videos[int(rng.integers(len(videos)))], int(rng.integers(0, num_frames - span + 1)))
            for _ in range(clips)
        ]
        self.mode, self.backend = mode, backend

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, float]:
        """The transformed clip and the CPU seconds this process spent making it."""
        cpu = time.process_time()
        path, start = self.items[i]
        indices = list(range(start, start + NUM_FRAMES * STRIDE, STRIDE))
        if self.mode == "full":
            frames = full_decode_clip(path, indices)
        else:
            xvideo._INDEX_CACHE.clear()  # a fresh video per sample, as in an epoch
            with VideoReader(path, backend=self.backend) as reader:
                if self.mode == "seek-noskip":  # ablation: decode non-reference frames too
                    reader._impl._skip_nonref = False
                frames = reader.read(indices)
        clip = transform(frames)
        return clip, time.process_time() - cpu


def _single_thread(_: int) -> None:
    torch.set_num_threads(1)


def measure(dataset: ClipSet, workers: int) -> tuple[float, float]:
    """Clips/s through a DataLoader (timed after each worker delivered its first clip) and the
    median CPU milliseconds per clip (insensitive to other load on the machine)."""
    torch.set_num_threads(1)
    loader = DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=workers, worker_init_fn=_single_thread
    )
    start, counted, cpu = None, 0, []
    for k, (clip, seconds) in enumerate(loader):
        assert clip.shape == (3, NUM_FRAMES, SIZE, SIZE)
        cpu.append(seconds)
        if k + 1 == max(workers, 1):
            start = time.perf_counter()
        elif start is not None:
            counted += 1
    return counted / (time.perf_counter() - start), 1000 * float(np.median(cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/decode_bench"))
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--gops", type=int, nargs="+", default=[250, 30])
    parser.add_argument("--clips", type=int, default=24, help="clips per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()

    backends = ["pyav"] + (["torchcodec"] if torchcodec_available() else [])
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    num_frames = args.seconds * args.fps
    rows = []
    for gop in args.gops:
        videos = []
        for v in range(args.videos):
            path = args.cache_dir / f"v{v}_{args.width}x{args.height}_{num_frames}f_gop{gop}.mp4"
            if not path.exists():
                print(f"writing {path} ...", flush=True)
                make_video(path, args.seconds, args.fps, args.height, args.width, gop, seed=v)
            videos.append(path)
        mb = sum(p.stat().st_size for p in videos) / len(videos) / 2**20
        for backend in backends:
            for mode in ("seek", "seek-noskip", "full"):
                if mode != "seek" and backend != "pyav":
                    continue  # the baselines are plain PyAV
                for workers in args.workers:
                    ds = ClipSet(videos, num_frames, args.clips + max(workers, 1), mode, backend)
                    rate, cpu_ms = measure(ds, workers)
                    rows.append(
                        dict(
                            gop=gop,
                            backend=backend,
                            mode=mode,
                            workers=workers,
                            clips_per_s=round(rate, 3),
                            cpu_ms_per_clip=round(cpu_ms, 1),
                            video_mb=round(mb, 2),
                        )
                    )
                    print(
                        f"gop {gop:>4}  {backend:<10} {mode:<5} workers {workers}: "
                        f"{rate:7.2f} clips/s, {cpu_ms:7.1f} CPU ms/clip",
                        flush=True,
                    )

    print("\n| GOP | backend | decode | workers | clips/s | CPU ms / clip |")
    print("|----:|---------|-------------|--------:|--------:|--------------:|")
    for r in rows:
        print(
            f"| {r['gop']} | {r['backend']} | {r['mode']} | {r['workers']} | "
            f"{r['clips_per_s']:.2f} | {r['cpu_ms_per_clip']:.0f} |"
        )
    torch.set_num_threads(1)
    frames = torch.randint(0, 256, (NUM_FRAMES, 3, args.height, args.width), dtype=torch.uint8)
    cost = []
    for _ in range(7):
        cpu = time.process_time()
        transform(frames)
        cost.append(time.process_time() - cpu)
    transform_ms = 1000 * float(np.median(cost))
    print(f"\ntransform alone (8 frames {args.width}x{args.height} -> 224): {transform_ms:.1f} CPU ms/clip")
    info = dict(
        transform_cpu_ms_per_clip=round(transform_ms, 1),
        clip=f"{NUM_FRAMES}x{SIZE} (stride {STRIDE})",
        videos=f"{args.videos} x {args.seconds}s {args.width}x{args.height} {args.fps}fps H.264",
        python=platform.python_version(),
        torch=torch.__version__,
        av=av.__version__,
        ffmpeg_libavcodec=".".join(map(str, av.library_versions["libavcodec"])),
        cpu=cpu_model(),
        cpu_count=os.cpu_count(),
        results=rows,
    )
    print(json.dumps(info, indent=1))
    if args.json:
        args.json.write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
