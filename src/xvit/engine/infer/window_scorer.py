"""Logits of overlapping windows of one video, reusing the backbone work they share.

A window is a list of frame numbers (the model's `num_frames` frames); the caller supplies
each frame's preprocessed pixels. Where the model's frames meet only inside fixed blocks of
`VideoViT.segment_len_for_reuse` frames (per-frame attention, X-ViT / TSM-ViT with
`segment_len`, a temporal embedding that repeats with the block), a block of frames seen in
an earlier window has the same per-frame features in the next one: they are taken from a
cache and only the new blocks go through the backbone; the head runs on the assembled
features. Results equal recomputing every window (up to float rounding of the batch
shapes). Where it does not hold, every window is recomputed and `why_not` says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from xvit.engine.run.precision import autocast

__all__ = ["WindowScorer", "reuse_plan"]


def reuse_plan(model: nn.Module, sampling_rate: int, stride: int) -> tuple[int | None, str]:
    """(frames per reusable block, "") when windows `stride` frames apart share whole
    blocks of the model's clip, else (None, why)."""
    unit = getattr(model, "segment_len_for_reuse", None)
    if unit is None:
        why = model.why_no_segment_reuse() if hasattr(model, "why_no_segment_reuse") else ""
        return None, why or f"{type(model).__name__} has no per-segment features"
    span = (model.config.num_frames - 1) * sampling_rate + 1  # WindowSpec.span
    block = unit * sampling_rate
    if stride >= span:
        return None, f"the windows do not overlap (stride {stride} >= {span} frames per window)"
    if stride % block:
        return None, (
            f"the stride ({stride} frames) is not a multiple of the model's independent blocks of "
            f"{unit} clip frames ({block} video frames at sampling rate {sampling_rate})"
        )
    return unit, ""


class WindowScorer:
    """`score(windows, frames)` -> `(B, num_classes)` float32 logits on the CPU.

    `reuse`: take the features of blocks already computed from the cache (when the model
    allows it, see `reuse_plan`); `computed` / `reused` count the blocks of each kind.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        amp_dtype: torch.dtype | None = None,
        unit: int | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.amp_dtype = amp_dtype
        self.unit = unit
        self.num_frames = int(model.config.num_frames)
        self._cache: dict[tuple[int, ...], torch.Tensor] = {}
        self.computed = 0
        self.reused = 0

    def _clips(self, windows: Sequence[Sequence[int]], frames: Mapping[int, torch.Tensor]) -> torch.Tensor:
        return torch.stack([torch.stack([frames[i] for i in w], dim=1) for w in windows]).to(self.device)

    @torch.no_grad()
    def score(self, windows: Sequence[Sequence[int]], frames: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """Logits of each window; `frames[i]` is frame i's `(3, h, w)` preprocessed pixels."""
        for w in windows:
            if len(w) != self.num_frames:
                raise ValueError(f"a window of {len(w)} frames for a {self.num_frames}-frame model")
        with autocast(self.device, self.amp_dtype):
            if self.unit is None:
                self.computed += len(windows)
                return self.model(self._clips(windows, frames)).float().cpu()
            u = self.unit
            blocks = [[tuple(w[o : o + u]) for o in range(0, self.num_frames, u)] for w in windows]
            todo: dict[int, dict[tuple[int, ...], None]] = {}  # offset -> new blocks (ordered set)
            for row in blocks:
                for k, key in enumerate(row):
                    if key in self._cache or any(key in todo[o] for o in todo):
                        self.reused += 1
                    else:
                        todo.setdefault(k * u, {})[key] = None
            for offset, keys in todo.items():
                feats = self.model.forward_segment_features(self._clips(list(keys), frames), offset)
                for key, f in zip(keys, feats):
                    self._cache[key] = f
                self.computed += len(keys)
            feats = torch.stack([torch.cat([self._cache[key] for key in row]) for row in blocks])
            return self.model.forward_head(feats).float().cpu()

    def forget_before(self, frame: int) -> None:
        """Drop the cached blocks that start before frame `frame` (no later window uses them)."""
        for key in [k for k in self._cache if k[0] < frame]:
            del self._cache[key]
