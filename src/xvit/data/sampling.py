"""Clip samplers: which frame indices of a video make a clip.

A sampler maps the number of frames available (``num_available``) to frame indices:

- ``sample(num_available, generator)`` -> ``(T,)`` int64, one training clip (random);
- ``views(num_available, num_clips)`` -> ``(t, T)`` int64, ``t`` evaluation clips spread
  evenly over the video (deterministic).

Two samplers are provided, as in pytorchvideo / PySlowFast / TSN:

- :class:`DenseSampler`: ``num_frames`` frames ``sampling_rate`` apart from a start frame;
  random start in training, evenly spaced starts in testing (the centres of ``t`` equal
  parts of the valid start range). Clips that run past the end either ``"loop"`` back to
  the first frame or ``"repeat_last"`` frame.
- :class:`UniformSampler`: the video is cut into ``num_frames`` equal segments and one
  frame is taken from each; a random offset in each segment in training, the centre in
  testing (view ``k`` of ``t`` takes offset ``(k + 0.5) / t``). Videos with fewer frames
  than segments repeat frames.

Indices are relative to the start of the video (or of the annotated segment).
"""

from __future__ import annotations

import math

import torch

__all__ = ["ClipSampler", "DenseSampler", "UniformSampler", "build_sampler"]


class ClipSampler:
    """Base class: ``num_frames`` frame indices per clip."""

    num_frames: int

    def sample(self, num_available: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """One training clip: ``(T,)`` int64 indices in ``[0, num_available)``."""
        raise NotImplementedError

    def views(self, num_available: int, num_clips: int = 1) -> torch.Tensor:
        """``num_clips`` evaluation clips spread over the video: ``(t, T)`` int64."""
        raise NotImplementedError

    @staticmethod
    def _check(num_available: int, num_clips: int = 1) -> None:
        if num_available < 1:
            raise ValueError(f"cannot sample a clip from a video with {num_available} frames")
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")


class DenseSampler(ClipSampler):
    """``num_frames`` frames, ``sampling_rate`` apart, from a random (train) or spread (test) start."""

    def __init__(self, num_frames: int, sampling_rate: int = 1, pad: str = "loop") -> None:
        if num_frames < 1 or sampling_rate < 1:
            raise ValueError(f"num_frames and sampling_rate must be >= 1, got {num_frames}, {sampling_rate}")
        if pad not in ("loop", "repeat_last"):
            raise ValueError(f"pad must be 'loop' or 'repeat_last', got {pad!r}")
        self.num_frames = num_frames
        self.sampling_rate = sampling_rate
        self.pad = pad

    @property
    def span(self) -> int:
        """Number of frames one clip covers, first to last inclusive."""
        return (self.num_frames - 1) * self.sampling_rate + 1

    def _clip(self, start: int, num_available: int) -> torch.Tensor:
        idx = start + self.sampling_rate * torch.arange(self.num_frames, dtype=torch.int64)
        if self.pad == "loop":
            return idx % num_available
        return idx.clamp(max=num_available - 1)

    def sample(self, num_available: int, generator: torch.Generator | None = None) -> torch.Tensor:
        self._check(num_available)
        delta = max(num_available - self.span, 0)
        start = int(torch.randint(0, delta + 1, (1,), generator=generator))
        return self._clip(start, num_available)

    def views(self, num_available: int, num_clips: int = 1) -> torch.Tensor:
        self._check(num_available, num_clips)
        delta = max(num_available - self.span, 0)
        starts = [math.floor(delta * (2 * k + 1) / (2 * num_clips) + 0.5) for k in range(num_clips)]
        return torch.stack([self._clip(s, num_available) for s in starts])

    def __repr__(self) -> str:
        return f"DenseSampler(num_frames={self.num_frames}, sampling_rate={self.sampling_rate}, pad={self.pad!r})"


class UniformSampler(ClipSampler):
    """One frame from each of ``num_frames`` equal segments (TSN / SSv2 style)."""

    def __init__(self, num_frames: int) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames = num_frames

    def _at(self, num_available: int, offsets: torch.Tensor) -> torch.Tensor:
        seg = num_available / self.num_frames
        pos = (torch.arange(self.num_frames, dtype=torch.float64) + offsets) * seg
        return pos.floor().to(torch.int64).clamp(0, num_available - 1)

    def sample(self, num_available: int, generator: torch.Generator | None = None) -> torch.Tensor:
        self._check(num_available)
        offsets = torch.rand(self.num_frames, generator=generator, dtype=torch.float64)
        return self._at(num_available, offsets)

    def views(self, num_available: int, num_clips: int = 1) -> torch.Tensor:
        self._check(num_available, num_clips)
        return torch.stack(
            [
                self._at(
                    num_available, torch.full((self.num_frames,), (k + 0.5) / num_clips, dtype=torch.float64)
                )
                for k in range(num_clips)
            ]
        )

    def __repr__(self) -> str:
        return f"UniformSampler(num_frames={self.num_frames})"


def build_sampler(kind: str, num_frames: int, sampling_rate: int = 1, pad: str = "loop") -> ClipSampler:
    """A sampler by name: ``"dense"`` or ``"uniform"`` (alias ``"segment"``)."""
    if kind == "dense":
        return DenseSampler(num_frames, sampling_rate, pad)
    if kind in ("uniform", "segment"):
        return UniformSampler(num_frames)
    raise ValueError(f"unknown sampler {kind!r}; expected 'dense' or 'uniform'")
