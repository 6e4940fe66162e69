"""``--precision auto|fp32|bf16|int8`` for inference in torch: the model as run, and the
measured choice of ``auto``.

* ``fp32``: the fp32 model (for an int8 directory written by ``xvit quantize``: its fp32 weights).
* ``bf16``: the fp32 model under bfloat16 autocast (:class:`Bf16Autocast`).
* ``int8``: dynamic int8 quantisation of every ``nn.Linear`` (the directory's saved recipe when
  it is quantised, else applied on the fly); CPU only.
* ``auto``: times each candidate on a clip of the model's input size (batch 1, one warm call,
  then interleaved rounds, median) and measures its top-1 agreement with fp32 on seeded random
  clips plus the first real clips of the input when there are some; picks the fastest whose
  agreement reaches ``min_agreement`` (fp32 itself always does). bf16 is first judged by
  its dense products (:func:`xvit.models.hardware.slow_precision`, a fraction of a second):
  where they run at under a quarter of fp32's rate (a CPU with no native bf16, e.g. AVX2
  only: a fiftieth) it is not timed on the model and the line says why; an explicit
  ``--precision bf16`` there runs with a warning. The figures are cached in
  ``$XVIT_CACHE/precision.json`` (default ``~/.cache/xvit``) under a key made of the CPU model
  and the flags that decide bf16 and int8 speed, the torch version, the device and a hash of
  the model (its config, its weights file, its quantisation recipe), so the next call reads
  the choice back without measuring; the threshold is applied to the cached figures on each
  call. A cache file that cannot be read is measured over with a warning and rewritten
  (atomically: a temporary file in the same directory, then ``os.replace``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xvit.engine.run.metrics import agreement_figures
from xvit.models.hardware import cpu_flags, cpu_model, product_flags, slow_precision
from xvit.models.quantization import apply_quantization

__all__ = [
    "CACHE_NAME",
    "CANDIDATES",
    "DEFAULT_MIN_AGREEMENT",
    "PRECISIONS",
    "Bf16Autocast",
    "PrecisionChoice",
    "cache_file",
    "check_precision",
    "choose",
    "first_clips",
    "inference_runner",
    "machine_key",
    "model_key",
    "resolve_precision",
    "time_call",
]

PRECISIONS = ("auto", "fp32", "bf16", "int8")
CANDIDATES = ("fp32", "bf16", "int8")
DEFAULT_MIN_AGREEMENT = 0.99
CACHE_NAME = "precision.json"
CACHE_VERSION = 1
RANDOM_CLIPS = 8  # seeded random clips for the agreement
REAL_CLIPS = 8  # at most this many clips of the input
ROUNDS = 3  # timed calls per candidate, interleaved
INT8_RECIPE = {"method": "dynamic", "dtype": "qint8", "modules": ["Linear"]}
# The floating precisions whose products :func:`slow_precision` probes before timing a model.
DTYPES = {"bf16": torch.bfloat16}


class Bf16Autocast(nn.Module):
    """``model`` run under bfloat16 autocast on its device; float32 logits out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.config = getattr(model, "config", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, torch.bfloat16):
            return self.model(x).float()


@dataclass
class PrecisionChoice:
    """What ``--precision`` resolved to, and (``auto``) the figures it was chosen on."""

    precision: str
    asked: str
    line: str  # the one line printed
    cached: bool = False
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)


def check_precision(precision: str | None, min_agreement: float = DEFAULT_MIN_AGREEMENT) -> None:
    """``ValueError`` naming a precision not in :data:`PRECISIONS` or a threshold outside [0, 1]."""
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if isinstance(min_agreement, bool) or not 0.0 <= float(min_agreement) <= 1.0:
        raise ValueError(f"--min-agreement must be in [0, 1], got {min_agreement!r}")


# --------------------------------------------------------------------------------------
# Keys and the cache
# --------------------------------------------------------------------------------------


def machine_key(device: torch.device) -> dict[str, Any]:
    """The CPU model, its flags that decide bf16 / int8 speed (``MATRIX_ISA``), the torch
    version and the device (with the GPU's name on CUDA)."""
    key: dict[str, Any] = {
        "cpu": cpu_model(),
        "flags": product_flags(cpu_flags()),
        "torch": torch.__version__,
        "device": device.type,
    }
    if device.type == "cuda":
        key["gpu"] = torch.cuda.get_device_name(device)
    return key


def model_key(model: nn.Module, checkpoint: str | os.PathLike[str] | None = None) -> str:
    """A hash of the model's config, its quantisation recipe and its weights (``checkpoint``'s
    ``model.safetensors``, else the tensors in memory): the agreement depends on the weights,
    not only the shape."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    data = config.to_dict() if hasattr(config, "to_dict") else repr(config)
    h.update(json.dumps(data, sort_keys=True, default=str).encode())
    recipe = getattr(model, "quantization", None) or {}
    h.update(json.dumps({k: recipe.get(k) for k in ("method", "dtype", "modules")}, sort_keys=True).encode())
    weights = Path(checkpoint) / "model.safetensors" if checkpoint is not None else None
    if weights is not None and weights.is_file():
        with open(weights, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    else:  # a model in memory: its tensors
        for name, t in model.state_dict().items():
            if isinstance(t, torch.Tensor):
                t = t.int_repr() if t.is_quantized else t
                h.update(name.encode())
                h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def cache_file() -> Path:
    """``$XVIT_CACHE/precision.json`` (default ``~/.cache/xvit/precision.json``)."""
    return Path(os.environ.get("XVIT_CACHE") or Path.home() / ".cache" / "xvit") / CACHE_NAME


def _read_cache(path: Path, warn: Callable[[str], None]) -> dict[str, Any]:
    """The cache's entries; an unreadable file is a warning and no entries."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            raise ValueError(f"not a version-{CACHE_VERSION} precision cache")
        entries = data["entries"]
        if not isinstance(entries, dict) or not all(_valid(e) for e in entries.values()):
            raise ValueError("malformed entries")
        return entries
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        warn(f"warning: the precision cache {path} cannot be read ({e}); measuring again")
        return {}


def _valid(entry: Any) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("figures"), dict):
        return False
    figures = entry["figures"]
    if "fp32" not in figures:
        return False
    for f in figures.values():
        if not isinstance(f, dict):
            return False
        for k in ("clips_per_s", "top1_agreement"):
            if isinstance(f.get(k), bool) or not isinstance(f.get(k), (int, float)):
                return False
    return True


def _write_cache(path: Path, entries: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1, sort_keys=True))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------


def time_call(precision: str, fn: Callable[[], Any]) -> float:
    """Seconds of one call of ``fn`` (the model in ``precision``); tests replace it."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def first_clips(dataset: Any, limit: int = REAL_CLIPS) -> torch.Tensor | None:
    """Up to ``limit`` clips ``(N, 3, T, H, W)`` of the first readable items of an evaluation
    dataset (every view of an item is a clip); None when none could be read."""
    clips: list[torch.Tensor] = []
    count = 0
    for i in range(min(len(dataset), 2 * limit)):
        item = dataset[i]
        video = item.get("video") if isinstance(item, dict) else None
        if video is None:
            continue
        v = torch.as_tensor(video).float()
        v = v.reshape(-1, *v.shape[-4:])
        clips.append(v)
        count += v.shape[0]
        if count >= limit:
            break
    return torch.cat(clips)[:limit] if clips else None


def _random_clips(model: nn.Module, n: int) -> torch.Tensor:
    c = model.config  # type: ignore[attr-defined]
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, int(c.num_frames), int(c.img_size), int(c.img_size), generator=g)


@torch.inference_mode()
def _logits(model: nn.Module, clips: torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.cat([model(b.to(device)).float().cpu() for b in clips.split(4)])


def measure(
    runners: dict[str, nn.Module],
    clips: torch.Tensor,
    speed_clip: torch.Tensor,
    device: torch.device,
    rounds: int = ROUNDS,
) -> dict[str, dict[str, Any]]:
    """Per precision: ``clips_per_s`` (batch 1, median of ``rounds`` interleaved calls after a
    warm one), ``top1_agreement`` and ``max_prob_diff`` with fp32 on ``clips``."""
    ref = _logits(runners["fp32"], clips, device)
    figures: dict[str, dict[str, Any]] = {}
    for name, m in runners.items():
        out = ref if name == "fp32" else _logits(m, clips, device)
        figures[name] = {**agreement_figures(ref, out), "clips": int(clips.shape[0])}
    x = speed_clip.to(device)

    def call(m: nn.Module) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode():
                out = m(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return out

        return run

    calls = {name: call(m) for name, m in runners.items()}
    for fn in calls.values():
        fn()  # warm
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(time_call(name, calls[name]))
    for name, ts in times.items():
        figures[name]["clips_per_s"] = 1.0 / max(statistics.median(ts), 1e-12)
    return figures


def choose(figures: dict[str, dict[str, Any]], min_agreement: float) -> tuple[str, list[str]]:
    """The fastest precision whose agreement reaches ``min_agreement`` (fp32 always does), and
    the ones refused for their agreement."""
    ok = [p for p, f in figures.items() if p == "fp32" or f["top1_agreement"] >= min_agreement]
    refused = [p for p in figures if p not in ok]
    order = {p: i for i, p in enumerate(CANDIDATES)}
    best = max(ok, key=lambda p: (figures[p]["clips_per_s"], -order.get(p, 9)))
    return best, refused


def _line(
    choice: str, figures: dict, refused: list[str], min_agreement: float, clips: str, source: str
) -> str:
    speeds = ", ".join(f"{p} {f['clips_per_s']:.3g}" for p, f in figures.items())
    agree = ", ".join(
        f"{p} {f['top1_agreement']:.1%}" + (" (refused)" if p in refused else "")
        for p, f in figures.items()
        if p != "fp32"
    )
    return (
        f"precision auto: {choice} ({source}): clips/s {speeds}; top-1 agreement with fp32 on "
        f"{clips}: {agree or 'n/a'} (--min-agreement {min_agreement:.1%})"
    )


# --------------------------------------------------------------------------------------
# The model as run
# --------------------------------------------------------------------------------------


def _fp32_of(model: nn.Module, checkpoint: str | os.PathLike[str] | None) -> nn.Module:
    """The fp32 model: ``model`` itself, or the fp32 weights of a quantised directory."""
    if not getattr(model, "quantization", None):
        return model
    if isinstance(getattr(model, "fp32", None), nn.Module):  # a static (ONNX) int8 directory
        return model.fp32.eval()  # type: ignore[union-attr]
    if checkpoint is None:
        raise ValueError("the model is int8 quantised; its fp32 weights need the checkpoint directory")
    from xvit.models.storage import load_state_dict_strict, read_safetensors
    from xvit.models.video_vit import VideoViT

    weights = Path(checkpoint) / "model.safetensors"
    fp32 = VideoViT(model.config)  # type: ignore[arg-type]
    load_state_dict_strict(fp32, read_safetensors(weights), weights)
    return fp32.eval()


def _runner(model: nn.Module, fp32: nn.Module, precision: str, device: torch.device) -> nn.Module:
    if precision == "fp32":
        return fp32.to(device)
    if precision == "bf16":
        return Bf16Autocast(fp32.to(device))
    if device.type != "cpu":
        raise ValueError("--precision int8 runs on the CPU only (dynamic quantisation); add --device cpu")
    method = _saved_method(model)
    if method == "static":
        raise ValueError(
            "this directory's int8 model is an ONNX file (xvit quantize --method static): "
            "run it with --runtime onnxruntime, or pick --precision fp32 / bf16 / auto in torch"
        )
    if method is not None:
        return model  # the saved recipe, already applied by load_model
    return apply_quantization(fp32, INT8_RECIPE)


def _saved_method(model: nn.Module) -> str | None:
    recipe = getattr(model, "quantization", None)
    return recipe.get("method") if isinstance(recipe, dict) else None


def resolve_precision(
    model: nn.Module,
    precision: str | None,
    device: torch.device | str = "cpu",
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    real_clips: torch.Tensor | Callable[[], torch.Tensor | None] | None = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    use_cache: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[nn.Module, PrecisionChoice | None]:
    """``model`` (as loaded from ``checkpoint``) in ``precision``, on ``device``.

    ``None`` keeps the model as loaded (int8 for a quantised directory). ``auto`` measures (or
    reads back from the cache) and says on one line (``log``, default stderr) what it chose
    and why; ``real_clips`` (or a function returning them, called only when measuring) are
    the first clips of the input, added to the random ones for the agreement.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    check_precision(precision, min_agreement)
    device = torch.device(device)
    if precision is None:
        return model.to(device) if not getattr(model, "quantization", None) else model, None
    fp32 = _fp32_of(model, checkpoint)
    if precision != "auto":
        slow = slow_precision(DTYPES[precision], device) if precision in DTYPES else None
        line = f"warning: --precision {precision} will be slower than fp32 here: {slow}" if slow else ""
        if line:
            log(line)
        return _runner(model, fp32, precision, device), PrecisionChoice(precision, precision, line)

    int8_ok = device.type == "cpu" and _saved_method(model) != "static"
    candidates = [p for p in CANDIDATES if p != "int8" or int8_ok]
    # a precision whose products run at a fraction of fp32's (bf16 without native kernels:
    # minutes per clip) is not timed at all
    hopeless = {p: why for p in candidates if p in DTYPES and (why := slow_precision(DTYPES[p], device))}
    candidates = [p for p in candidates if p not in hopeless]
    mkey = machine_key(device)
    key_parts = {**mkey, "model": model_key(model, checkpoint)}
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:32]
    path = cache_file()
    entries = _read_cache(path, log) if use_cache else {}
    entry = entries.get(key)
    cached = entry is not None and all(p in entry["figures"] for p in candidates)
    if cached:
        figures = entry["figures"]
        clips_text = str(entry.get("clips") or f"{figures['fp32'].get('clips')} clips")
        source = f"from the cache {path}, measured {entry.get('measured', '?')}"
    else:
        runners = {p: _runner(model, fp32, p, device) for p in candidates}
        random = _random_clips(fp32, RANDOM_CLIPS)
        real = real_clips() if callable(real_clips) else real_clips
        clips = random if real is None else torch.cat([random, real[:REAL_CLIPS].float()])
        figures = measure(runners, clips, random[:1], device)
        n_real = 0 if real is None else min(len(real), REAL_CLIPS)
        clips_text = f"{RANDOM_CLIPS} random + {n_real} real clips"
        source = "measured now"
        if use_cache:
            entries[key] = {
                "key": key_parts,
                "figures": figures,
                "clips": clips_text,
                "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            }
            try:
                _write_cache(path, entries)
                source += f", cached in {path}"
            except OSError as e:
                log(f"warning: cannot write the precision cache {path}: {e.strerror or e}")
    best, refused = choose({p: figures[p] for p in candidates}, min_agreement)
    line = _line(best, {p: figures[p] for p in candidates}, refused, min_agreement, clips_text, source)
    for p, why in hopeless.items():
        line += f"; {p} not tried ({why})"
    if not int8_ok:
        line += (
            "; int8 not tried (CPU only)"
            if device.type != "cpu"
            else "; int8 not tried (the saved int8 model is ONNX: --runtime onnxruntime)"
        )
    log(line)
    runner = _runner(model, fp32, best, device)
    return runner, PrecisionChoice(best, "auto", line, cached, figures)


def inference_runner(
    checkpoint: str | os.PathLike[str],
    model: nn.Module,
    device: torch.device,
    *,
    runtime: str = "torch",
    precision: str | None = None,
    dataset: Any = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
) -> nn.Module:
    """The module that scores clips for `xvit predict` and `xvit eval`: ``model`` (loaded
    from ``checkpoint``) in ``runtime`` (``xvit.engine.deploy.export.runtime_model``, which refuses a
    model that cannot run there before any video is decoded) and, in torch, in ``precision``
    (:func:`resolve_precision`; the first clips of ``dataset`` are ``auto``'s real clips).
    ``ValueError`` for a combination that cannot run."""
    from xvit.engine.deploy.export import runtime_model

    if runtime != "torch" and device.type != "cpu":
        raise ValueError(f"--runtime {runtime} runs on the CPU; add --device cpu")
    runner = runtime_model(checkpoint, model, runtime)
    if precision is None:
        return runner
    if runtime != "torch":
        raise ValueError(f"--precision applies to --runtime torch, not {runtime}")
    runner, _ = resolve_precision(
        model,
        precision,
        device,
        checkpoint=checkpoint,
        real_clips=(lambda: first_clips(dataset)) if dataset is not None else None,
        min_agreement=min_agreement,
    )
    return runner
