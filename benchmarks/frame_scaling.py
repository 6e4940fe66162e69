"""Time and memory against the number of frames for X-ViT, divided and joint attention.

Runs `xvit benchmark` on the three models at T = 8, 16, 32, 64 (batch 1, fp32, interleaved,
peak memory per model in its own process), writes `frame_scaling.{json,md}` and the
`frame_scaling_frames.png` plot into --out (with the speed targets of speed_targets.yaml
that these runs measure), then prints each model's scaling: time ratios,
the power-law exponent and the share of the largest clip's time that a fitted T^2 term
explains (X-ViT: linear, about 0; joint: quadratic, growing with T).

    python benchmarks/frame_scaling.py --threads 2 --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from speed_targets import apply_targets

from xvit.benchmarks.report import frame_scaling_table
from xvit.benchmarks.targets import targets_table
from xvit.cli import benchmark as benchmark_cli


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="xvit,timesformer,joint_vit")
    parser.add_argument("--frames", default="8,16,32,64")
    parser.add_argument("--size", default="base")
    parser.add_argument("--img-size", default="224")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--repeats", default="3")
    parser.add_argument("--warmup", default="1", help="untimed calls per item (0: none)")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", default="runs/benchmark")
    args = parser.parse_args()
    argv = [
        "benchmark",
        "--models",
        args.models,
        "--frames",
        args.frames,
        "--batch",
        "1",
        "--size",
        args.size,
        "--img-size",
        args.img_size,
        "--dtype",
        args.dtype,
        "--repeats",
        args.repeats,
        "--warmup",
        args.warmup,
        "--threads",
        args.threads,
        "--name",
        "frame_scaling",
        "--out",
        args.out,
    ] + (["--no-memory"] if args.no_memory else [])
    print("xvit " + " ".join(argv))
    cli = argparse.ArgumentParser(prog="xvit")
    benchmark_cli.add_parser(cli.add_subparsers())
    bench_args = cli.parse_args(argv)
    rc = bench_args.func(bench_args)
    targets = apply_targets(Path(args.out) / "frame_scaling.json")  # time(T=32) / time(T=8)
    payload = json.loads((Path(args.out) / "frame_scaling.json").read_text())
    print()
    print(frame_scaling_table(payload["frame_scaling"]))
    if targets:
        print()
        print(targets_table(targets))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
