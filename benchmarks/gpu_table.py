"""One run on the first CUDA GPU we get: correctness, speed and memory of X-ViT-B, ViT-B and
Hugging Face TimeSformer-base side by side, and one single-process DDP training step.

Run it once on the GPU machine (well inside 10 minutes; the speed rows stop at --budget-s):

    python benchmarks/gpu_table.py --json docs/benchmarks/gpu_table.json

(where xvit is not installed: ``PYTHONPATH=src python3 benchmarks/gpu_table.py ...`` from the
checkout; it needs torch, transformers, safetensors and PyYAML, and no PyAV).

In order:

1. Checks (seeded weights and clips). fp32 on the CPU against fp32 on the device (TF32 off
   for this comparison; max abs logit difference within 1e-3 of the logit scale), then bf16
   and fp16 autocast on the device against device fp32 on a small batch: top-1 agreement,
   smallest fp32 top-1 margin among the clips that flip, max probability and relative logit
   difference. The weights are random, so the 400 logits are close together and a flip
   among near-ties says little: the gate is finite outputs and small probability / logit
   differences, the agreement is reported. TimeSformer has no classifier here; its "logits"
   are a seeded linear probe on its CLS token. On the CPU (fallback) fp32 is compared with a
   second copy of the module and only bf16 autocast is run (fp16 autocast is skipped).
2. One DDP training step: one process, world size 1 (nccl on CUDA, gloo on the CPU),
   X-ViT-B/16 at 8x224 on the GPU; loss finite and parameters changed, step time.
3. Speed and memory at 8x224 and 16x224, batch 1 and the largest batch that fits (doubling
   until torch.OutOfMemoryError, capped by --max-batch), fp32 and bf16 autocast. Each model
   is first put on the device alone: the batch search and the peak memory
   (torch.cuda.max_memory_allocated after reset_peak_memory_stats, one forward, the model's
   weights included). Then all three are timed in interleaved rounds after a warm-up. On
   CUDA the X-ViT / ViT rows run inside sdpa_kernel([FLASH, EFFICIENT, MATH]); the table
   names the backend SDPA picks for the backbone's attention shape and dtype (a probe of
   each backend alone, in that priority order). transformers' TimeSformer runs eager.

Prints a markdown speed table and a check table with the device, torch and CUDA versions,
writes everything to --json, and exits 1 when a check fails. `--quick` (tiny widths, 32x32
clips, frames 4 and 8, batch 1 and 2) is the CPU fallback the test suite runs
(tests/test_gpu_table.py); this script is never a CI dependency.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import socket
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xvit.benchmarks.forward import make_call, time_once
from xvit.benchmarks.machine import machine_info, sync
from xvit.benchmarks.peers import peers_available
from xvit.benchmarks.spec import ModelSpec
from xvit.models import attention as attn

MODELS = ("xvit_base_patch16", "vit_base_patch16", "hf_timesformer")
# --quick widths: ours through create_model overrides, the peer through build_peer's
QUICK_OURS = dict(embed_dim=64, depth=2, num_heads=2, patch_size=8)
QUICK_PEER = dict(hidden_size=64, num_layers=2, num_heads=2, patch_size=8)
PRECISIONS = {"fp32": "fp32", "bf16": "bf16-autocast"}  # speed rows: precision -> forward mode
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
# autocast vs fp32 gate: (max probability difference, max logit difference / logit scale)
AUTOCAST_TOL = {"bf16": (0.01, 0.05), "fp16": (0.005, 0.02)}  # CPU, base, bf16: 1e-4, 0.008
FP32_TOL = 1e-3  # of max(1, max |logit|)
MIB = 1024.0**2


def sdpa_backends() -> list:
    from torch.nn.attention import SDPBackend

    return [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def sdpa_scope(spec: ModelSpec, device: torch.device) -> contextlib.AbstractContextManager:
    """Flash, memory-efficient and math SDPA enabled for our models on CUDA; nothing else."""
    if device.type == "cuda" and spec.source == "xvit":
        from torch.nn.attention import sdpa_kernel

        return sdpa_kernel(sdpa_backends())
    return contextlib.nullcontext()


@contextlib.contextmanager
def ieee_fp32(device: torch.device) -> Iterator[None]:
    """No TF32 in matmuls and convolutions (CUDA) inside the block."""
    if device.type != "cuda":
        yield
        return
    conv = getattr(torch.backends.cudnn, "conv", None)
    knobs = [(torch.backends.cuda.matmul, "fp32_precision"), (conv, "fp32_precision")]
    if not all(hasattr(obj, name) for obj, name in knobs):  # torch before the fp32_precision API
        knobs = [(torch.backends.cuda.matmul, "allow_tf32"), (torch.backends.cudnn, "allow_tf32")]
    old = [getattr(obj, name) for obj, name in knobs]
    for obj, name in knobs:
        setattr(obj, name, False if name == "allow_tf32" else "ieee")
    try:
        yield
    finally:
        for (obj, name), value in zip(knobs, old):
            setattr(obj, name, value)


def tf32_settings() -> dict[str, Any]:
    out = {}
    conv = getattr(torch.backends.cudnn, "conv", None)
    for label, obj in (("matmul", torch.backends.cuda.matmul), ("cudnn_conv", conv)):
        out[label] = getattr(obj, "fp32_precision", None)
    out["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    return out


def backend_label(spec: ModelSpec, model: nn.Module, device: torch.device, precision: str) -> str:
    """The attention product our backbone runs (probe of its per-frame shape), or the peer's."""
    if spec.source == "hf":
        return f"{spec.attention_backend()} (transformers)"
    cfg = model.config
    tokens = 1 + (cfg.img_size // cfg.patch_size) ** 2
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    q = torch.randn(cfg.num_frames, cfg.num_heads, tokens, cfg.embed_dim // cfg.num_heads, device=device)
    q = q.to(dtype)
    if device.type != "cuda":
        return "cpu chunked product" if attn.uses_chunked_product(q, q) else "cpu sdpa"
    from torch.nn.attention import sdpa_kernel

    for backend in sdpa_backends():
        try:
            with warnings.catch_warnings(), sdpa_kernel([backend]):
                warnings.simplefilter("ignore")
                F.scaled_dot_product_attention(q, q, q)
            return backend.name.lower().replace("_attention", "")
        except RuntimeError:
            continue
    return "none"


class Probed(nn.Module):
    """A peer's CLS token through a seeded linear probe: logits for the checks."""

    def __init__(self, peer: nn.Module, num_classes: int = 400) -> None:
        super().__init__()
        self.peer = peer
        self.head = nn.Linear(peer.model.config.hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.peer(x)[:, 0])


def model_specs(frames: int, img: int, quick: bool) -> list[ModelSpec]:
    specs = []
    for name in MODELS:
        if name.startswith("hf_") and not peers_available():
            continue
        over = (QUICK_PEER if name.startswith("hf_") else QUICK_OURS) if quick else {}
        specs.append(ModelSpec(name, num_frames=frames, img_size=img, overrides=dict(over)))
    return specs


def clips(spec: ModelSpec, batch: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(spec.input_shape(batch), generator=gen, device=device)


# -- 1. checks ---------------------------------------------------------------------------------


def check_model(spec: ModelSpec, device: torch.device, n_clips: int, seed: int) -> list[dict[str, Any]]:
    torch.manual_seed(seed)
    ref = spec.build()
    ref = (Probed(ref) if spec.source == "hf" else ref).eval()
    dev = copy.deepcopy(ref).to(device)
    gen = torch.Generator().manual_seed(seed)
    clip = torch.randn(spec.input_shape(1), generator=gen)
    against = "a second copy on the cpu" if device.type == "cpu" else f"cpu fp32 vs {device.type} fp32"
    with torch.inference_mode(), ieee_fp32(device), sdpa_scope(spec, device):
        want = ref(clip).float()
        got = dev(clip.to(device)).float().cpu()
    diff, scale = (got - want).abs().max().item(), want.abs().max().item()
    tol = FP32_TOL * max(1.0, scale)
    rows = [
        dict(
            model=spec.name,
            precision="fp32",
            check=f"fp32: {against}",
            max_abs_diff=diff,
            logit_scale=scale,
            tol=tol,
            passed=bool(diff <= tol),
        )
    ]
    batch = torch.randn(spec.input_shape(n_clips), generator=gen).to(device)
    with torch.inference_mode(), ieee_fp32(device), sdpa_scope(spec, device):
        base = dev(batch).float()
    top2 = base.topk(2, dim=-1).values
    margin = top2[:, 0] - top2[:, 1]
    for prec, dtype in AUTOCAST.items():
        name = f"{prec} autocast vs {device.type} fp32, {n_clips} clips"
        if device.type == "cpu" and prec == "fp16":
            rows.append(
                dict(
                    model=spec.name,
                    precision=prec,
                    check=name,
                    skipped="fp16 autocast is checked on CUDA only",
                )
            )
            continue
        with torch.inference_mode(), torch.autocast(device.type, dtype), sdpa_scope(spec, device):
            low = dev(batch).float()
        flips = base.argmax(-1) != low.argmax(-1)
        prob_diff = (base.softmax(-1) - low.softmax(-1)).abs().max().item()
        rel_logit = ((low - base).abs().max() / base.abs().max().clamp_min(1e-6)).item()
        prob_tol, rel_tol = AUTOCAST_TOL[prec]
        finite = bool(torch.isfinite(low).all())
        rows.append(
            dict(
                model=spec.name, precision=prec, check=name, top1_agreement=1.0 - flips.float().mean().item()
            )
            | dict(flip_min_margin=margin[flips].min().item() if flips.any() else None)
            | dict(fp32_min_margin=margin.min().item(), max_prob_diff=prob_diff, rel_logit_diff=rel_logit)
            | dict(finite=finite, prob_tol=prob_tol, rel_tol=rel_tol)
            | dict(passed=finite and prob_diff <= prob_tol and rel_logit <= rel_tol)
        )
    return rows


# -- 2. DDP step -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_step(device: torch.device, quick: bool, seed: int) -> dict[str, Any]:
    """One process, world size 1: forward, backward and AdamW step of X-ViT under DDP."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from xvit.engine.run.distributed import cleanup

    cuda = device.type == "cuda"
    if quick:
        spec, batch, steps = ModelSpec("xvit_tiny_patch16", 8, 32, overrides=dict(patch_size=8)), 2, 2
    else:
        spec, batch, steps = ModelSpec("xvit_base_patch16", 8, 224), 4, 3
    env = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1")
    os.environ.update(env, LOCAL_RANK="0")
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        torch.manual_seed(seed)
        model = spec.build().train().to(device)
        ddp = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
        opt = torch.optim.AdamW(ddp.parameters(), lr=1e-3)
        x = clips(spec, batch, device, seed)
        y = torch.randint(
            0, model.config.num_classes, (batch,), generator=torch.Generator().manual_seed(seed)
        )
        y = y.to(device)
        before = [p.detach().clone() for p in model.parameters()]
        times, losses = [], []
        for step in range(steps):
            sync(device)
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with sdpa_scope(spec, device):
                loss = F.cross_entropy(ddp(x), y)
            loss.backward()
            opt.step()
            sync(device)
            times.append(time.perf_counter() - start)
            losses.append(loss.item())
            if step == 0:
                graded = [(p, b) for p, b in zip(model.parameters(), before) if p.grad is not None]
                moved = [bool((p.detach() != b).any()) for p, b in graded]
                nonzero = [bool(p.grad.abs().sum() > 0) for p, _ in graded]
        stuck = sum(1 for m, nz in zip(moved, nonzero) if nz and not m)
        finite = all(torch.isfinite(torch.tensor(losses)).tolist())
        return dict(
            model=spec.name,
            clip=f"{spec.num_frames}x{spec.img_size}",
            overrides=spec.overrides,
            batch=batch,
            backend=backend,
            world_size=dist.get_world_size(),
            losses=losses,
            loss_finite=finite,
            params_with_grad=len(graded),
            params_changed=sum(moved),
            params_with_nonzero_grad_unchanged=stuck,
            first_step_ms=times[0] * 1e3,
            step_ms=statistics.median(times[1:]) * 1e3,
            passed=finite and stuck == 0 and sum(moved) > 0,
        )
    finally:
        cleanup()


# -- 3. speed and memory -----------------------------------------------------------------------


def free_cache(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def try_batch(model: nn.Module, spec: ModelSpec, batch: int, mode: str, device: torch.device):
    """Peak MiB of one forward at `batch` (None on the CPU), or False on out-of-memory."""
    x = None
    try:
        x = clips(spec, batch, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with sdpa_scope(spec, device):
            make_call(model, x, mode, device)()
        return torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else None
    except torch.OutOfMemoryError:
        pass
    finally:
        del x
    free_cache(device)
    return False


class Budget:
    """Seconds since the start against --budget-s; remembers when it was first exceeded."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start, self.hit_at = seconds, time.perf_counter(), None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def over(self) -> bool:
        if self.hit_at is None and self.elapsed() > self.seconds:
            self.hit_at = self.elapsed()
        return self.hit_at is not None


def search_batches(args, spec, model, device, budget) -> list[dict[str, Any]]:
    """Rows at batch 1 and the largest batch that fits, per precision, with their peak MiB."""
    rows = []
    for prec, mode in PRECISIONS.items():
        common = dict(model=spec.name, frames=spec.num_frames, img_size=spec.img_size, precision=prec)
        common["sdpa_backend"] = backend_label(spec, model, device, prec)
        peaks: dict[int, float | None] = {}
        batch, stop = 1, "cap"
        while batch <= args.max_batch:
            if budget.over():
                stop = "time budget"
                break
            peak = try_batch(model, spec, batch, mode, device)
            if peak is False:
                stop = "out of memory"
                break
            peaks[batch] = peak
            batch *= 2
        if not peaks:
            rows.append(common | dict(batch=1, skipped=stop))
            continue
        largest = max(peaks)
        for b in sorted({1, largest}):
            rows.append(common | dict(batch=b, peak_mib=peaks[b]))
        if largest > 1:
            rows[-1].update(largest=True, search_stop=stop)
    return rows


def speed_rows(args, device: torch.device, frames: int, budget: Budget) -> list[dict[str, Any]]:
    """The rows of one clip length: batch search per model alone, then interleaved timing."""
    specs = {s.name: s for s in model_specs(frames, args.img_size, args.quick)}
    models, rows = {}, []
    for name, spec in specs.items():
        torch.manual_seed(args.seed)
        models[name] = spec.build().to(device)
        rows += search_batches(args, spec, models[name], device, budget)
        models[name].to("cpu")
        free_cache(device)
    for model in models.values():
        model.to(device)
    inputs: dict[tuple[str, int], torch.Tensor] = {}
    timed: list[tuple[dict[str, Any], Callable[[], None]]] = []
    for r in rows:  # warm-up, row by row
        if "skipped" in r:
            continue
        if budget.over():
            r["skipped"] = "time budget"
            continue
        spec, key = specs[r["model"]], (specs[r["model"]].source, r["batch"])
        try:
            if key not in inputs:
                inputs[key] = clips(spec, r["batch"], device)
            call = make_call(models[r["model"]], inputs[key], PRECISIONS[r["precision"]], device)

            def run(call=call, spec=spec) -> None:
                with sdpa_scope(spec, device):
                    call()

            for _ in range(args.warmup):
                warm = time_once(run)
        except torch.OutOfMemoryError:
            r["skipped"] = "out of memory with all models on the device"
            free_cache(device)
            continue
        r["inner"] = max(1, min(10, int(args.target_s / max(warm, 1e-6))))
        r["times_s"] = []
        timed.append((r, run))
    for _ in range(args.rounds):  # interleaved: drift hits every row alike
        if budget.over():
            break
        for r, run in timed:
            r["times_s"].append(time_once(run, r["inner"]))
    for r, _ in timed:
        if not r["times_s"]:
            r["skipped"] = "time budget"
            continue
        sec = statistics.median(r["times_s"])
        r.update(clips_per_s=r["batch"] / sec, ms_per_clip=sec * 1e3 / r["batch"], rounds=len(r["times_s"]))
    for model in models.values():
        model.to("cpu")
    del inputs, timed
    free_cache(device)
    return rows


# -- report ------------------------------------------------------------------------------------


def fmt(v: Any, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def print_tables(meta: dict[str, Any], checks: list[dict], ddp: dict, speed: list[dict]) -> None:
    print(f"\ndevice: {meta['device_name']}, torch {meta['torch']}, CUDA {meta['cuda']}")
    print("\n| model | T x S | batch | precision | clips/s | ms/clip | peak MiB | SDPA backend |")
    print("|---|---|---:|---|---:|---:|---:|---|")
    for r in speed:
        batch = str(r["batch"])
        if r.get("largest"):
            batch += " (cap)" if r["search_stop"] == "cap" else f" (largest; next: {r['search_stop']})"
        if r.get("skipped"):
            rate, ms = f"skipped: {r['skipped']}", "-"
        else:
            rate, ms = fmt(r["clips_per_s"], ".2f"), fmt(r["ms_per_clip"], ".2f")
        print(
            f"| {r['model']} | {r['frames']}x{r['img_size']} | {batch} | {r['precision']} | {rate} | "
            f"{ms} | {fmt(r.get('peak_mib'), '.0f')} | {r['sdpa_backend']} |"
        )
    print("\n| model | check | result | passed |")
    print("|---|---|---|---|")
    for c in checks:
        if "skipped" in c:
            result, ok = f"skipped: {c['skipped']}", "-"
        elif "max_abs_diff" in c:
            result, ok = f"max abs diff {c['max_abs_diff']:.2e} (tol {c['tol']:.1e})", c["passed"]
        else:
            result = (
                f"top-1 agreement {c['top1_agreement']:.2f}, max prob diff {c['max_prob_diff']:.2e}, "
                f"max logit diff {c['rel_logit_diff']:.3f} of scale"
            )
            ok = c["passed"]
        print(f"| {c['model']} | {c['check']} | {result} | {ok} |")
    if ddp:
        print(
            f"| {ddp['model']} {ddp['clip']} | DDP step ({ddp['backend']}, world {ddp['world_size']}, "
            f"batch {ddp['batch']}) | loss {ddp['losses'][0]:.4f}, {ddp['params_changed']}/"
            f"{ddp['params_with_grad']} tensors changed, first step {ddp['first_step_ms']:.0f} ms, "
            f"then {ddp['step_ms']:.0f} ms | {ddp['passed']} |"
        )
    for note in meta["notes"]:
        print(f"note: {note}")


def main() -> int:
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=default_device)
    parser.add_argument("--json", default=None, help="write everything here")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the CPU fallback / CI run")
    parser.add_argument("--budget-s", type=float, default=480.0, help="skip the speed rows left after this")
    parser.add_argument("--max-batch", type=int, default=None, help="cap of the batch search (64; --quick 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.img_size = 32 if args.quick else 224
    args.frames = (4, 8) if args.quick else (8, 16)
    args.max_batch = args.max_batch or (2 if args.quick else 64)
    args.warmup, args.rounds = (1, 2) if args.quick else (3, 5)
    args.target_s = 0.01 if args.quick else 0.2  # aimed-for seconds per timed block
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = Budget(args.budget_s)
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    cuda = device.type == "cuda"
    notes = []
    if not peers_available():
        notes.append("hf_timesformer skipped: transformers is not installed (pip install -e '.[bench]')")
    if args.quick:
        notes.append(f"--quick: tiny widths, ours {QUICK_OURS}, the peer {QUICK_PEER}; not base models")
    meta = machine_info(str(device)) | dict(
        device=str(device),
        device_name=torch.cuda.get_device_name(device) if cuda else f"cpu ({os.cpu_count()} logical)",
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if cuda else None,
        tf32_in_speed_rows=tf32_settings() if cuda else None,
        sdpa_enabled=[b.name for b in sdpa_backends()] if cuda else None,
        quick=args.quick,
        args={k: v for k, v in vars(args).items() if k != "json"},
        notes=notes,
    )
    checks: list[dict[str, Any]] = []
    for spec in model_specs(8 if not args.quick else 4, args.img_size, args.quick):
        checks += check_model(spec, device, n_clips=4 if args.quick else 8, seed=args.seed)
    ddp = ddp_step(device, args.quick, args.seed)
    speed = []
    for frames in args.frames:
        speed += speed_rows(args, device, frames, budget)
    skipped = sum(1 for r in speed if r.get("skipped") == "time budget")
    if budget.hit_at is not None:
        notes.append(f"time budget of {args.budget_s:.0f} s reached: {skipped} speed rows skipped")
    meta["elapsed_s"] = budget.elapsed()
    print_tables(meta, checks, ddp, speed)
    failed = [c for c in checks if c.get("passed") is False] + ([ddp] if not ddp["passed"] else [])
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, checks=checks, ddp=ddp, speed=speed), f, indent=1)
    if failed:
        print(f"{len(failed)} check(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
