"""`xvit predict VIDEO --timeline`: the model's clip slid along a whole video.

A window is the model's clip as dense sampling defines it: `num_frames` frames,
`sampling_rate` frames apart, covering `(num_frames - 1) x sampling_rate + 1` video frames;
windows start every `stride` frames (default: half a clip on the sampling grid,
`(num_frames // 2) x sampling_rate`). The grid is `engine.infer.window_clips.WindowSpec`, shared
with `--stream` and `xvit extract`. A model trained with uniform sampling
(one frame per segment of the whole video) is slid the same way: the run's
`data.sampling_rate`, or `--sampling-rate`, sets how far apart its frames are.

The video is decoded once, in order (`data.sequential`): each frame a window needs is
preprocessed as the eval transform does (short side, centre crop, normalisation) when it is
decoded and kept until the last window using it is scored; windows are scored in batches as
soon as they are complete, reusing the backbone features of the frames they share with the
previous windows where the model allows it (`engine.infer.window_scorer`).

Per window: its frames (`start_frame`, `end_frame` exclusive), its time span in seconds and
the top-k classes (softmax; one sigmoid per class for a multi-label model), averaged over
`smooth` neighbouring windows when `smooth > 1`. The video-level result is the mean of the
windows' (unsmoothed) probabilities. A video shorter than one window gets one window padded
the way evaluation pads a short clip (frame numbers wrap around to the start), marked
`"padded": true`. A video that breaks part-way keeps the windows completed before the break
(`"complete": false` and the error).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xvit.data.errors import VideoDecodeError
from xvit.data.sampling import DenseSampler
from xvit.data.sequential import VideoFrames
from xvit.data.transforms import EvalTransform
from xvit.engine.infer.window_clips import WindowSpec, default_stride
from xvit.engine.infer.window_scorer import WindowScorer, reuse_plan
from xvit.engine.run.rundir import atomic_write, atomic_write_text
from xvit.engine.run.schema import Config

__all__ = [
    "TIMELINE_SUFFIXES",
    "Timeline",
    "TimelineOptions",
    "check_timeline_options",
    "compute_timeline",
    "smooth_probs",
    "write_timeline",
]

TIMELINE_SUFFIXES = (".json", ".csv")


@dataclass
class TimelineOptions:
    """`stride` (None: half a window) and `sampling_rate` (None: the run's) in frames;
    `smooth` windows averaged; `topk` classes per window; `batch_size` windows per model
    call; `reuse`: reuse shared segments where exact."""

    stride: int | None = None
    smooth: int = 1
    topk: int = 5
    sampling_rate: int | None = None
    batch_size: int = 8
    reuse: bool = True


def check_timeline_options(options: TimelineOptions) -> None:
    """Raise ``ValueError`` naming the first option out of range."""
    for flag, value in (
        ("--stride", options.stride),
        ("--smooth", options.smooth),
        ("--topk", options.topk),
        ("--sampling-rate", options.sampling_rate),
        ("--batch-size", options.batch_size),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{flag} must be an integer >= 1, got {value!r}")


@dataclass
class Timeline:
    """The windows of one video and their class probabilities (see the module doc)."""

    path: str
    num_frames: int
    fps: float
    clip_frames: int
    sampling_rate: int
    stride: int
    smooth: int
    topk: int
    class_names: list[str]
    multi_label: bool
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # exclusive
    times: list[float] = field(default_factory=list)  # of every decoded frame
    probs: torch.Tensor | None = None  # (W, C), unsmoothed
    padded: bool = False
    complete: bool = True
    error: str = ""
    reuse_unit: int | None = None
    reuse_note: str = ""
    computed: int = 0
    reused: int = 0

    @property
    def window_frames(self) -> int:
        """Video frames one window covers, first to last (``WindowSpec.span``)."""
        return (self.clip_frames - 1) * self.sampling_rate + 1

    def seconds(self, frame: int) -> float:
        """Start time of frame `frame` (the end of the last frame for `frame` = frames decoded)."""
        if frame < len(self.times):
            return self.times[frame]
        last = self.times[-1] if self.times else 0.0
        step = (last - self.times[0]) / (len(self.times) - 1) if len(self.times) > 1 else 1.0 / self.fps
        return last + step * (frame - len(self.times) + 1)

    def smoothed(self) -> torch.Tensor:
        assert self.probs is not None
        return smooth_probs(self.probs, self.smooth)

    def video_probs(self) -> torch.Tensor:
        assert self.probs is not None
        return self.probs.mean(0)

    def entries(self, probs: torch.Tensor) -> list[dict[str, Any]]:
        """The top-k of a `(C,)` probability vector as `{"class", "index", "prob"}`."""
        top = probs.topk(min(self.topk, probs.numel()))
        return [
            {"class": self._name(int(c)), "index": int(c), "prob": round(float(p), 6)}
            for p, c in zip(top.values, top.indices)
        ]

    def _name(self, c: int) -> str:
        return self.class_names[c] if c < len(self.class_names) else str(c)

    def to_dict(self) -> dict[str, Any]:
        smoothed = self.smoothed()
        windows = [
            {
                "window": i,
                "start_frame": s,
                "end_frame": e,
                "start_s": round(self.seconds(s), 6),
                "end_s": round(self.seconds(e), 6),
                "top": self.entries(smoothed[i]),
            }
            for i, (s, e) in enumerate(zip(self.starts, self.ends))
        ]
        return {
            "video": self.path,
            "num_frames": self.num_frames,
            "fps": round(self.fps, 6),
            "window": {
                "clip_frames": self.clip_frames,
                "sampling_rate": self.sampling_rate,
                "frames": self.window_frames,
                "stride": self.stride,
            },
            "smooth": self.smooth,
            "multi_label": self.multi_label,
            "padded": self.padded,
            "complete": self.complete,
            "error": self.error or None,
            "reuse": {
                "segment_frames": self.reuse_unit,
                "why_not": self.reuse_note or None,
                "segments_computed": self.computed if self.reuse_unit else None,
                "segments_reused": self.reused if self.reuse_unit else None,
            },
            "video_result": self.entries(self.video_probs()),
            "windows": windows,
        }


def smooth_probs(probs: torch.Tensor, k: int) -> torch.Tensor:
    """Each row of `(W, C)` averaged with its neighbours: rows `i - (k-1)//2 .. i + k//2`,
    cut at the ends (fewer rows averaged there)."""
    if k <= 1 or probs.shape[0] == 0:
        return probs.clone()
    lo, hi = (k - 1) // 2, k // 2
    csum = torch.cat([probs.new_zeros(1, probs.shape[1]), probs.double().cumsum(0)])
    n = probs.shape[0]
    idx = torch.arange(n)
    a, b = (idx - lo).clamp(min=0), (idx + hi + 1).clamp(max=n)
    return ((csum[b] - csum[a]) / (b - a)[:, None].double()).to(probs.dtype)


def _probs(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    return logits.sigmoid() if multi_label else logits.softmax(-1)


def compute_timeline(
    model: nn.Module,
    cfg: Config,
    path: str | Path,
    options: TimelineOptions,
    device: torch.device,
    notify: Callable[[str], None] = lambda _msg: None,
    progress: bool = False,
) -> Timeline:
    """The timeline of one video (see the module doc). `notify` gets the notes a user should
    see once (a padded short video, why segments are not reused). Raises `VideoDecodeError`
    when the video cannot be opened; a break part-way or Ctrl-C returns what was done, with
    `complete=False` (`error` says which)."""
    check_timeline_options(options)
    d = cfg.data
    mc = model.config
    t = int(mc.num_frames)
    rate = options.sampling_rate or int(d.sampling_rate)
    spec = WindowSpec(t, rate, options.stride or default_stride(t, rate))  # the one window grid
    span, stride = spec.span, spec.stride
    video = VideoFrames(path, max_frame_pixels=d.max_frame_pixels or None)
    n = video.num_frames
    multi_label = bool(getattr(mc, "multi_label", False))
    tl = Timeline(
        path=str(path),
        num_frames=n,
        fps=video.fps,
        clip_frames=t,
        sampling_rate=rate,
        stride=stride,
        smooth=options.smooth,
        topk=options.topk,
        class_names=list(mc.class_names or []),
        multi_label=multi_label,
    )
    last_offset = (t - 1) * rate  # the last frame of a window, from its start
    short = n <= last_offset
    if short:
        tl.padded = True
        notify(
            f"{path}: {n} frames, shorter than one window ({t} frames x sampling rate {rate}); "
            "one window, its frame numbers wrapping around to the start as in evaluation"
        )
        unit, why = None, ""
    else:
        unit, why = reuse_plan(model, rate, stride) if options.reuse else (None, "--no-reuse")
        if unit is None and why != "--no-reuse":
            notify(f"every window is recomputed: {why}")
    tl.reuse_unit, tl.reuse_note = unit, why
    scorer = WindowScorer(model, device, unit=unit)
    transform = EvalTransform(
        crop_size=d.img_size, resize=d.test_scale or d.img_size, num_crops=1, mean=mc.mean, std=mc.std
    )

    def needed(i: int) -> bool:
        if short:
            return True
        return any(
            i - j * rate >= 0 and (i - j * rate) % stride == 0 and i - j * rate + last_offset < n
            for j in range(t)
        )

    frames: dict[int, torch.Tensor] = {}
    raw: dict[int, torch.Tensor] = {}
    ready: list[list[int]] = []
    logits: list[torch.Tensor] = []

    def preprocess() -> None:
        if raw:
            keys = list(raw)
            out = transform(torch.stack([raw[k] for k in keys]))[0]  # (3, n, c, c)
            frames.update({k: out[:, j] for j, k in enumerate(keys)})
            raw.clear()

    def flush() -> None:
        if ready:
            preprocess()
            logits.append(scorer.score(ready, frames))
            for w in ready:
                tl.starts.append(w[0])
                tl.ends.append(min(w[0] + span, n) if not short else n)
            ready.clear()

    next_start = 0
    bar = _progress(n, str(path), progress)
    try:
        for frame in video:
            tl.times.append(frame.time)
            if needed(frame.index):
                raw[frame.index] = frame.rgb
                if len(raw) >= 64:
                    preprocess()
            while not short and next_start + last_offset <= frame.index:
                ready.append([next_start + j * rate for j in range(t)])
                next_start += stride
            if len(ready) >= options.batch_size:
                flush()
                for k in [k for k in frames if k < next_start]:
                    del frames[k]
                scorer.forget_before(next_start)
            bar.update(1)
        if short:
            ready.append(DenseSampler(t, rate).views(n, 1)[0].tolist())
        flush()
    except VideoDecodeError as e:
        flush()
        tl.complete, tl.error = False, str(e)
    except KeyboardInterrupt:
        tl.complete, tl.error = False, "interrupted"
    finally:
        bar.close()
    probs = _probs(torch.cat(logits), multi_label) if logits else torch.zeros(0, int(mc.num_classes))
    if not torch.isfinite(probs).all():
        bad = int((~torch.isfinite(probs).all(-1)).nonzero()[0, 0])
        raise FloatingPointError(f"{path}: the model output is not finite (NaN or infinity) in window {bad}")
    tl.probs = probs
    tl.computed, tl.reused = scorer.computed, scorer.reused
    return tl


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=Path(desc).name, unit="frame", disable=not enabled, leave=False)


def write_timeline(tl: Timeline, out: str | Path) -> Path:
    """Write the timeline as JSON (`.json`: `Timeline.to_dict()`) or CSV (`.csv`: one row per
    window, then a row `video` with the video-level result), atomically."""
    out = Path(out)
    data = tl.to_dict()
    if out.suffix.lower() == ".json":
        return atomic_write_text(out, json.dumps(data, indent=1) + "\n")
    if out.suffix.lower() != ".csv":
        raise ValueError(f"{out}: the timeline is written as .json or .csv")
    k = max([len(w["top"]) for w in data["windows"]] + [len(data["video_result"])])
    header = ["window", "start_frame", "end_frame", "start_s", "end_s"]
    for r in range(1, k + 1):
        header += [f"top{r}_class", f"top{r}_prob"]

    def row(name: Any, s: int, e: int, top: list[dict[str, Any]]) -> list[Any]:
        cells = [name, s, e, round(tl.seconds(s), 6), round(tl.seconds(e), 6)]
        for entry in top:
            cells += [entry["class"], entry["prob"]]
        return cells + [""] * (len(header) - len(cells))

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            for win in data["windows"]:
                w.writerow(row(win["window"], win["start_frame"], win["end_frame"], win["top"]))
            w.writerow(row("video", 0, len(tl.times), data["video_result"]))

    return atomic_write(out, write)


def frame_windows(tl: Timeline, num_frames: int) -> list[int]:
    """For each of `num_frames` frames, the window whose centre is nearest (the earlier one on
    a tie): the window whose label a frame shows."""
    if not tl.starts:
        raise ValueError("the timeline has no windows")
    centres = [(s + e - 1) / 2 for s, e in zip(tl.starts, tl.ends)]
    out, w = [], 0
    for f in range(num_frames):
        while w + 1 < len(centres) and abs(centres[w + 1] - f) < abs(centres[w] - f):
            w += 1
        out.append(w)
    return out
