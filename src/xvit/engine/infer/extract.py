"""`xvit extract`: per-window or per-video features of a list of videos, one safetensors file
per video, resumable, shared among the processes of a torchrun job.

Each video is decoded once (:mod:`xvit.engine.infer.window_clips`), in DataLoader worker processes
when ``workers`` > 0 (default: :func:`xvit.data.cores.default_workers`, one core of this
process's share left for the model), while the model runs on the windows already decoded. ``layer``:

- ``features``: the mean over the window's frames of ``model.forward_features`` (the
  per-frame pre-head features: the final-norm CLS token of every frame, through the
  representation layer when the model has one), ``(windows, D)``;
- ``logits``: the head's output for the window, ``(windows, num_classes)``.

``per="video"`` stores the mean over the windows, ``(D,)``. Every file also holds the
windows' ``start_frame``/``end_frame`` (end exclusive) and ``start_sec``/``end_sec`` (the
first frame's time; the last frame's time plus one frame at the average rate), and metadata
(model, layer, stride, fps...). A file is written to a temporary name and renamed, so it is
whole or absent; a rerun skips the videos whose file is there (made with the same settings).
Under torchrun, rank ``r`` of ``N`` takes videos ``r, r + N, ...``; rank 0 writes
``manifest.csv`` (every video whose file is there) and ``failed.csv`` (this run's failures).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from xvit.data.cores import default_workers
from xvit.data.dataset import worker_context, worker_init_fn
from xvit.data.errors import VideoDecodeError
from xvit.data.transforms import EvalTransform
from xvit.engine.infer.video_list import atomic_write_text, csv_text, output_names
from xvit.engine.infer.window_clips import VideoFrames, WindowSpec, default_stride, iter_windows
from xvit.engine.run.coerce import apply_overrides
from xvit.engine.run.distributed import (
    all_gather_object,
    barrier,
    configure_threads,
    init_distributed,
    resolve_device,
)
from xvit.engine.run.model import build_model
from xvit.engine.run.saved import load_run
from xvit.engine.run.schema import Config

__all__ = [
    "FEATURES_DEFINITION",
    "LAYERS",
    "PER",
    "ExtractOptions",
    "extract_videos",
    "load_extractor",
    "window_features",
]

LAYERS = ("features", "logits")
PER = ("window", "video")
FEATURES_DEFINITION = (
    "mean over the window's frames of model.forward_features (per-frame final-norm CLS token, "
    "through the representation layer when present): the input of the temporal head"
)
MANIFEST_HEADER = ["path", "output", "windows", "dim", "seconds", "frames", "fps"]
SUFFIX = ".safetensors"


@dataclass
class ExtractOptions:
    """What `xvit extract` computes and how (see the module docstring)."""

    out: Path
    per: str = "window"
    layer: str = "features"
    stride: int | None = None  # frames; None: half a clip
    sampling_rate: int | None = None  # None: the run's data.sampling_rate
    batch_size: int = 8  # windows per forward pass
    workers: int | None = None  # None: data.cores.default_workers()
    device: str | None = None
    progress: bool = True

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bad option."""
        if self.per not in PER:
            raise ValueError(f"--per must be one of {', '.join(PER)}, got {self.per!r}")
        if self.layer not in LAYERS:
            raise ValueError(f"--layer must be one of {', '.join(LAYERS)}, got {self.layer!r}")
        for name in ("stride", "sampling_rate", "batch_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0
        ):
            raise ValueError(f"--workers must be an integer >= 0, got {self.workers!r}")
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a directory")


def load_extractor(
    checkpoint: str | Path | None = None,
    *,
    model_name: str | None = None,
    pretrained: str | Path | None = None,
    random_init: bool = False,
    num_frames: int = 8,
    img_size: int = 224,
) -> tuple[nn.Module, Config, str]:
    """The model, the config feeding it and where its weights come from (``checkpoint DIR``,
    ``pretrained FILE`` or ``random init``).

    Either a run / save_pretrained ``checkpoint``, or a registered ``model_name`` with image
    ``pretrained`` weights (its head stays untrained) or, only when asked with
    ``random_init``, no weights at all.
    """
    if (checkpoint is None) == (model_name is None):
        raise ValueError(
            "give either --checkpoint DIR or --model NAME (with --pretrained FILE or --random-init)"
        )
    if checkpoint is not None:
        if pretrained is not None or random_init:
            raise ValueError("--pretrained and --random-init go with --model NAME, not --checkpoint")
        model, cfg = load_run(checkpoint)
        return model, cfg, f"checkpoint {checkpoint}"
    if (pretrained is None) == (not random_init):
        raise ValueError(
            f"--model {model_name} needs its weights: --pretrained FILE, or --random-init for a "
            "randomly initialised model (testing only)"
        )
    if pretrained is not None and not Path(pretrained).exists():
        raise FileNotFoundError(f"--pretrained {pretrained}: no such file")
    cfg = apply_overrides(
        Config(), [f"model.name={model_name}", f"data.num_frames={num_frames}", f"data.img_size={img_size}"]
    )
    cfg.model.pretrained = None if pretrained is None else str(pretrained)
    model = build_model(cfg, num_classes=400).eval()
    return model, cfg, f"pretrained {pretrained}" if pretrained is not None else "random init"


def window_features(model: nn.Module, clips: torch.Tensor, layer: str) -> torch.Tensor:
    """``(B, 3, T, h, w)`` clips -> ``(B, D)`` mean per-frame features or ``(B, C)`` logits."""
    feats = model.forward_features(clips)
    return feats.mean(dim=1) if layer == "features" else model.forward_head(feats)


def _identity(item: Any) -> Any:
    return item


class _Windows(IterableDataset):
    """Items of a list of ``(index, path)`` videos: ``("windows", index, WindowBatch)`` in
    order, then ``("end", index, VideoFrames)`` or ``("error", index, message)``. Worker ``w``
    of ``W`` takes videos ``w, w + W, ...``."""

    def __init__(self, videos: list[tuple[int, str]], spec: WindowSpec, transform: Any, batch: int) -> None:
        self.videos, self.spec, self.transform, self.batch = videos, spec, transform, batch

    def __iter__(self):
        info = get_worker_info()
        mine = self.videos if info is None else self.videos[info.id :: info.num_workers]
        for index, path in mine:
            frames = VideoFrames(path)
            try:
                for b in iter_windows(path, self.spec, self.transform, self.batch, frames):
                    yield ("windows", index, b)
            except (VideoDecodeError, OSError) as e:
                text = str(e)
                yield ("error", index, text if path in text else f"{path}: {text}")
                continue
            yield ("end", index, frames)


@dataclass
class _Partial:
    feats: list[torch.Tensor] = field(default_factory=list)
    start_frame: list[int] = field(default_factory=list)
    end_frame: list[int] = field(default_factory=list)
    start_sec: list[float] = field(default_factory=list)
    end_sec: list[float] = field(default_factory=list)


def _settings(model: nn.Module, weights: str, spec: WindowSpec, opts: ExtractOptions, resize: int) -> dict:
    return {
        "weights": weights,
        "model": getattr(model.config, "name", "") or type(model).__name__,
        "layer": opts.layer,
        "per": opts.per,
        "num_frames": spec.num_frames,
        "sampling_rate": spec.sampling_rate,
        "stride": spec.stride,
        "img_size": int(model.config.img_size),
        "resize": resize,
    }


def _read_header(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def _check_existing(out: Path, videos: list[str], names: list[str], settings: dict) -> set[str]:
    """The outputs already there; ``ValueError`` when one was made with other settings or
    from another video."""
    done = set()
    for video, name in zip(videos, names):
        p = out / name
        if not p.is_file():
            continue
        try:
            meta = _read_header(p)
            found = json.loads(meta.get("settings", "null"))
        except Exception as e:  # unreadable: not ours, never overwritten silently
            raise ValueError(
                f"{p} exists but is not a feature file of xvit extract ({e}); use another --out"
            ) from e
        if os.path.realpath(meta.get("path", "")) != os.path.realpath(video):
            raise ValueError(
                f"{p} holds the features of {meta.get('path')}, not of {video}; use another --out"
            )
        if found != settings:
            diff = {k: (found or {}).get(k) for k in settings if (found or {}).get(k) != settings[k]}
            raise ValueError(
                f"{p} was extracted with other settings ({', '.join(f'{k}={v}' for k, v in diff.items())}); "
                "use another --out or the same settings"
            )
        done.add(name)
    return done


def _write(
    path: Path, part: _Partial, frames: VideoFrames, opts: ExtractOptions, settings: dict, writer: str
) -> dict:
    feats = torch.cat(part.feats).float()
    if opts.per == "video":
        feats = feats.mean(dim=0)
    tensors = {
        "features": feats.contiguous(),
        "start_frame": torch.tensor(part.start_frame, dtype=torch.int64),
        "end_frame": torch.tensor(part.end_frame, dtype=torch.int64),
        "start_sec": torch.tensor(part.start_sec, dtype=torch.float64),
        "end_sec": torch.tensor(part.end_sec, dtype=torch.float64),
    }
    row = {
        "path": frames.path,
        "output": str(path),
        "windows": len(part.start_frame),
        "dim": int(feats.shape[-1]),
        "seconds": round(frames.duration, 6),
        "frames": frames.frames,
        "fps": round(frames.fps, 6),
    }
    meta = {k: str(v) for k, v in row.items()} | {
        "settings": json.dumps(settings, sort_keys=True),
        "features_definition": FEATURES_DEFINITION if opts.layer == "features" else "head output (logits)",
        **{k: str(v) for k, v in settings.items()},
        "written_by": writer,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.chmod(tmp, 0o644)  # safetensors creates it private; the other outputs are 0644 too
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return row


def _manifest_rows(out: Path, videos: list[str], names: list[str]) -> list[list[Any]]:
    rows = []
    for video, name in zip(videos, names):
        p = out / name
        if p.is_file():
            meta = _read_header(p)
            rows.append([video, str(p), *(meta.get(k, "") for k in MANIFEST_HEADER[2:])])
    return rows


def extract_videos(
    videos: list[str],
    opts: ExtractOptions,
    model: nn.Module,
    cfg: Config,
    weights: str,
) -> dict[str, Any]:
    """Extract the features of ``videos`` into ``opts.out`` (see the module docstring).

    Returns counts (``videos``, ``written``, ``skipped``, ``failed``), ``failures`` (path and
    error), the manifest path and ``seconds``; under torchrun every rank returns the job's
    totals. Bad options or a clashing ``out`` raise ``ValueError`` before any work.
    """
    opts.check()
    out = Path(opts.out)
    names = output_names(videos, SUFFIX)
    mc = model.config
    rate = opts.sampling_rate or int(cfg.data.sampling_rate)
    spec = WindowSpec(int(mc.num_frames), rate, opts.stride or default_stride(int(mc.num_frames), rate))
    resize = int(cfg.data.test_scale or mc.img_size)
    transform = EvalTransform(crop_size=int(mc.img_size), resize=resize, mean=mc.mean, std=mc.std)
    if opts.layer == "logits" and weights.startswith("pretrained "):
        raise ValueError(
            "--layer logits needs a trained checkpoint: image --pretrained weights leave the head untrained"
        )
    settings = _settings(model, weights, spec, opts, resize)
    resolve_device(opts.device or cfg.train.device)  # a device this machine has not: before any file
    out.mkdir(parents=True, exist_ok=True)
    done = _check_existing(out, videos, names, settings)

    dist_info = init_distributed(opts.device or cfg.train.device)
    workers = default_workers() if opts.workers is None else opts.workers
    configure_threads(cfg.train.threads, dist_info.device, workers)
    rank, world = dist_info.rank, dist_info.world_size
    mine = [(i, videos[i]) for i in range(rank, len(videos), world)]
    todo = [(i, v) for i, v in mine if names[i] not in done]
    model.to(dist_info.device).eval()
    dataset = _Windows(todo, spec, transform, opts.batch_size)
    loader = DataLoader(
        dataset,
        batch_size=None,
        num_workers=min(workers, len(todo)),
        collate_fn=_identity,
        worker_init_fn=worker_init_fn if workers else None,
        multiprocessing_context=worker_context() if workers and todo else None,
    )
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(todo), desc="extract", unit="video", disable=not (opts.progress and dist_info.is_main)
    )
    partial: dict[int, _Partial] = {}
    failures: list[dict[str, Any]] = []
    written = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for kind, index, payload in loader:
            if kind == "windows":
                part = partial.setdefault(index, _Partial())
                part.feats.append(
                    window_features(model, payload.clips.to(dist_info.device), opts.layer).cpu()
                )
                for k in ("start_frame", "end_frame", "start_sec", "end_sec"):
                    getattr(part, k).extend(getattr(payload, k))
                continue
            part = partial.pop(index, _Partial())
            bar.update(1)
            if kind == "error":
                failures.append({"index": index, "path": videos[index], "error": payload})
                continue
            if not part.feats or not all(torch.isfinite(f).all() for f in part.feats):
                why = "no window" if not part.feats else "features are not finite (NaN or infinity)"
                failures.append({"index": index, "path": videos[index], "error": f"{videos[index]}: {why}"})
                continue
            _write(out / names[index], part, payload, opts, settings, f"rank {rank} of {world}")
            written += 1
    bar.close()
    elapsed = time.perf_counter() - t0
    gathered = all_gather_object({"failures": failures, "written": written, "seconds": elapsed})
    failures = sorted((f for g in gathered for f in g["failures"]), key=lambda f: f["index"])
    manifest = out / "manifest.csv"
    if dist_info.is_main:
        rows = _manifest_rows(out, videos, names)
        atomic_write_text(manifest, csv_text([MANIFEST_HEADER, *rows]))
        failed_csv = out / "failed.csv"
        if failures:
            atomic_write_text(
                failed_csv, csv_text([["path", "error"], *[[f["path"], f["error"]] for f in failures]])
            )
        else:
            failed_csv.unlink(missing_ok=True)
    barrier()  # every rank returns once the manifest is there
    return {
        "videos": len(videos),
        "written": sum(g["written"] for g in gathered),
        "skipped": len(done),
        "failed": len(failures),
        "failures": failures,
        "manifest": str(manifest),
        "seconds": max(g["seconds"] for g in gathered),
        "processes": world,
        "rank": rank,
    }
