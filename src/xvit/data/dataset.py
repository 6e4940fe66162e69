"""``VideoDataset``: samples -> clip tensors, with failure handling; ``collate``; ``build_loader``.

An item is one video. Its reader is opened once per item and every frame the item needs
(all temporal views in evaluation) is decoded in a single ``read`` call.

Items are dicts:

- training: ``{"video": (3, T, h, w), "label", "index", "replaced": k}`` where ``k`` counts
  the samples that failed to decode and were replaced by a random other one before this
  item (at most ``max_retries``; then the error is raised). The engine sums ``replaced``
  over an epoch: with worker processes a counter on the dataset would live in the workers.
- evaluation: ``{"video": (3, T, h, w) or (V, 3, T, h, w), "label", "index"}`` with
  ``V = t * s`` views in temporal-major order (view ``v`` is temporal clip ``v // s``,
  spatial crop ``v % s``); a video that fails to decode gives
  ``{"video": None, "label", "index", "error": "path: problem"}``.

:func:`collate` stacks the good items and lists the failed ones in ``batch["failed"]``.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from xvit.data.errors import VideoDecodeError
from xvit.data.samples import Sample
from xvit.data.sampling import ClipSampler, build_sampler
from xvit.data.transforms import EvalTransform, TrainTransform
from xvit.data.video import open_video

__all__ = [
    "UnreadableDataError",
    "VideoDataset",
    "build_loader",
    "collate",
    "worker_context",
    "worker_init_fn",
]

logger = logging.getLogger(__name__)


class UnreadableDataError(RuntimeError):
    """Training met only videos that fail to decode: a sample and all its replacements."""


class VideoDataset(Dataset):
    """Clips of ``num_frames`` frames from a list of :class:`~xvit.data.annotations.Sample`.

    Args:
        samples: the videos (path, label, optional frame or time range).
        num_frames: frames per clip (ignored when ``sampler`` is a :class:`ClipSampler`).
        sampler: ``"dense"``, ``"uniform"`` or a :class:`~xvit.data.sampling.ClipSampler`.
        sampling_rate, pad: for the dense sampler (frame step; ``"loop"``/``"repeat_last"``).
        transform: ``clip uint8 (T, 3, H, W) [, generator] -> tensor``. Training: a
            :class:`~xvit.data.transforms.TrainTransform` (default: 224 crops). Evaluation:
            a frame-wise transform returning ``(s, 3, T, h, w)`` like
            :class:`~xvit.data.transforms.EvalTransform` (default: 224, ``s`` crops).
        mode: ``"train"`` (random clip, failures replaced) or ``"eval"`` (``views`` clips,
            failures reported).
        views: ``(t, s)`` temporal clips x spatial crops in evaluation.
        max_retries: replacements tried in training before giving up.
        label_key: for dict labels (Epic-Kitchens), which entry is the label; ``None``
            keeps the dict.
        num_classes: needed for multi-label samples (a tuple of class indices as label),
            whose item label is then a multi-hot float tensor ``(num_classes,)``.
        reader_kwargs: passed to :func:`xvit.data.open_video` (``backend``, ``template``...).
        log_failures: in evaluation, log a warning (``evaluation: cannot decode ...``) for each
            video that fails; False for callers that report the item's ``error`` themselves
            (``xvit predict``), so that each failure is told once.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        num_frames: int = 8,
        sampler: str | ClipSampler = "dense",
        sampling_rate: int = 1,
        pad: str = "loop",
        transform: Callable[..., torch.Tensor] | None = None,
        mode: str = "train",
        views: tuple[int, int] = (1, 1),
        max_retries: int = 10,
        label_key: str | None = None,
        reader_kwargs: dict[str, Any] | None = None,
        num_classes: int | None = None,
        log_failures: bool = True,
    ) -> None:
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        t, s = (int(v) for v in views)
        if t < 1 or s not in (1, 3):
            raise ValueError(f"views must be (t >= 1, s in {{1, 3}}), got {views}")
        if mode == "train" and (t, s) != (1, 1):
            raise ValueError("views apply to mode='eval' only")
        self.samples = list(samples)
        self.sampler = (
            sampler
            if isinstance(sampler, ClipSampler)
            else build_sampler(sampler, num_frames, sampling_rate, pad)
        )
        self.num_frames = self.sampler.num_frames
        self.mode, self.views = mode, (t, s)
        if transform is None:
            transform = TrainTransform() if mode == "train" else EvalTransform(num_crops=s)
        crops = getattr(transform, "num_crops", None)
        if mode == "eval" and crops is not None and crops != s:
            raise ValueError(f"views={views} asks for {s} spatial crops but the transform makes {crops}")
        self.transform = transform
        self.max_retries = max_retries
        self.label_key = label_key
        self.num_classes = num_classes
        for sample in self.samples:
            if isinstance(sample.label, (tuple, list)):
                if num_classes is None:
                    raise ValueError(f"{sample.path}: a multi-label sample needs num_classes")
                bad = [c for c in sample.label if not 0 <= int(c) < num_classes]
                if bad:
                    raise ValueError(f"{sample.path}: labels {bad} outside [0, {num_classes})")
        self.reader_kwargs = dict(reader_kwargs or {})
        self.log_failures = log_failures
        self.num_failures = 0  # in this process; see item["replaced"] for the worker-safe count
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def training(self) -> bool:
        return self.mode == "train"

    def _label(self, sample: Sample) -> Any:
        if isinstance(sample.label, dict) and self.label_key is not None:
            return sample.label[self.label_key]
        if isinstance(sample.label, (tuple, list)):  # multi-label: multi-hot target
            target = torch.zeros(int(self.num_classes))  # checked in __init__
            target[list(sample.label)] = 1.0
            return target
        return sample.label

    # ------------------------------------------------------------------ decoding

    @staticmethod
    def _frame_range(sample: Sample, reader: Any) -> tuple[int, int]:
        """``(first frame, number of frames)`` of the sample's segment (the whole video by default)."""
        start, end = sample.start_frame, sample.end_frame
        if start is None and end is None and (sample.start_time is not None or sample.end_time is not None):
            fps = reader.fps
            if not fps:
                raise VideoDecodeError(sample.path, "has no frame rate, so a time range cannot be used")
            start = math.floor((sample.start_time or 0.0) * fps)
            if sample.end_time is not None:
                end = math.ceil(sample.end_time * fps)
        start = start or 0
        if end is None:
            end = reader.num_frames  # only asked when needed (a frame folder lists its files)
        elif sample.end_frame is None:
            end = min(end, reader.num_frames)
        if end <= start:
            raise VideoDecodeError(
                sample.path, f"no frames in the segment [{start}, {end})" if end > 0 else "has no frames"
            )
        return start, end - start

    def _decode(
        self, sample: Sample, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode the frames of one item: training ``(T, 3, H, W)``; evaluation the unique
        frames of all temporal views plus the ``(t, T)`` positions of each view in them."""
        try:
            with open_video(sample.path, **self.reader_kwargs) as reader:
                start, n = self._frame_range(sample, reader)
                if self.training:
                    return reader.read(self.sampler.sample(n, generator) + start), None
                clips = self.sampler.views(n, self.views[0]) + start
                unique, inverse = torch.unique(clips, sorted=True, return_inverse=True)
                return reader.read(unique), inverse
        except VideoDecodeError:
            raise
        except Exception as e:  # a reader error the decode layer did not wrap
            raise VideoDecodeError(sample.path, f"{type(e).__name__}: {e}") from e

    def load(self, index: int, generator: torch.Generator | None = None) -> dict[str, Any]:
        """Item ``index`` without failure handling (raises ``VideoDecodeError``)."""
        sample = self.samples[index]
        frames, inverse = self._decode(sample, generator)
        if self.training:
            video = self.transform(frames, generator)
        else:
            out = self.transform(frames)  # (s, 3, U, h, w), frame-wise
            t, s = self.views
            video = out[:, :, inverse]  # (s, 3, t, T, h, w)
            video = video.permute(2, 0, 1, 3, 4, 5).reshape(t * s, *video.shape[1:2], *video.shape[3:])
            if t * s == 1:
                video = video[0]
        return {"video": video, "label": self._label(sample), "index": index}

    # ------------------------------------------------------------------ items

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not self.training:
            try:
                return self.load(index)
            except VideoDecodeError as e:
                self.num_failures += 1
                if self.log_failures:
                    logger.warning("evaluation: cannot decode %s", e)
                return {
                    "video": None,
                    "label": self._label(self.samples[index]),
                    "index": index,
                    "error": _error_text(self.samples[index], e),
                }
        current, last_error = index, None
        for replaced in range(self.max_retries + 1):
            if current not in self._bad:
                try:
                    item = self.load(current)
                    item["replaced"] = replaced
                    return item
                except VideoDecodeError as e:
                    self._bad.add(current)
                    self.num_failures += 1
                    last_error = e
                    logger.warning(
                        "training: cannot decode %s; replacing it with another sample",
                        _error_text(self.samples[current], e),
                    )
            current = int(torch.randint(len(self.samples), ()))
        raise UnreadableDataError(
            f"training: sample {index} ({self.samples[index].path}) and {self.max_retries} random "
            f"replacements failed to decode; last error: {last_error or 'known bad samples'}"
        )

    def __repr__(self) -> str:
        return (
            f"VideoDataset({len(self)} samples, mode={self.mode!r}, views={self.views}, "
            f"sampler={self.sampler}, transform={self.transform})"
        )


def _error_text(sample: Sample, error: Exception) -> str:
    text = str(error)
    return text if str(sample.path) in text else f"{sample.path}: {text}"


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack the decodable items; failed ones go to ``batch["failed"]``.

    Returns ``{"video": (B, ...) or None when all failed, "label": (B,) (or a dict of (B,)
    for dict labels, or (B, C) multi-hot float targets), "index": (B,), "replaced": int (sum), "failed": [{"index", "label",
    "error"}, ...]}``.
    """
    good = [b for b in batch if b.get("video") is not None]
    failed = [
        {"index": int(b["index"]), "label": b["label"], "error": b.get("error", "")}
        for b in batch
        if b.get("video") is None
    ]
    out: dict[str, Any] = {
        "video": torch.stack([b["video"] for b in good]) if good else None,
        "index": torch.tensor([int(b["index"]) for b in good], dtype=torch.long),
        "replaced": sum(int(b.get("replaced", 0)) for b in batch),
        "failed": failed,
    }
    labels = [b["label"] for b in good]
    if labels and isinstance(labels[0], torch.Tensor):
        out["label"] = torch.stack(labels).float()
    elif labels and isinstance(labels[0], dict):
        out["label"] = {k: torch.tensor([int(lab[k]) for lab in labels], dtype=torch.long) for k in labels[0]}
    else:
        out["label"] = torch.tensor([int(lab) for lab in labels], dtype=torch.long)
    return out


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy and ``random`` from the worker's torch seed; one intra-op thread per worker."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)


def worker_context() -> multiprocessing.context.BaseContext:
    """How DataLoader workers are started: ``forkserver`` where available, else ``spawn``.

    Never plain ``fork``: the main process runs threads (TensorBoard's event writer, tqdm's
    monitor, torch's thread pools), and a child forked while one of them holds a lock can
    deadlock (seen in the test suite: a worker stuck in its first ``manual_seed``).
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def build_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int = 0,
    shuffle: bool = False,
    distributed: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    prefetch_factor: int = 2,
    sampler: Sampler | None = None,
    pin_memory: bool | None = None,
    persistent: bool = True,
) -> DataLoader:
    """A DataLoader with :func:`collate`, seeded workers (persistent unless ``persistent`` is
    false), pinned memory on CUDA (``pin_memory=None``) or as given.

    ``distributed``: a :class:`~torch.utils.data.DistributedSampler` (``shuffle``, ``seed``,
    ``drop_last``); call ``loader.sampler.set_epoch(epoch)`` every epoch. ``sampler``: your
    own index order (then neither ``shuffle`` nor ``distributed``). Otherwise the shuffle
    order comes from a generator seeded with ``seed`` (the global RNG is untouched).
    """
    if sampler is not None and (shuffle or distributed):
        raise ValueError("build_loader: give either a sampler or shuffle/distributed, not both")
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        shuffle = False
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=drop_last,
        persistent_workers=persistent and workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        worker_init_fn=worker_init_fn if workers > 0 else None,
        multiprocessing_context=worker_context() if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )
