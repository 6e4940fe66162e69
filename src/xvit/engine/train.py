"""The training loop: one process or many (DDP under torchrun), resumable bit for bit.

A run directory ``OUT`` holds::

    config.yaml             the resolved configuration
    checkpoints/step_*.pt   resumable state (see xvit.engine.checkpoint)
    log.jsonl               one JSON object per event (train steps, validation, resume, end)
    tb/                     TensorBoard events
    model.safetensors       the final model and its config.json (xvit.load_model(OUT))
    config.json
    metrics.json            final validation figures (top1, top5, mean_class_accuracy, ...)

Determinism: the order of the training clips is a function of (seed, epoch) only
(:class:`ResumableSampler`), and every clip's augmentation is drawn from RNGs seeded with a
function of (seed, epoch, rank, position in the epoch) (:class:`SeededDataset`), whatever
worker decodes it. The main process's RNG (dropout, stochastic depth, mixup) is saved in
every checkpoint. A resumed run therefore skips the batches already done and continues with
exactly the numbers the uninterrupted run would have seen.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from xvit.engine import checkpoint as ckpt
from xvit.engine.config import (
    Config,
    ConfigError,
    check_config,
    config_to_dict,
    model_options,
    parse_views,
    save_config,
)
from xvit.engine.data import TrainData, build_datasets
from xvit.engine.distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_max,
    all_reduce_sum,
    barrier,
    configure_threads,
    init_distributed,
)
from xvit.engine.evaluate import autocast, evaluate, write_metrics
from xvit.engine.optim import ModelEma, build_optimizer, scaled_lr, warmup_cosine
from xvit.engine.rundir import (
    FreshStart,
    RunDirError,
    RunLock,
    WriteError,
    atomic_write,
    check_output_dir,
    remove_stale_temporaries,
    resolve_leftovers,
    strict_json,
)

__all__ = [
    "NonFiniteLossError",
    "ResumableSampler",
    "SeededDataset",
    "TrainData",
    "TrainResult",
    "Trainer",
    "amp_dtype_for",
    "build_model",
    "sample_seed",
    "train",
]

_MASK64 = (1 << 64) - 1

# Settings that may differ when a run resumes (docs/training.md, "Failures and recovery"):
# they take effect from the resumed step on and are recorded in config.yaml and log.jsonl.
# Any other change (model, data, batch, seed, optimiser, augmentation, ...) is refused: it
# would change what the checkpoint's state means. All of eval.* may change too.
RESUMABLE_KEYS = frozenset({
    "train.epochs", "train.device", "train.threads", "train.amp", "train.checkpoint_every",
    "train.keep_checkpoints", "train.eval_every", "train.log_every", "train.tensorboard",
    "data.workers", "model.grad_checkpointing",
    "optim.lr", "optim.base_lr", "optim.base_batch_size", "optim.min_lr", "optim.warmup_epochs",
    "optim.clip_grad", "optim.ema_decay",
})


def resumable_change(key: str) -> bool:
    """Whether config key ``key`` ("section.name") may change when a run resumes."""
    return key in RESUMABLE_KEYS or key.startswith("eval.")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped before using it."""


def sample_seed(seed: int, epoch: int, rank: int, position: int) -> int:
    """A 63-bit seed that is a fixed function of its arguments (splitmix64 mixing)."""
    x = 0
    for v in (seed, epoch, rank, position):
        x = (x ^ (v & _MASK64)) * 0x9E3779B97F4A7C15 & _MASK64
        x ^= x >> 30
        x = x * 0xBF58476D1CE4E5B9 & _MASK64
        x ^= x >> 27
        x = x * 0x94D049BB133111EB & _MASK64
        x ^= x >> 31
    return x >> 1


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` order (a function of seed and epoch), resumable mid-epoch.

    Yields ``(dataset_index, sample_seed)`` pairs for this rank, starting ``start`` samples
    into the epoch. Works with one process too (``num_replicas=1``).
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, shuffle: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        """Iterate epoch ``epoch`` from its ``start``-th sample (of this rank)."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self):
        indices = list(super().__iter__())
        for pos in range(self.start, len(indices)):
            yield indices[pos], sample_seed(self.seed, self.epoch, self.rank, pos)

    def __len__(self) -> int:
        return self.num_samples - self.start


class SeededDataset(Dataset):
    """Wraps a dataset so that item ``(index, seed)`` is drawn with torch, numpy and Python
    ``random`` seeded from ``seed``; the caller's RNG states are restored afterwards."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % (1 << 32))
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


@dataclass
class TrainResult:
    """What a finished run returns (metrics only on rank 0)."""

    out: Path
    model: nn.Module
    global_step: int
    metrics: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def amp_dtype_for(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None: full precision)."""
    if amp == "none":
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError("train.amp=fp16 needs a CUDA device; use bf16 on CPU")
        return torch.float16
    raise ValueError(f"train.amp must be auto, none, bf16 or fp16, got {amp!r}")


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python ``random``."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def build_model(cfg: Config, num_classes: int, class_names: list[str] | None = None) -> nn.Module:
    """``xvit.create_model`` from ``cfg`` (:func:`~xvit.engine.config.model_options`); the
    class names are stored in ``model.config`` so the saved model describes itself, and the
    normalisation it was built with is the one the data pipeline uses."""
    import xvit

    model = xvit.create_model(
        cfg.model.name,
        num_classes=num_classes,
        pretrained=cfg.model.pretrained,
        **model_options(cfg),
    )
    mcfg = getattr(model, "config", None)
    if mcfg is not None and class_names is not None and hasattr(mcfg, "class_names"):
        mcfg.class_names = list(class_names)
    if cfg.model.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


class RunLogger:
    """Console lines, ``log.jsonl`` and TensorBoard scalars, written by rank 0 only."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool, echo: bool = True) -> None:
        self.enabled = enabled
        self.echo = echo
        self.jsonl = out / "log.jsonl"
        self.out = out
        self.tb = None  # opened with the first event: nothing is written before the run starts
        self.tensorboard = enabled and tensorboard

    def print(self, msg: str) -> None:
        if self.enabled and self.echo:
            print(msg, flush=True)

    def event(self, kind: str, step: int, **values: Any) -> None:
        if not self.enabled:
            return
        row = {"event": kind, "step": step, "time": round(time.time(), 3), **values}
        with open(self.jsonl, "a") as f:  # strict JSON: NaN / inf become null
            f.write(json.dumps(strict_json(row)[0], allow_nan=False) + "\n")
        if self.tensorboard and self.tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(self.out / "tb"))
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def _fmt_time(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Trainer:
    """Builds everything a run needs from a :class:`Config` and runs the epochs.

    ``data`` and ``model`` may be given (tests, notebooks); by default they are built from the
    config. Call :meth:`run`.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        data: TrainData | None = None,
        model: nn.Module | None = None,
        fresh: bool = False,
        dist_info: DistInfo | None = None,
        command: list[str] | None = None,
        echo: bool = True,
    ) -> None:
        # The run directory is locked from here until run() ends (or close()); a failure while
        # building unlocks it and undoes a --fresh start.
        self.lock: RunLock | None = None
        self.fresh_start: FreshStart | None = None
        try:
            self._setup(cfg, data=data, model=model, fresh=fresh, dist_info=dist_info,
                        command=command, echo=echo)
        except BaseException:
            self.close()
            raise

    def _setup(self, cfg: Config, *, data: TrainData | None, model: nn.Module | None, fresh: bool,
               dist_info: DistInfo | None, command: list[str] | None, echo: bool) -> None:
        check_config(cfg)  # configs built in Python get the checks load_config applies
        self.cfg = cfg
        self.dist = dist_info or init_distributed(cfg.train.device)
        self.device = self.dist.device
        self.threads = configure_threads(cfg.train.threads, self.device, cfg.data.workers)
        self.out = Path(cfg.train.out)
        self.ckpt_dir = self.out / "checkpoints"
        self.command = command
        self.views = parse_views(cfg.eval.views)
        if cfg.train.epochs < 1:
            raise ConfigError(f"train.epochs must be at least 1, got {cfg.train.epochs}")

        self.log = RunLogger(self.out, self.dist.is_main, cfg.train.tensorboard, echo)
        self._open_run_dir()

        # Data, then the model (seeded alike on every rank; DDP also broadcasts rank 0's).
        seed_everything(cfg.train.seed)
        self.data = data if data is not None else build_datasets(cfg, self.views)
        num_classes = len(self.data.class_names)
        model = model if model is not None else build_model(cfg, num_classes, self.data.class_names)
        self.model = model.to(self.device)
        self.ddp_model: nn.Module = self.model
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=ids)
        self.ema = ModelEma(self.model, cfg.optim.ema_decay) if cfg.optim.ema else None

        # Steps, learning rate, optimiser, schedule, precision.
        tcfg, ocfg = cfg.train, cfg.optim
        self.sampler = ResumableSampler(
            self.data.train, self.dist.world_size, self.dist.rank, seed=tcfg.seed
        )
        self.batches_per_epoch = self.sampler.num_samples // cfg.data.batch_size
        self.steps_per_epoch = self.batches_per_epoch // ocfg.accum_steps
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"the training set has {len(self.data.train)} clips: fewer than one step of "
                f"data.batch_size={cfg.data.batch_size} x {self.dist.world_size} process(es) x "
                f"optim.accum_steps={ocfg.accum_steps}"
            )
        self.total_steps = tcfg.epochs * self.steps_per_epoch
        self.total_batch = cfg.data.batch_size * self.dist.world_size * ocfg.accum_steps
        self.lr = scaled_lr(ocfg, self.total_batch)
        self.optimizer = build_optimizer(ocfg, self.model, self.lr)
        warmup = round(ocfg.warmup_epochs * self.steps_per_epoch)
        self.scheduler = warmup_cosine(self.optimizer, warmup, self.total_steps, ocfg.min_lr, self.lr)
        self.amp_dtype = amp_dtype_for(tcfg.amp, self.device)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self.multi_label = bool(cfg.data.multi_label)  # multi-hot targets, BCE, mAP
        self.mixer = build_mixer(cfg, num_classes)

        # Position: epoch, micro-batches done in it, optimiser steps done.
        self.epoch, self.batch_in_epoch, self.global_step = 0, 0, 0
        self.last_checkpoint: Path | None = None
        self.history: list[dict[str, Any]] = []
        torch.manual_seed(sample_seed(tcfg.seed, -1, self.dist.rank, 0))
        if fresh:  # only now that the data and the model were built without error
            self._clear_run_dir()
        self._resume_or_start()

    # ------------------------------------------------------------------ run directory, resume

    def _open_run_dir(self) -> None:
        """Check OUT is usable, create and lock it (rank 0), finish an interrupted --fresh;
        every rank raises the same :class:`RunDirError` when that fails."""
        error: Exception | None = None
        if self.dist.is_main:
            try:
                check_output_dir(self.out, "run directory (train.out)")
                self.out.mkdir(parents=True, exist_ok=True)
                self.lock = RunLock(self.out, self.command)
                if not self.lock.acquire():
                    self.log.print(f"warning: {self.out} cannot be locked (no flock on this file "
                                   f"system): a second run on it would not be stopped")
                resolve_leftovers(self.out, lambda: bool(ckpt.list_checkpoints(self.ckpt_dir)),
                                  self.log.print)
                remove_stale_temporaries(self.out)  # of a process killed while writing
            except RunDirError as e:
                error = e
        verdict = all_gather_object(None if error is None else str(error))[0]
        if error is not None:
            raise error
        if verdict is not None:
            raise RunDirError(verdict)

    def _clear_run_dir(self) -> None:
        """--fresh: set the old run's files aside; they are deleted once this run writes its
        first checkpoint, and put back if it ends before (see xvit.engine.rundir.FreshStart)."""
        if self.dist.is_main:
            self.fresh_start = FreshStart(self.out, self.log.print)
            self.fresh_start.begin()
        barrier()

    def close(self) -> None:
        """Release the run directory (idempotent; :meth:`run` calls it): a --fresh start without
        a checkpoint of its own is undone, the lock released."""
        log = getattr(self, "log", None)
        if log is not None:
            log.close()
        try:
            if self.fresh_start is not None and self.fresh_start.pending:
                self.fresh_start.rollback()
        finally:
            if self.lock is not None:
                self.lock.release()

    def _save_config(self) -> None:
        atomic_write(self.out / "config.yaml", lambda tmp: save_config(self.cfg, tmp))

    def _resume_or_start(self) -> None:
        found = ckpt.list_checkpoints(self.ckpt_dir)
        state, resumed_from = None, None
        for path in reversed(found):  # newest readable one
            try:
                state, resumed_from = ckpt.load_checkpoint(path), path
                break
            except RuntimeError as e:
                # Set aside, so that it is neither resumed from nor counted by pruning.
                moved = ckpt.quarantine(path) if self.dist.is_main and path.exists() else path
                self.log.print(f"warning: {e}; moved to {moved.name}, trying an older checkpoint")
        if self.data.held_out:
            self.log.print(self.data.held_out)
        if state is None:
            if self.dist.is_main:
                self._save_config()
            self.log.print(
                f"training {self.cfg.model.name} on {len(self.data.train)} clips "
                f"({len(self.data.class_names)} classes), {self.cfg.train.epochs} epochs x "
                f"{self.steps_per_epoch} steps, batch {self.total_batch} "
                f"({self.dist.world_size} process(es)), lr {self.lr:.3g}, device {self.device}"
                + (f" ({self.threads} thread(s))" if self.device.type == "cpu" else "")
                + (f", amp {self.amp_dtype}" if self.amp_dtype else "")
            )
            self.log.event("start", 0, world_size=self.dist.world_size, lr=self.lr,
                           total_steps=self.total_steps, config=config_to_dict(self.cfg))
            return
        changed = self._check_resume_config(state.get("config", {}))
        epoch, batch = int(state["epoch"]), int(state["batch_in_epoch"])
        if epoch > self.cfg.train.epochs or (epoch == self.cfg.train.epochs and batch > 0):
            raise ConfigError(
                f"{resumed_from} is at epoch {epoch} (step {state['global_step']}), past "
                f"train.epochs={self.cfg.train.epochs}: give train.epochs >= {epoch + (batch > 0)}, "
                f"or --fresh to start over"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        # The schedule (warm-up, total steps, peak and minimum lr) follows the current config:
        # the step count comes from the checkpoint, the learning rates are recomputed, so a
        # changed optim.lr / train.epochs applies from the resumed step on.
        self.scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None]})
        groups = self.optimizer.param_groups
        self.scheduler.base_lrs = [self.lr] * len(groups)
        for group, factor in zip(groups, self.scheduler.lr_lambdas, strict=True):
            group["initial_lr"] = self.lr
            group["lr"] = self.lr * factor(self.scheduler.last_epoch)
        self.scheduler._last_lr = [group["lr"] for group in groups]
        if self.scaler.is_enabled() and state["scaler"]:  # empty when saved without fp16
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.batch_in_epoch = epoch, batch
        self.global_step = int(state["global_step"])
        self.history = list(state.get("history", []))
        rngs = state["rng"]
        if len(rngs) == self.dist.world_size:
            ckpt.restore_rng(rngs[self.dist.rank])
        else:
            self.log.print(
                f"warning: checkpoint written by {len(rngs)} process(es), resuming with "
                f"{self.dist.world_size}: the data order continues but the run is not bit-identical"
            )
        self.last_checkpoint = resumed_from
        self.log.print(
            f"resuming from {self.last_checkpoint} (epoch {self.epoch + 1}, batch "
            f"{self.batch_in_epoch}/{self.batches_per_epoch}, step {self.global_step}/{self.total_steps})"
        )
        if changed:
            self.log.print("changed settings, applied from this step on: " + "; ".join(
                f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items()))
            if self.dist.is_main:
                self._save_config()
        self.log.event("resume", self.global_step, checkpoint=str(self.last_checkpoint),
                       epoch=self.epoch, batch_in_epoch=self.batch_in_epoch, lr=self.lr,
                       changed={k: list(v) for k, v in changed.items()})

    def _check_resume_config(self, saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """The settings that differ from the checkpoint's, as ``{key: (old, new)}``; a
        :class:`ConfigError` naming them when any of them may not change on resume."""
        now = config_to_dict(self.cfg)
        changed = {
            f"{sec}.{k}": (saved[sec][k], v)
            for sec, values in now.items() if isinstance(values, dict)
            for k, v in values.items()
            if isinstance(saved.get(sec), dict) and k in saved[sec] and saved[sec][k] != v
        }
        changed.pop("train.out", None)
        refused = [k for k in changed if not resumable_change(k)]
        if refused:
            raise ConfigError(
                f"cannot resume {self.out} with changed "
                + ", ".join(f"{k} ({changed[k][0]!r} -> {changed[k][1]!r})" for k in refused)
                + ": these define the run; use --fresh to start over, or another --out"
            )
        return changed

    def save_checkpoint(self) -> Path:
        """Write the resumable state (every rank must call this: RNG states are gathered)."""
        epoch, batch = self.epoch, self.batch_in_epoch
        if batch >= self.steps_per_epoch * self.cfg.optim.accum_steps:
            epoch, batch = epoch + 1, 0
        rngs = all_gather_object(ckpt.capture_rng())
        path = ckpt.checkpoint_path(self.ckpt_dir, self.global_step)
        error: Exception | None = None
        if self.dist.is_main:
            try:
                bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
                if bad:
                    raise NonFiniteLossError(
                        f"weights became non-finite ({', '.join(bad[:5])}) at step {self.global_step}; "
                        f"not overwriting the last good checkpoint {self.last_checkpoint}"
                    )
                state = {
                    "format": "xvit-train-checkpoint",
                    "version": 1,
                    "epoch": epoch,
                    "batch_in_epoch": batch,
                    "global_step": self.global_step,
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "ema": self.ema.state_dict() if self.ema is not None else None,
                    "rng": rngs,
                    "history": self.history,
                    "config": config_to_dict(self.cfg),
                }
                try:
                    ckpt.atomic_save(state, path)
                except OSError as e:
                    raise WriteError(
                        f"cannot write checkpoint {path}: {e.strerror or e}; the last good "
                        f"checkpoint {self.last_checkpoint or '(none yet)'} is intact"
                    ) from e
                ckpt.prune_checkpoints(self.ckpt_dir, self.cfg.train.keep_checkpoints, newest=path)
                if self.fresh_start is not None:
                    self.fresh_start.commit()  # the new run can resume now: drop the old files
            except (NonFiniteLossError, WriteError) as e:
                error = e
        # every rank stops alike (instead of waiting for rank 0 at a barrier)
        verdict = all_gather_object(None if error is None else (type(error).__name__, str(error)))[0]
        if error is not None:
            raise error
        if verdict is not None:
            raise (WriteError if verdict[0] == "WriteError" else NonFiniteLossError)(verdict[1])
        self.last_checkpoint = path
        return path

    # ------------------------------------------------------------------ the loop

    def _loader(self) -> DataLoader:
        from xvit.data.dataset import build_loader

        return build_loader(
            SeededDataset(self.data.train),
            batch_size=self.cfg.data.batch_size,
            workers=self.cfg.data.workers,
            sampler=self.sampler,
            seed=self.cfg.train.seed,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
        )

    def run(self) -> TrainResult:
        """Train the remaining epochs, validate, save the final model and metrics. The run
        directory is released at the end, however the run ends (see :meth:`close`)."""
        try:
            return self._run()
        finally:
            self.close()

    def _run(self) -> TrainResult:
        cfg = self.cfg
        loader = self._loader() if self.epoch < cfg.train.epochs else None
        self.start_time = time.perf_counter()
        self.start_step = self.global_step
        for epoch in range(self.epoch, cfg.train.epochs):
            self.epoch = epoch
            self.sampler.set_position(epoch, self.batch_in_epoch * cfg.data.batch_size)
            stats = self._train_epoch(loader)
            val = None
            if self.data.val is not None and (
                (epoch + 1) % max(1, cfg.train.eval_every) == 0 or epoch + 1 == cfg.train.epochs
            ):
                val = self.validate()
            self.history.append({"epoch": epoch + 1, **stats, **({"val": val} if val else {})})
            self._epoch_line(epoch, stats, val)
            self.save_checkpoint()
            self.epoch, self.batch_in_epoch = epoch + 1, 0
        self.epoch = cfg.train.epochs
        return self.finish()

    def _train_epoch(self, loader: DataLoader) -> dict[str, float]:
        cfg, ocfg = self.cfg, self.cfg.optim
        accum = ocfg.accum_steps
        batches = self.steps_per_epoch * accum
        self.ddp_model.train()
        self.replaced = 0
        bar = self._bar()
        loss_sum, seen, correct, n_steps = 0.0, 0, 0, 0
        t_last, clips_last = time.perf_counter(), 0
        for video, target, hard in self._batches(loader, batches):
            micro = self.batch_in_epoch % accum
            sync = micro == accum - 1
            ctx = self.ddp_model.no_sync() if (self.dist.distributed and not sync) else contextlib.nullcontext()
            with ctx:
                with autocast(self.device, self.amp_dtype):
                    logits = self.ddp_model(video)
                if self.multi_label:  # one sigmoid per class; smoothing towards 1/2
                    eps = ocfg.label_smoothing
                    loss = F.binary_cross_entropy_with_logits(logits.float(), target * (1 - eps) + eps / 2)
                else:
                    # Mixed targets already carry the label smoothing.
                    smoothing = 0.0 if self.mixer is not None else ocfg.label_smoothing
                    loss = F.cross_entropy(logits.float(), target, label_smoothing=smoothing)
                self._check_finite(loss)
                self.scaler.scale(loss / accum).backward()
            loss_sum += float(loss.detach()) * len(video)
            seen += len(video)
            if hard is not None:
                correct += int((logits.argmax(-1) == hard).sum())
            self.batch_in_epoch += 1
            if not sync:
                continue
            self._optimizer_step()
            n_steps += 1
            clips_last += self.total_batch
            bar.update(1)
            if self.global_step % cfg.train.log_every == 0 or self.global_step == self.total_steps:
                now = time.perf_counter()
                rate = clips_last / max(now - t_last, 1e-9)
                t_last, clips_last = now, 0
                lr = self.optimizer.param_groups[0]["lr"]
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", lr=f"{lr:.2e}", clips_s=f"{rate:.1f}")
                self.log.event("train", self.global_step, epoch=self.epoch + 1,
                               loss=loss_sum / seen, lr=lr, clips_per_s=rate, eta_s=self._eta())
            every = cfg.train.checkpoint_every
            if every and self.global_step % every == 0 and self.batch_in_epoch < batches:
                self.save_checkpoint()
        bar.close()
        replaced = int(all_reduce_sum([float(self.replaced)], self.device)[0])
        if replaced:
            self.log.print(f"epoch {self.epoch + 1}: {replaced} training clip(s) failed to decode "
                           f"and were replaced by other samples (see the warnings above)")
        return {
            "replaced_clips": replaced,
            "train_loss": loss_sum / max(seen, 1),
            "train_top1": (100.0 * correct / seen if seen and self.mixer is None and not self.multi_label
                           else float("nan")),
        }

    def _batches(self, loader: DataLoader, batches: int):
        """(video, target, hard labels or None) for the rest of the epoch, on the device."""
        remaining = batches - self.batch_in_epoch
        if remaining <= 0:
            return
        for i, batch in enumerate(loader):
            if i >= remaining:
                break
            self.replaced += int(batch.get("replaced", 0))
            video, label = batch["video"], torch.as_tensor(batch["label"])
            if self.mixer is not None:  # on the CPU batch, drawing from the main process's RNG
                video, target = self.mixer(video, label)
                yield video.to(self.device), target.to(self.device), None
            else:
                label = label.to(self.device, non_blocking=True)
                yield video.to(self.device, non_blocking=True), label, None if self.multi_label else label

    def _check_finite(self, loss: torch.Tensor) -> None:
        bad = float(not math.isfinite(float(loss.detach())))
        if all_reduce_max(bad, self.device) > 0:
            where = self.last_checkpoint or "none written yet"
            raise NonFiniteLossError(
                f"non-finite loss ({float(loss.detach())}) at epoch {self.epoch + 1}, batch "
                f"{self.batch_in_epoch + 1}, step {self.global_step + 1}: stopping. The last good "
                f"checkpoint is {where}. Try a lower optim.lr, optim.clip_grad, or train.amp=none."
            )

    def _optimizer_step(self) -> None:
        clip = self.cfg.optim.clip_grad
        if clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.global_step += 1

    def _bar(self):
        from tqdm.auto import tqdm

        return tqdm(
            total=self.steps_per_epoch,
            initial=self.batch_in_epoch // self.cfg.optim.accum_steps,
            desc=f"epoch {self.epoch + 1}/{self.cfg.train.epochs}",
            unit="step",
            disable=not (self.dist.is_main and sys.stderr.isatty()),
            leave=False,
        )

    def _eta(self) -> float:
        done = self.global_step - self.start_step
        if done <= 0:
            return float("nan")
        per_step = (time.perf_counter() - self.start_time) / done
        return per_step * (self.total_steps - self.global_step)

    def _epoch_line(self, epoch: int, stats: dict[str, float], val: dict[str, Any] | None) -> None:
        parts = [f"epoch {epoch + 1}/{self.cfg.train.epochs}", f"loss {stats['train_loss']:.4f}"]
        if math.isfinite(stats["train_top1"]):
            parts.append(f"train top1 {stats['train_top1']:.1f}%")
        if val and self.multi_label:
            parts.append(f"val mAP {val['mAP']:.2f}% micro mAP {val['micro_mAP']:.2f}%")
        elif val:
            parts.append(f"val top1 {val['top1']:.2f}% top5 {val['top5']:.2f}%")
        elapsed = time.perf_counter() - self.start_time
        parts.append(f"elapsed {_fmt_time(elapsed)}")
        eta = self._eta()
        if math.isfinite(eta) and self.global_step < self.total_steps:
            parts.append(f"ETA {_fmt_time(eta)}")
        self.log.print("  ".join(parts))
        self.log.event("epoch", self.global_step, epoch=epoch + 1, **stats)

    # ------------------------------------------------------------------ validation and the end

    def eval_model(self) -> nn.Module:
        """The weights used for validation and saved at the end (the EMA when enabled)."""
        return self.ema.module if self.ema is not None else self.model

    def validate(self) -> dict[str, Any] | None:
        """Single-view validation; the figures (rank 0) or None."""
        res = evaluate(
            self.eval_model(),
            self.data.val,
            views=(1, 1),
            batch_size=self.cfg.eval.batch_size,
            workers=self.cfg.data.workers,
            device=self.device,
            amp_dtype=self.amp_dtype,
            dist_info=self.dist,
            class_names=self.data.class_names,
            multi_label=self.multi_label,
        )
        if res is None:
            return None
        keys = ("mAP", "micro_mAP") if self.multi_label else ("top1", "top5", "mean_class_accuracy")
        metrics = {k: res[0][k] for k in (*keys, "num_videos", "num_failed")}
        self.log.event("val", self.global_step, epoch=self.epoch + 1, **metrics)
        return metrics

    def finish(self) -> TrainResult:
        """Final multi-view test, ``model.safetensors`` + ``config.json``, ``metrics.json``."""
        cfg = self.cfg
        if self.global_step <= 0:  # never present an untrained model as a result
            raise RuntimeError("no optimiser step was done: not writing a model or metrics")
        final = self.eval_model()
        metrics = None
        test = self.data.test if self.data.test is not None else self.data.val
        if test is not None:
            res = evaluate(
                final,
                test,
                views=self.views,
                fuse=cfg.eval.fuse,
                batch_size=cfg.eval.batch_size,
                workers=cfg.data.workers,
                device=self.device,
                amp_dtype=self.amp_dtype,
                dist_info=self.dist,
                class_names=self.data.class_names,
                multi_label=self.multi_label,
            )
            if res is not None:
                metrics, records, _ = res
        if self.dist.is_main:
            final.save_pretrained(self.out)
            extra = {
                "model": cfg.model.name,
                "epochs": cfg.train.epochs,
                "global_step": self.global_step,
                "world_size": self.dist.world_size,
                "train_seconds": round(time.perf_counter() - self.start_time, 1),
                "history": self.history,
            }
            if metrics is not None:
                write_metrics(self.out / "metrics.json", metrics, records, self.command, extra)
                figures = (
                    f"mAP {metrics['mAP']:.2f}%  micro mAP {metrics['micro_mAP']:.2f}%"
                    if self.multi_label else
                    f"top1 {metrics['top1']:.2f}%  top5 {metrics['top5']:.2f}%  mean class accuracy "
                    f"{metrics['mean_class_accuracy']:.2f}%"
                )
                self.log.print(
                    f"validation ({metrics['views']} views, {metrics['num_videos']} videos, "
                    f"{metrics['num_failed']} failed): {figures}"
                )
            else:
                write_metrics(self.out / "metrics.json", {"num_videos": 0, "num_failed": 0},
                              None, self.command, extra)
                self.log.print("no validation list (data.val_list): no accuracy to report")
            end_keys = ("mAP", "micro_mAP") if self.multi_label else ("top1", "top5", "mean_class_accuracy")
            self.log.event("end", self.global_step, **(metrics and {k: metrics[k] for k in end_keys} or {}))
            self.log.print(f"model and metrics written to {self.out}")
        self.log.close()
        barrier()
        return TrainResult(self.out, final, self.global_step, metrics, self.history)


def train(
    cfg: Config,
    *,
    data: TrainData | None = None,
    model: nn.Module | None = None,
    fresh: bool = False,
    command: list[str] | None = None,
    echo: bool = True,
) -> TrainResult:
    """Run (or resume) the training described by ``cfg``; see :class:`Trainer`."""
    return Trainer(cfg, data=data, model=model, fresh=fresh, command=command, echo=echo).run()


class MultiHotMixup:
    """Mixup / CutMix for multi-hot targets ``(B, C)``: the data pipeline's :class:`Mixup`
    mixes the clips, and each mixed clip's target is the same blend of the multi-hot targets
    of the clips it was made from (label smoothing is applied by the loss)."""

    def __init__(self, mixup_alpha: float, cutmix_alpha: float) -> None:
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha

    def __call__(self, videos: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from xvit.data.transforms import Mixup

        if targets.ndim != 2 or targets.shape[0] != videos.shape[0]:
            raise ValueError(f"expected multi-hot targets (B, C) for {videos.shape[0]} clips, "
                             f"got {tuple(targets.shape)}")
        b = videos.shape[0]
        # With the clips as their own classes, Mixup's targets are the (B, B) mixing weights.
        mix = Mixup(b, mixup_alpha=self.mixup_alpha, cutmix_alpha=self.cutmix_alpha, label_smoothing=0.0)
        mixed, weights = mix(videos, torch.arange(b))
        return mixed, weights @ targets.float()

    def __repr__(self) -> str:
        return f"MultiHotMixup(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha})"


def build_mixer(cfg: Config, num_classes: int):
    """The data pipeline's batch mixup/cutmix (soft, label-smoothed targets; with
    ``data.multi_label`` a :class:`MultiHotMixup`), or None when both are off."""
    ocfg = cfg.optim
    if not (ocfg.mixup or ocfg.cutmix):
        return None
    if cfg.data.multi_label:
        return MultiHotMixup(ocfg.mixup, ocfg.cutmix)
    from xvit.data.transforms import Mixup

    return Mixup(num_classes, mixup_alpha=ocfg.mixup, cutmix_alpha=ocfg.cutmix,
                 label_smoothing=ocfg.label_smoothing)
