"""Where a model's inference time goes: torch.profiler's top operators for one forward.

    python benchmarks/profile_model.py xvit_base_patch16 --frames 8 --threads 2 [--dtype bf16-model]

Prints the operators sorted by self CPU time and the share of the time spent in matrix
products (aten::mm/addmm/bmm/linear kernels and the SDPA kernel) against everything else
(copies, layout changes, norms, activations): the part a model's own code can change.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from xvit.benchmarks.forward import input_dtype, make_call, prepare_model
from xvit.benchmarks.spec import ModelSpec

GEMM_OPS = (
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::baddbmm",
    "aten::convolution",
    "aten::mkldnn_convolution",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_mkldnn_linear",
    "aten::mkldnn_linear",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="registry name or peer (hf_timesformer, ...)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16-model", "bf16-autocast"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = ModelSpec(args.model, args.frames, args.img_size)
    dev = torch.device("cpu")
    model = prepare_model(spec.build(), args.dtype, dev)
    x = torch.randn(spec.input_shape(args.batch)).to(input_dtype(args.dtype))
    call = make_call(model, x, args.dtype, dev)
    call()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    total = sum(e.self_cpu_time_total for e in events)
    gemm = sum(e.self_cpu_time_total for e in events if e.key in GEMM_OPS)
    print(
        f"{spec.display} b{args.batch} {args.dtype}: total self CPU {total / 1e6:.2f} s, "
        f"matrix products {gemm / total:.1%}, everything else {(total - gemm) / total:.1%}"
    )


if __name__ == "__main__":
    main()
