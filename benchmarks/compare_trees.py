"""Time one model's forward pass in two source trees of xvit, interleaved, in one run.

A refactor must not slow the model down: check out the old commit beside the current tree
(``git worktree add /tmp/before <commit>``) and run::

    python benchmarks/compare_trees.py --trees /tmp/before/src,src --model xvit_base_patch16 \
        --frames 8 --batch 1 --rounds 6 --threads 2

Each round runs one timing subprocess per tree (alternating which goes first), so both trees
see the same machine state; each subprocess builds the model with the same seed, warms up,
and reports the median of ``--repeats`` forward passes. Prints the per-round times, the
median per tree and the ratio, and (``--json``) writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time, statistics, torch
torch.set_num_threads({threads})
torch.manual_seed(0)
import xvit
from xvit.models.registry import create_model
model = create_model({model!r}, num_classes=400, num_frames={frames}, img_size={img}).eval()
x = torch.randn({batch}, 3, {frames}, {img}, {img})
times = []
with torch.inference_mode():
    out = model(x)
    for _ in range({warmup}):
        model(x)
    for _ in range({repeats}):
        t = time.perf_counter(); model(x); times.append(time.perf_counter() - t)
print(json.dumps({{"file": xvit.__file__, "median_s": statistics.median(times),
                  "checksum": float(out.double().sum())}}))
"""


def run_tree(src: str, args: argparse.Namespace) -> dict:
    code = CHILD.format(
        threads=args.threads,
        model=args.model,
        frames=args.frames,
        img=args.img_size,
        batch=args.batch,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    env = {**os.environ, "PYTHONPATH": os.path.abspath(src)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trees", required=True, help="two comma-separated src/ directories (before,after)")
    p.add_argument("--model", default="xvit_base_patch16")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    trees = args.trees.split(",")
    if len(trees) != 2:
        p.error("--trees takes exactly two directories")
    times: dict[str, list[float]] = {t: [] for t in trees}
    checksums: dict[str, float] = {}
    for r in range(args.rounds):
        for t in trees if r % 2 == 0 else trees[::-1]:
            res = run_tree(t, args)
            times[t].append(res["median_s"])
            checksums[t] = res["checksum"]
            print(f"round {r + 1}: {t} ({res['file']}): {res['median_s'] * 1000:.1f} ms", flush=True)
    med = {t: statistics.median(v) for t, v in times.items()}
    best = {t: min(v) for t, v in times.items()}  # the least disturbed round, on a shared machine
    before, after = trees
    print(
        f"median forward: before {med[before] * 1000:.1f} ms, after {med[after] * 1000:.1f} ms, "
        f"after/before {med[after] / med[before]:.3f}; fastest round: before "
        f"{best[before] * 1000:.1f} ms, after {best[after] * 1000:.1f} ms, after/before "
        f"{best[after] / best[before]:.3f}; same output: "
        f"{abs(checksums[before] - checksums[after]) <= 1e-6 * max(1.0, abs(checksums[before]))}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "args": vars(args),
                    "times_s": times,
                    "median_s": med,
                    "min_s": best,
                    "checksums": checksums,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
