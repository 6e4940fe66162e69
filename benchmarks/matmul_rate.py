"""The machine's dense matmul rate (GFLOP/s, 2 n^3 per product) in fp32 and bf16.

The reference the benchmark's "achieved FLOP/s" is compared with; uses the same thread
count as the model benchmarks:

    python benchmarks/matmul_rate.py --threads 2 [--n 2048] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json

import torch

from xvit.benchmarks.machine import load_average, machine_info, measure_matmul_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048, help="matrix size")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=20, help="timed products per dtype")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = {"meta": machine_info(args.device), "rates": []}
    for dtype in (torch.float32, torch.bfloat16):
        rate = measure_matmul_rate(args.n, dtype, args.repeats, args.device)
        out["rates"].append(rate)
        print(
            f"{args.n}x{args.n} {rate['dtype']:>8}: {rate['gflops_median']:7.1f} GFLOP/s median, "
            f"{rate['gflops_max']:7.1f} best  ({args.threads} threads, load {load_average()})"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
