"""Data pipeline: decoding, annotations, sampling, transforms, datasets."""

# (no `from __future__ import annotations` here: it would shadow the `annotations` submodule)

import importlib
from typing import Any

# The public names, imported on first use (PEP 562): importing one submodule (a reader, the
# annotation parsers) does not import the rest, nor torch.
_LAZY = {
    "read_annotations": "xvit.data.annotations",
    "available_cores": "xvit.data.cores",
    "VideoDataset": "xvit.data.dataset",
    "build_loader": "xvit.data.dataset",
    "collate": "xvit.data.dataset",
    "AnnotationError": "xvit.data.errors",
    "VideoDecodeError": "xvit.data.errors",
    "FrameFolderReader": "xvit.data.frames",
    "HDF5FrameReader": "xvit.data.frames",
    "decode_image": "xvit.data.frames",
    "Mixup": "xvit.data.mixup",
    "Annotations": "xvit.data.samples",
    "Sample": "xvit.data.samples",
    "DenseSampler": "xvit.data.sampling",
    "UniformSampler": "xvit.data.sampling",
    "EvalTransform": "xvit.data.transforms",
    "TrainTransform": "xvit.data.transforms",
    "VideoReader": "xvit.data.video",
    "open_video": "xvit.data.video",
    "read_frames": "xvit.data.video",
    "torchcodec_available": "xvit.data.video_torchcodec",
}

__all__ = [
    "AnnotationError",
    "Annotations",
    "DenseSampler",
    "EvalTransform",
    "FrameFolderReader",
    "HDF5FrameReader",
    "Mixup",
    "Sample",
    "TrainTransform",
    "UniformSampler",
    "VideoDataset",
    "VideoDecodeError",
    "VideoReader",
    "available_cores",
    "build_loader",
    "collate",
    "decode_image",
    "open_video",
    "read_annotations",
    "read_frames",
    "torchcodec_available",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xvit.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
