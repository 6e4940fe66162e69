"""The settings of the dataset tools (`xvit data synth`, `xvit data prepare`), importable
without torch or PyAV so that the command line can show their defaults at once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from xvit.data.errors import PrepareError

__all__ = ["VERSION", "X264_PRESETS", "PrepareSettings", "SynthConfig", "parse_fps"]


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of a generated dataset (all recorded in the ``synth.json`` marker)."""

    seed: int = 0
    num_train: int = 128  # videos per class
    num_val: int = 25  # videos per class
    size: int = 32  # frame height = width
    num_frames: int = 8
    fps: int = 8
    crf: int = 18  # x264 quality (lower is better)

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be >= {low}, got {getattr(self, name)}"
            for name, low in (
                ("seed", 0),
                ("num_train", 1),
                ("num_val", 0),
                ("size", 16),
                ("num_frames", 2),
                ("fps", 1),
                ("crf", 0),
            )
            if getattr(self, name) < low
        ]
        if self.size % 2:
            problems.append(f"size must be even (H.264 4:2:0), got {self.size}")
        if problems:
            raise ValueError("synthetic dataset: " + "; ".join(problems))


# libx264's presets, fastest first (x264 refuses any other name, for every video)
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)

VERSION = 1  # bump when the encoding changes, so finished outputs are re-encoded


@dataclass(frozen=True)
class PrepareSettings:
    """How videos are re-encoded (all recorded per output; a change re-encodes)."""

    short_side: int = 320  # 0 keeps the size; the top of the recipes' scale jitter [256, 320]
    gop: int = 16  # a keyframe every `gop` frames
    fps: str | None = None  # None keeps the source timing; else "30", "29.97", "30000/1001"
    crf: int = 23
    preset: str = "fast"

    def __post_init__(self) -> None:
        if self.short_side < 0 or self.short_side == 1:
            raise PrepareError(f"--short-side must be 0 (keep) or >= 2, got {self.short_side}")
        if self.gop < 1:
            raise PrepareError(f"--gop must be >= 1, got {self.gop}")
        if not 0 <= self.crf <= 51:
            raise PrepareError(f"--crf must be in [0, 51], got {self.crf}")
        if self.preset not in X264_PRESETS:
            raise PrepareError(f"--preset must be one of {', '.join(X264_PRESETS)}; got {self.preset!r}")
        if self.fps is not None:
            parse_fps(self.fps)

    def record(self) -> dict[str, Any]:
        return {"version": VERSION, **dataclasses.asdict(self)}


def parse_fps(text: str) -> Fraction:
    """A frame rate as a fraction: ``"30"``, ``"29.97"`` or ``"30000/1001"``."""
    try:
        rate = Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError):
        raise PrepareError(f"--fps must be a number like 30, 29.97 or 30000/1001, got {text!r}") from None
    if rate <= 0 or rate > 1000:
        raise PrepareError(f"--fps must be in (0, 1000], got {text!r}")
    return rate.limit_denominator(1001)
