"""Models in ONNX runtimes as benchmark targets (``xvit benchmark --runtime``).

Each model is exported once (:func:`xvit.engine.deploy.export.export_model`, which checks the file
against the eager model before keeping it) into a working directory; every runtime asked for
opens that file. A target is ``bind(x) -> call``: ``x`` is the clip batch in the model's own
layout, prepared (as a contiguous float32 array) outside the timed call, and ``call()`` runs
the runtime on it. Models that take ``(B, T, 3, H, W)`` clips (transformers' video models)
are exported behind :class:`ChannelsFirst`, which feeds them xvit's ``(B, 3, T, H, W)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from xvit.engine.deploy.export import export_model
from xvit.engine.deploy.runtimes import open_onnx_runtime

__all__ = ["ChannelsFirst", "OnnxTargets"]

Bind = Callable[[torch.Tensor], Callable[[], Any]]


class ChannelsFirst(nn.Module):
    """A model taking ``(B, T, 3, H, W)`` clips, fed ``(B, 3, T, H, W)`` ones; ``config``
    carries the clip size the exporter's check clips are made with."""

    def __init__(self, model: nn.Module, num_frames: int, img_size: int, name: str = "model"):
        super().__init__()
        self.inner = model
        self.config = SimpleNamespace(name=name, num_frames=num_frames, img_size=img_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.transpose(1, 2))


class OnnxTargets:
    """Exports into ``workdir`` (one checked ONNX file per model key) and opens runtimes on them."""

    def __init__(self, workdir: str | os.PathLike[str]):
        self.workdir = Path(workdir)
        self.files: dict[str, Path] = {}
        self.reports: dict[str, str] = {}

    def export(
        self,
        key: str,
        model: nn.Module,
        *,
        num_frames: int,
        img_size: int,
        channels_last_time: bool,
        batches: Sequence[int],
    ) -> Path:
        """The checked ONNX file of ``model`` (exported on the first call for ``key``): a fixed
        batch when one batch size is timed, else a dynamic one."""
        if key in self.files:
            return self.files[key]
        if channels_last_time:
            model = ChannelsFirst(model, num_frames, img_size, key)
        elif getattr(model, "config", None) is None:
            raise ValueError(f"{key}: the model has no config (clip size) to export it with")
        sizes = sorted(set(batches))
        path = self.workdir / f"model{len(self.files)}.onnx"
        report = export_model(
            model,
            "onnx",
            path,
            frames=num_frames,
            dynamic_batch=len(sizes) > 1,
            batch=sizes[0] if len(sizes) == 1 else 2,
        )
        self.files[key] = path
        self.reports[key] = report.summary()
        return path

    def target(
        self,
        key: str,
        model: nn.Module,
        runtime: str,
        *,
        num_frames: int,
        img_size: int,
        channels_last_time: bool = False,
        batches: Sequence[int] = (1,),
    ) -> Bind:
        """``bind(x) -> call`` running ``model``'s ONNX export in ``runtime`` (``onnxruntime``
        or ``openvino``); raises with the reason when the runtime is missing or the model does
        not export. ``channels_last_time``: the model takes ``(B, T, 3, H, W)`` clips."""
        path = self.export(
            key,
            model,
            num_frames=num_frames,
            img_size=img_size,
            channels_last_time=channels_last_time,
            batches=batches,
        )
        session = open_onnx_runtime(runtime, path)

        def bind(x: torch.Tensor) -> Callable[[], Any]:
            clip = x.transpose(1, 2) if channels_last_time else x
            arr = np.ascontiguousarray(clip.detach().float().cpu().numpy())
            return lambda: session.run(arr)

        return bind
