"""Timeline speed with and without exact segment reuse, side by side in one run.

Writes a synthetic video (default 120 s at 25 fps, 128x96, H.264 ultrafast: a few seconds to
generate; cached next to the output), saves a model with random weights in the released
K600 layout (16 frames in two segments of 8, temporal embedding of 8 entries tiled), and
times `engine.infer.timeline.compute_timeline` over the whole video with reuse off and on
(windows of 16 frames, stride 8: half a window). Reports windows/s, seconds of video per
second, the backbone's share of the time without reuse (the backbone's calls timed inside
the run), the speed-up and the goal 0.9 x backbone share x (window / stride); checks that
both runs give the same probabilities. Prints a table and writes JSON.

    python benchmarks/timeline_speed.py --json timeline_speed.json
    python benchmarks/timeline_speed.py --model xvit_base_patch16 --img-size 224 --seconds 8
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

import xvit
from xvit.benchmarks.machine import machine_info
from xvit.engine.infer.timeline import TimelineOptions, compute_timeline
from xvit.engine.run.saved import load_run


def synthetic_video(path: Path, seconds: float, fps: int = 25, width: int = 128, height: int = 96) -> Path:
    """A moving gradient with a square that changes direction every 10 s (H.264, ultrafast)."""
    if path.exists():
        return path
    n = int(seconds * fps)
    y, x = np.mgrid[0:height, 0:width]
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(n):
            img = np.stack(
                [(x * 2 + i) % 256, (y * 2 + 2 * i) % 256, np.full_like(x, (i // 250) * 40 % 256)], -1
            )
            phase = (i // (10 * fps)) % 4
            dx, dy = [(1, 0), (0, 1), (-1, 0), (0, -1)][phase]
            cx, cy = (width // 2 + dx * (i % 250) // 8) % width, (height // 2 + dy * (i % 250) // 8) % height
            img[max(cy - 8, 0) : cy + 8, max(cx - 8, 0) : cx + 8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)
    return path


def timed_backbone(model: torch.nn.Module) -> list[float]:
    """Time every backbone call of `model` (instance-level wrappers); returns the list the
    seconds are appended to."""
    spent: list[float] = []
    for name in ("forward_features", "forward_segment_features"):
        original = getattr(model, name)

        def wrapper(*args, _original=original, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent.append(time.perf_counter() - start)

        setattr(model, name, wrapper)
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="xvit_tiny_patch16")
    ap.add_argument("--img-size", type=int, default=112)
    ap.add_argument("--seconds", type=float, default=120.0, help="length of the synthetic video")
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "xvit_timeline_speed"))
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    video = synthetic_video(cache / f"synthetic_{args.seconds:g}s.mp4", args.seconds)
    generate_s = time.perf_counter() - start
    torch.manual_seed(0)
    model = xvit.create_model(
        args.model,
        num_classes=600,
        num_frames=16,
        img_size=args.img_size,
        segment_len=8,
        temp_embed_frames=8,
        temp_embed_mode="tile",
    )
    ckpt = cache / f"{args.model}_{args.img_size}"
    model.save_pretrained(ckpt)
    model, cfg = load_run(ckpt)
    model.eval()
    spent = timed_backbone(model)
    rows, probs = [], {}
    for reuse in (False, True):
        spent.clear()
        opts = TimelineOptions(stride=args.stride, batch_size=args.batch_size, reuse=reuse)
        t0 = time.perf_counter()
        tl = compute_timeline(model, cfg, video, opts, torch.device("cpu"))
        wall = time.perf_counter() - t0
        probs[reuse] = tl.probs
        duration = tl.seconds(len(tl.times))
        rows.append(
            {
                "reuse": reuse,
                "windows": len(tl.starts),
                "seconds": round(wall, 2),
                "windows_per_s": round(len(tl.starts) / wall, 2),
                "video_s_per_s": round(duration / wall, 2),
                "backbone_share": round(sum(spent) / wall, 3),
                "segments_computed": tl.computed if reuse else None,
                "segments_reused": tl.reused if reuse else None,
            }
        )
    off, on = rows
    window = 16
    goal = 0.9 * off["backbone_share"] * window / args.stride
    result = {
        "model": args.model,
        "img_size": args.img_size,
        "video_seconds": args.seconds,
        "video_generate_s": round(generate_s, 2),
        "window_frames": window,
        "stride": args.stride,
        "rows": rows,
        "speedup": round(on["windows_per_s"] / off["windows_per_s"], 3),
        "goal": round(goal, 3),
        "max_abs_prob_diff": float((probs[True] - probs[False]).abs().max()),
        "same_top1": bool(torch.equal(probs[True].argmax(-1), probs[False].argmax(-1))),
        "machine": machine_info("cpu"),
        "torch_threads": torch.get_num_threads(),
    }
    print(
        f"{args.model} @ {args.img_size}px, 16-frame windows, stride {args.stride}, {args.seconds:g} s video"
    )
    print(f"{'reuse':>6} {'windows':>8} {'wall s':>8} {'windows/s':>10} {'video s/s':>10} {'backbone':>9}")
    for r in rows:
        print(
            f"{'on' if r['reuse'] else 'off':>6} {r['windows']:>8} {r['seconds']:>8} "
            f"{r['windows_per_s']:>10} {r['video_s_per_s']:>10} {r['backbone_share']:>9}"
        )
    print(
        f"speed-up {result['speedup']}x, goal >= {result['goal']}x "
        f"(0.9 x backbone share {off['backbone_share']} x window/stride {window / args.stride:g}); "
        f"max |p_reuse - p_recompute| = {result['max_abs_prob_diff']:.2e}, same top-1: {result['same_top1']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
