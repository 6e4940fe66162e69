"""Every bf16 and int8 path for X-ViT-B/16 on this CPU, side by side, against the roofline.

    python benchmarks/low_precision.py [--frames 8] [--batch 1 4] [--repeats 3] [--compile] [--json OUT]

Rows (each timed once per round in turn, interleaved, median of ``--repeats`` rounds):

* torch eager fp32; bf16 weights (``bf16-model``) with the attention product ``auto`` picks
  and with each kernel forced (``sdpa``, the chunked ``math``); bf16 autocast;
  ``--compile``: bf16 weights under ``torch.compile`` with inductor's freezing;
* int8: torch's dynamic int8 (``xvit quantize``), ONNX Runtime's static QDQ model (``xvit
  quantize --method static``, calibrated on 4 seeded random clips: speed only), the same
  QDQ file compiled by OpenVINO, and ONNX Runtime's dynamic quantiser on the fp32 export
  (``quantize_dynamic``: int8 weights per output channel in a 7-bit range, the same linear
  layers as torch's dynamic int8; a benchmark row, not an ``xvit quantize`` method);
* OpenVINO on the fp32 ONNX export with ``INFERENCE_PRECISION_HINT`` f32 and bf16.

Each row's achieved GFLOP/s (X-ViT-B/16's FLOPs per clip x clips/s) is divided by the same
precision's dense matmul rate measured in the same run (2048x2048, or smaller where a
product would take over 2 s; int8: the faster of ``torch._int_mm`` and the dynamic quantised
linear), and its largest logit difference to eager fp32 on the timed clip is printed. Where
bf16 has no native products (``xvit.models.hardware.slow_precision``: an AVX2 CPU) the bf16
rows are not timed, and OpenVINO runs the QDQ file's other layers in f32. The CPU's model and flags head the output. Seeded random weights: speed does not
depend on them (agreement on a trained model: ``benchmarks/deploy_speed.py --agreement``).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from xvit.benchmarks.machine import isa_summary, load_average, machine_info, measure_matmul_rate
from xvit.engine.deploy.export import export_model
from xvit.engine.deploy.quantize_static import INPUT_NAME, quantize_onnx_static
from xvit.models import attention as attn
from xvit.models import count_flops, create_model
from xvit.models.hardware import slow_precision
from xvit.models.quantization import apply_quantization

INT8_RECIPE = {"method": "dynamic", "dtype": "qint8", "modules": ["Linear"]}


class RandomClips:
    """Four seeded random clips: the static quantiser's calibration reader (speed rows)."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape, self.i = shape, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= 4:
            return None
        self.i += 1
        gen = torch.Generator().manual_seed(self.i)
        return {INPUT_NAME: torch.randn(*self.shape, generator=gen).numpy()}


def add_bf16_rows(rows: dict[str, tuple], model: torch.nn.Module, x: torch.Tensor) -> None:
    """torch's bf16 paths: bf16 weights (attention as ``auto`` picks, and each kernel forced)
    and bf16 autocast."""
    xb = x.bfloat16()
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    rows["torch bf16 weights (auto attention)"] = ("bf16", lambda: bf16(xb))
    for kernel in ("sdpa", "math"):

        def forced(kernel: str = kernel) -> torch.Tensor:
            with attn.attention_kernel(kernel):
                return bf16(xb)

        rows[f"torch bf16 weights ({kernel} attention)"] = ("bf16", forced)

    def autocast() -> torch.Tensor:
        with torch.autocast("cpu", torch.bfloat16):
            return model(x)

    rows["torch bf16 autocast"] = ("bf16", autocast)


def ort_dynamic_int8(fp32_onnx: Path, out: Path, options: object) -> object:
    """ONNX Runtime's dynamic int8 of the fp32 export (the linear layers' products: MatMul with
    a constant weight and Gemm; int8 weights per output channel in a 7-bit range, as torch's
    x86 dynamic int8 does, activations quantised per call) as a CPU session."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
    quantize_dynamic(
        str(prepared),
        str(out),
        op_types_to_quantize=["MatMul", "Gemm"],
        per_channel=True,
        reduce_range=True,  # 7-bit weights: u8 x s8 products cannot saturate on CPUs without VNNI
        weight_type=QuantType.QInt8,
    )
    return ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])


def rows_for(model: torch.nn.Module, x: torch.Tensor, work: Path, compile_bf16: bool) -> dict[str, tuple]:
    """name -> (precision, call) for every path that runs here; a path that cannot run is
    printed and left out."""
    rows: dict[str, tuple[str, Callable[[], torch.Tensor]]] = {}
    rows["torch fp32"] = ("fp32", lambda: model(x))
    slow_bf16 = slow_precision(torch.bfloat16)
    if slow_bf16:  # no native bf16: minutes per clip, and OpenVINO would run f32 under a bf16 label
        print(f"bf16 rows not timed: {slow_bf16}")
    else:
        add_bf16_rows(rows, model, x)
    if compile_bf16 and not slow_bf16:
        import torch._inductor.config as inductor_config

        xb, bf16 = x.bfloat16(), copy.deepcopy(model).to(torch.bfloat16)
        inductor_config.freezing = True
        compiled = torch.compile(copy.deepcopy(bf16))
        t0 = time.perf_counter()
        compiled(xb)
        print(f"torch.compile (freezing) bf16: first call {time.perf_counter() - t0:.0f} s")
        rows["torch.compile bf16 weights (freezing)"] = ("bf16", lambda: compiled(xb))
    int8 = apply_quantization(model, INT8_RECIPE)
    rows["torch int8 dynamic"] = ("int8", lambda: int8(x))
    xn = np.ascontiguousarray(x.numpy())
    fp32_onnx, qdq_onnx = work / "fp32.onnx", work / "int8.onnx"
    try:
        export_model(model, "onnx", fp32_onnx, batch=x.shape[0])
        quantize_onnx_static(model, RandomClips(tuple(x.shape)), qdq_onnx)
    except Exception as e:  # an optional package missing or an export failure: say so
        print(f"ONNX rows skipped: {type(e).__name__}: {e}")
        return rows
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(qdq_onnx), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        rows["onnxruntime int8 static (QDQ)"] = (
            "int8",
            lambda: torch.from_numpy(session.run(None, {name: xn})[0]),
        )
        dynamic = ort_dynamic_int8(fp32_onnx, work / "int8_dynamic.onnx", options)
        rows["onnxruntime int8 dynamic"] = (
            "int8",
            lambda: torch.from_numpy(dynamic.run(None, {name: xn})[0]),
        )
    except ImportError as e:
        print(f"onnxruntime rows skipped: {e}")
    try:
        import openvino as ov

        core = ov.Core()
        low = "f32" if slow_bf16 else "bf16"  # what runs between the QDQ file's int8 products
        for label, path, hint, precision in (
            ("openvino fp32", fp32_onnx, "f32", "fp32"),
            *([] if slow_bf16 else [("openvino bf16", fp32_onnx, "bf16", "bf16")]),
            ("openvino int8 (the QDQ file)", qdq_onnx, low, "int8"),
        ):
            config = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": hint}
            request = core.compile_model(str(path), "CPU", config).create_infer_request()
            rows[label] = (precision, lambda r=request: torch.from_numpy(r.infer([xn])[0].copy()))
    except ImportError as e:
        print(f"openvino rows skipped: {e}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="xvit_base_patch16")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile bf16 row")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = machine_info("cpu")
    print(f"CPU: {meta['cpu']}, flags {', '.join(meta['cpu_flags'])} ({isa_summary(meta['cpu_flags'])})")
    print(
        f"torch {meta['torch']}, {torch.get_num_threads()} threads, commit {meta['git_commit']}, {meta['date_utc']} UTC"
    )
    rates = {
        name: measure_matmul_rate(2048, dtype, repeats=10)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("int8", torch.int8))
    }
    matmul = {name: r["gflops_median"] for name, r in rates.items()}
    print(
        "dense matmul: "
        + ", ".join(f"{k} {r['gflops_median']:.3g} G(FL)OP/s ({r['n']}x{r['n']})" for k, r in rates.items())
    )
    torch.manual_seed(0)
    model = create_model(args.model, num_frames=args.frames, img_size=args.img_size, num_classes=174).eval()
    out: dict = {"meta": {**meta, "matmul": matmul, "matmul_runs": rates, "args": vars(args)}, "rows": []}
    for batch in args.batch:
        x = torch.randn(batch, 3, args.frames, args.img_size, args.img_size)
        gflops = count_flops(model, (1, *x.shape[1:])) / 1e9
        with tempfile.TemporaryDirectory() as work, torch.inference_mode():
            rows = rows_for(model, x, Path(work), args.compile)
            ref = model(x)
            diffs = {}
            for name, (_, call) in rows.items():  # warm-up, and the answer checked
                call()
                diffs[name] = (call().float() - ref).abs().max().item()
            times = {name: [] for name in rows}
            for r in range(args.repeats):
                order = list(rows)[r % len(rows) :] + list(rows)[: r % len(rows)]
                for name in order:
                    t0 = time.perf_counter()
                    rows[name][1]()
                    times[name].append(time.perf_counter() - t0)
        print(
            f"\n{args.model} {args.frames}x{args.img_size}, batch {batch}, {gflops:.1f} GFLOPs/clip, load {load_average()}"
        )
        print("| path | precision | ms/clip | x fp32 | achieved GFLOP/s | of matmul | max diff vs fp32 |")
        print("|---|---|---:|---:|---:|---:|---:|")
        fp32_ms = 1000 * statistics.median(times["torch fp32"]) / batch
        for name, (precision, _) in rows.items():
            ms = 1000 * statistics.median(times[name]) / batch
            achieved = gflops / ms * 1000
            share = achieved / matmul[precision]
            print(
                f"| {name} | {precision} | {ms:.1f} | {fp32_ms / ms:.2f} | {achieved:.0f} | {share:.0%} | {diffs[name]:.1e} |"
            )
            out["rows"].append(
                {
                    "path": name,
                    "precision": precision,
                    "batch": batch,
                    "ms_per_clip": ms,
                    "times_s": times[name],
                    "achieved_gflops": achieved,
                    "matmul_share": share,
                    "max_abs_diff_vs_fp32": diffs[name],
                }
            )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
