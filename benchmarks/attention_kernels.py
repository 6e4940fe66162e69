"""The attention product on CPU: PyTorch's fused SDPA kernel against the plain product
(scores, softmax, weighted values) whole and in cache-sized chunks, per dtype and shape.

This is the measurement behind `xvit.models.attention.attention`'s choice of kernel
(docs/benchmarks.md, "bf16 attention"). Shapes are ViT-B/16's (12 heads of 64) at 224:
per-frame attention (197 tokens, one row per frame), TimeSformer's temporal attention (T
tokens, one row per patch) and joint attention (1 + 196 T tokens, one row).

    python benchmarks/attention_kernels.py --threads 2 --json docs/benchmarks/attention_kernels.json

`--model-frames 8,16` also times the whole bf16 X-ViT-B/16 at those clip lengths with the
chunked product and with SDPA forced (interleaved), the fix's effect on the model.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from xvit.models import attention as attn

SHAPES = [  # (label, rows, tokens)
    ("per-frame, 8 frames", 8, 197),
    ("per-frame, 16 frames", 16, 197),
    ("per-frame, 32 frames", 32, 197),
    ("temporal, T=8", 196, 8),
    ("temporal, T=16", 196, 16),
    ("joint, T=8", 1, 1 + 196 * 8),
]


def _time(fn: Callable[[], torch.Tensor], repeats: int) -> list[float]:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _time_models(frames: list[int], repeats: int) -> list[dict]:
    """bf16 X-ViT-B/16 per clip length, chunked product vs SDPA forced, interleaved."""
    from xvit.models import create_model

    if not frames:
        return []
    model = create_model("xvit_base_patch16", num_classes=400).eval().to(torch.bfloat16)
    modes = {"chunked": "auto", "sdpa": "sdpa"}  # the attention kernel of each column
    out = []
    print("\n| model | T x S | dtype | chunked product ms | SDPA ms | SDPA / chunked |")
    print("|---|---|---|---:|---:|---:|")
    with torch.inference_mode():
        for t in frames:
            x = torch.randn(1, 3, t, 224, 224, generator=torch.Generator().manual_seed(0))
            x = x.to(torch.bfloat16)
            times: dict[str, list[float]] = {key: [] for key in modes}
            for _ in range(repeats + 1):  # the first round warms up
                for key, kernel in modes.items():
                    with attn.attention_kernel(kernel):
                        start = time.perf_counter()
                        model(x)
                        times[key].append((time.perf_counter() - start) * 1e3)
            med = {key: statistics.median(v[1:]) for key, v in times.items()}
            out.append({"model": "xvit_base_patch16", "frames": t, "ms": med, "times_ms": times})
            print(
                f"| xvit_base_patch16 | {t}x224 | bf16 | {med['chunked']:.0f} | {med['sdpa']:.0f} | "
                f"{med['sdpa'] / med['chunked']:.3f} |"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--model-frames", default="", help="e.g. 8,16: also time bf16 X-ViT-B/16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print("| attention | rows x tokens | dtype | fused SDPA ms | plain ms | chunked ms | used by xvit |")
    print("|---|---|---|---:|---:|---:|---|")
    for label, r, n in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            gen = torch.Generator().manual_seed(0)
            # strided views of one qkv tensor, as the models hand them over
            qkv = torch.randn(r, n, 3, 12, 64, generator=gen).to(dtype)
            q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
            with torch.inference_mode():
                cases = {
                    "sdpa": lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v),
                    "plain": lambda q=q, k=k, v=v: attn.chunked_product(q, k, v, chunk_bytes=sys.maxsize),
                    "chunked": lambda q=q, k=k, v=v: attn.chunked_product(q, k, v),
                }
                # interleave the three so drift hits all alike
                times: dict[str, list[float]] = {key: [] for key in cases}
                for _ in range(args.repeats):
                    for key, fn in cases.items():
                        times[key] += _time(fn, 1)
            med = {key: statistics.median(t) for key, t in times.items()}
            used = "chunked" if attn.uses_chunked_product(q, k) else "sdpa"
            rows.append(
                {
                    "attention": label,
                    "rows": r,
                    "tokens": n,
                    "dtype": str(dtype),
                    "ms": med,
                    "used": used,
                    "times_ms": times,
                }
            )
            print(
                f"| {label} | {r} x {n} | {str(dtype).removeprefix('torch.')} | "
                f"{med['sdpa']:.1f} | {med['plain']:.1f} | {med['chunked']:.1f} | {used} |"
            )
    models = _time_models([int(t) for t in args.model_frames.split(",") if t], args.repeats)
    if args.json:
        meta = {
            "torch": torch.__version__,
            "threads": args.threads,
            "repeats": args.repeats,
            "machine": platform.processor() or platform.machine(),
            "utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows, "models": models}, f, indent=1)


if __name__ == "__main__":
    main()
