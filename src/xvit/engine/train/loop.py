"""The training loop: one process or many (DDP under torchrun), resumable bit for bit.

A run directory ``OUT`` holds::

    config.yaml             the resolved configuration
    checkpoints/step_*.pt   resumable state (see xvit.engine.train.checkpoint, xvit.engine.train.train_state)
    log.jsonl               one JSON object per event (train steps, validation, resume, end)
    tb/                     TensorBoard events
    model.safetensors       the final model and its config.json (xvit.load_model(OUT))
    config.json
    metrics.json            final validation figures (top1, top5, mean_class_accuracy, ...)

A :class:`Trainer` is built in steps (:meth:`Trainer._setup`): the config is checked and the
process joins its group (:mod:`xvit.engine.run.distributed`); the run directory is opened
(:class:`~xvit.engine.run.rundir.TrainingRunDir`: checked, created, locked); the data, the model
(DDP, EMA), the step plan, optimiser, schedule and precision are built; ``--fresh`` sets the
old run aside; and the run resumes from its newest readable checkpoint or starts
(:mod:`xvit.engine.train.train_state`). :meth:`Trainer.run` trains the remaining epochs (the loss
is watched for NaN on the device, :mod:`xvit.engine.train.nonfinite`), validates and writes a
checkpoint after each, then :meth:`Trainer.finish` runs the final multi-view test and writes
the model and ``metrics.json``.

Determinism: the data order and every clip's augmentation are functions of the seed and the
position in the run (:mod:`xvit.engine.train.sampling`), and the main process's RNG (dropout,
stochastic depth, mixup) is saved in every checkpoint, so a resumed run continues with exactly
the numbers the uninterrupted run would have seen.

Length: over 500 lines because the Trainer is one class whose steps share its state (model,
optimiser, sampler, run directory); every piece that stands alone lives in the modules named
above.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from xvit.data.cores import available_cores
from xvit.data.dataset import build_loader
from xvit.engine.evaluate.evaluator import evaluate
from xvit.engine.evaluate.report import figures, headline_keys, write_metrics
from xvit.engine.run.checks import check_config
from xvit.engine.run.config import recipe_lines, save_config
from xvit.engine.run.data import TrainData, build_datasets
from xvit.engine.run.distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_sum,
    barrier,
    configure_threads,
    init_distributed,
    raise_everywhere,
)
from xvit.engine.run.model import build_model
from xvit.engine.run.precision import amp_dtype_for, autocast
from xvit.engine.run.rundir import TrainingRunDir, WriteError, atomic_write
from xvit.engine.run.schema import Config, ConfigError, config_to_dict, parse_views
from xvit.engine.train import checkpoint as ckpt
from xvit.engine.train.collapse import CollapseWatch, TrainingCollapsedError, advice, collapse_signs
from xvit.engine.train.mixing import build_mixer, training_loss
from xvit.engine.train.nonfinite import LossWatch, NonFiniteLossError
from xvit.engine.train.optim import ModelEma, build_optimizer, scaled_lr, warmup_cosine
from xvit.engine.train.runlog import Progress, RunLogger
from xvit.engine.train.sampling import ResumableSampler, SeededDataset, sample_seed, seed_everything
from xvit.engine.train.train_state import (
    check_resume,
    newest_state,
    restore_training_state,
    resumed_head_changes,
    training_state,
    write_checkpoint,
)
from xvit.models.hardware import slow_precision
from xvit.models.storage import write_model_card

__all__ = ["TrainResult", "Trainer", "train"]


@dataclass
class TrainResult:
    """What a finished run returns (metrics only on rank 0)."""

    out: Path
    model: nn.Module
    global_step: int
    metrics: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


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
        self.run_dir: TrainingRunDir | None = None
        try:
            self._setup(
                cfg, data=data, model=model, fresh=fresh, dist_info=dist_info, command=command, echo=echo
            )
        except BaseException:
            self.close()
            raise

    def _setup(
        self,
        cfg: Config,
        *,
        data: TrainData | None,
        model: nn.Module | None,
        fresh: bool,
        dist_info: DistInfo | None,
        command: list[str] | None,
        echo: bool,
    ) -> None:
        check_config(cfg)  # configs built in Python get the checks load_config applies
        if cfg.train.epochs < 1:
            raise ConfigError(f"train.epochs must be at least 1, got {cfg.train.epochs}")
        self.cfg = cfg
        self.command = command
        self.views = parse_views(cfg.eval.views)
        self.dist = dist_info or init_distributed(cfg.train.device)
        self.device = self.dist.device
        self.threads = configure_threads(cfg.train.threads, self.device, cfg.data.workers)
        self.out = Path(cfg.train.out)
        self.ckpt_dir = self.out / "checkpoints"
        self.log = RunLogger(self.out, self.dist.is_main, cfg.train.tensorboard, echo)

        self.run_dir = TrainingRunDir(self.out, command, self.dist.is_main, self.log.print)
        self.run_dir.open(has_checkpoint=lambda: bool(ckpt.list_checkpoints(self.ckpt_dir)))
        self._build_model(data, model)
        self._build_optimisation()

        # Position: epoch, micro-batches done in it, optimiser steps done.
        self.epoch, self.batch_in_epoch, self.global_step = 0, 0, 0
        self.last_checkpoint: Path | None = None
        self.history: list[dict[str, Any]] = []
        self.loss_watch = LossWatch(self.device)
        self.collapse_watch = CollapseWatch(
            len(self.data.class_names), cfg.train.epochs, cfg.optim.warmup_epochs, cfg.train.collapse_patience
        )
        self.val_scores = None
        torch.manual_seed(sample_seed(cfg.train.seed, -1, self.dist.rank, 0))
        if fresh:  # only now that the data and the model were built without error
            self.run_dir.set_aside()
        self._resume_or_start()

    def _build_model(self, data: TrainData | None, model: nn.Module | None) -> None:
        """The data, then the model (seeded alike on every rank; DDP also broadcasts rank 0's)."""
        cfg = self.cfg
        seed_everything(cfg.train.seed)
        self.data = data if data is not None else build_datasets(cfg, self.views)
        num_classes = len(self.data.class_names)
        model = model if model is not None else build_model(cfg, num_classes, self.data.class_names)
        self.model = model.to(self.device)
        self._wrap_model()
        self.multi_label = bool(cfg.data.multi_label)  # multi-hot targets, BCE, mAP
        self.mixer = build_mixer(cfg, num_classes)

    def _wrap_model(self) -> None:
        """DDP over the model where several processes train, and its EMA copy if asked for."""
        self.ddp_model: nn.Module = self.model
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=ids)
        self.ema = ModelEma(self.model, self.cfg.optim.ema_decay) if self.cfg.optim.ema else None

    def _build_optimisation(self) -> None:
        """Steps, learning rate, optimiser, schedule, precision."""
        cfg, tcfg, ocfg = self.cfg, self.cfg.train, self.cfg.optim
        self.sampler = ResumableSampler(self.data.train, self.dist.world_size, self.dist.rank, seed=tcfg.seed)
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
        self.optimizer = build_optimizer(ocfg, self.model, self.lr, cfg.model.head)
        warmup = round(ocfg.warmup_epochs * self.steps_per_epoch)
        self.scheduler = warmup_cosine(self.optimizer, warmup, self.total_steps, ocfg.min_lr, self.lr)
        self.amp_dtype = amp_dtype_for(tcfg.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def close(self) -> None:
        """Release the run directory (idempotent; :meth:`run` calls it): a --fresh start without
        a checkpoint of its own is undone, the lock released."""
        log = getattr(self, "log", None)
        if log is not None:
            log.close()
        if self.run_dir is not None:
            self.run_dir.close()

    # ------------------------------------------------------------------ start or resume

    def _save_config(self) -> None:
        atomic_write(self.out / "config.yaml", lambda tmp: save_config(self.cfg, tmp))

    def _resume_or_start(self) -> None:
        state, resumed_from = newest_state(self.ckpt_dir, self.dist.is_main, self.log.print)
        if self.data.held_out:
            self.log.print(self.data.held_out)
        for note in self.data.notes:
            self.log.print(note)
        if state is None:
            self._start()
        else:
            self._resume(state, resumed_from)

    def _start(self) -> None:
        if self.dist.is_main:
            self._save_config()
        for line in recipe_lines(self.cfg, self.lr, self.total_batch):
            self.log.print(line)
        self.log.print(
            f"training {self.cfg.model.name} on {len(self.data.train)} clips "
            f"({len(self.data.class_names)} classes), {self.cfg.train.epochs} epochs x "
            f"{self.steps_per_epoch} steps, batch {self.total_batch} "
            f"({self.dist.world_size} process(es)), lr {self.lr:.3g}, device {self.device}"
            + (
                f" ({self.threads} thread(s), {self.cfg.data.workers} loader worker(s), "
                f"{available_cores()} core(s) available)"
                if self.device.type == "cpu"
                else ""
            )
            + (f", amp {self.amp_dtype}" if self.amp_dtype else "")
        )
        slow = slow_precision(self.amp_dtype, self.device) if self.amp_dtype else None
        if slow:  # asked for (train.amp=auto is off on the CPU): said, not refused
            self.log.print(f"warning: train.amp={self.cfg.train.amp} will be slower than fp32 here: {slow}")
        self.log.event(
            "start",
            0,
            world_size=self.dist.world_size,
            lr=self.lr,
            total_steps=self.total_steps,
            config=config_to_dict(self.cfg),
        )

    def _keep_resumed_head(self, state: dict[str, Any]) -> None:
        """A temporal-attention head resumes as the checkpoint trained it (its CLS input and
        classifier, where this version's defaults differ): the head is built again, then the
        optimiser over it, before the states are restored."""
        changes = resumed_head_changes(state, self.model)
        if not changes:
            return
        self.model.reset_head(**changes)
        self._wrap_model()
        self._build_optimisation()
        said = ", ".join(f"{k}={v!r}" for k, v in changes.items())
        self.log.print(f"the checkpoint's temporal-attention head was trained with {said}: resumed so")

    def _resume(self, state: dict[str, Any], resumed_from: Path) -> None:
        changed, self.epoch, self.batch_in_epoch = check_resume(
            state, resumed_from, self.cfg, self.out, self.data.class_names, self.model
        )
        self._keep_resumed_head(state)
        restore_training_state(
            state,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            ema=self.ema,
            lr=self.lr,
            dist_info=self.dist,
            say=self.log.print,
        )
        self.global_step = int(state["global_step"])
        self.history = list(state.get("history", []))
        self.last_checkpoint = resumed_from
        self.log.print(
            f"resuming from {self.last_checkpoint} (epoch {self.epoch + 1}, batch "
            f"{self.batch_in_epoch}/{self.batches_per_epoch}, step {self.global_step}/{self.total_steps})"
        )
        if changed:
            self.log.print(
                "changed settings, applied from this step on: "
                + "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            )
            if self.dist.is_main:
                self._save_config()
        self.log.event(
            "resume",
            self.global_step,
            checkpoint=str(self.last_checkpoint),
            epoch=self.epoch,
            batch_in_epoch=self.batch_in_epoch,
            lr=self.lr,
            changed={k: list(v) for k, v in changed.items()},
        )

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> Path:
        """Write the resumable state (every rank must call this: the loss check and the RNG
        states are collective). Nothing is written after a non-finite loss."""
        self._check_finite()
        epoch, batch = self.epoch, self.batch_in_epoch
        if batch >= self.steps_per_epoch * self.cfg.optim.accum_steps:
            epoch, batch = epoch + 1, 0
        rngs = all_gather_object(ckpt.capture_rng())
        path = ckpt.checkpoint_path(self.ckpt_dir, self.global_step)
        error: Exception | None = None
        if self.dist.is_main:
            state = training_state(
                epoch=epoch,
                batch_in_epoch=batch,
                global_step=self.global_step,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                scaler=self.scaler,
                ema=self.ema,
                rngs=rngs,
                history=self.history,
                cfg=self.cfg,
            )
            try:
                write_checkpoint(
                    state, path, self.model, self.last_checkpoint, self.cfg.train.keep_checkpoints
                )
                self.run_dir.commit()  # the new run can resume now: drop a --fresh start's old files
            except (NonFiniteLossError, WriteError) as e:
                error = e
        raise_everywhere(error)
        self.last_checkpoint = path
        return path

    def _check_finite(self) -> None:
        """Stop (every rank alike) when any loss since the start was NaN or infinite, naming
        where it first was and the last good checkpoint (see xvit.engine.train.nonfinite)."""
        bad = self.loss_watch.first_bad()
        if bad is None:
            return
        index, value = bad
        accum = self.cfg.optim.accum_steps
        epoch, batch = divmod(index, self.steps_per_epoch * accum)
        step = epoch * self.steps_per_epoch + batch // accum + 1
        where = self.last_checkpoint or "none written yet"
        raise NonFiniteLossError(
            f"non-finite loss ({value}) at epoch {epoch + 1}, batch {batch + 1}, step {step}: "
            f"stopped after step {self.global_step}. The last good checkpoint is {where}. Try a "
            f"lower optim.lr, optim.clip_grad, or train.amp=none."
        )

    # ------------------------------------------------------------------ the loop

    def _loader(self) -> DataLoader:
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
        self.progress = Progress(
            self.log, cfg.train.epochs, self.steps_per_epoch, self.total_steps, self.global_step
        )
        for epoch in range(self.epoch, cfg.train.epochs):
            self.epoch = epoch
            self.sampler.set_position(epoch, self.batch_in_epoch * cfg.data.batch_size)
            stats = self._train_epoch(loader)
            val = None
            self.val_scores = None
            if self.data.val is not None and (
                (epoch + 1) % max(1, cfg.train.eval_every) == 0 or epoch + 1 == cfg.train.epochs
            ):
                val = self.validate()
            self.history.append({"epoch": epoch + 1, **stats, **({"val": val} if val else {})})
            self.progress.epoch_line(epoch, self.global_step, stats, val, self.multi_label)
            collapsed = self._watch_collapse(stats)
            self.save_checkpoint()
            self.epoch, self.batch_in_epoch = epoch + 1, 0
            if collapsed:
                raise TrainingCollapsedError(collapsed)
        self.epoch = cfg.train.epochs
        return self.finish()

    def _watch_collapse(self, stats: dict[str, float]) -> str | None:
        """Report an epoch that looks collapsed (xvit.engine.train.collapse) on the console and in
        the log; the message to stop with after ``train.collapse_patience`` in a row."""
        if self.multi_label or self.mixer is not None:
            return None
        scores = self.val_scores  # rank 0's, when it validated this epoch
        judged, signs = False, []
        if scores is not None and scores.indices:
            logits = scores.view_logits.float().mean(1)
            names = self.data.class_names
            judged, signs = (
                True,
                collapse_signs(stats["train_loss"], len(names), logits, scores.labels, names),
            )
        elif self.data.val is None:  # no validation set: the training loss alone
            judged, signs = True, collapse_signs(stats["train_loss"], len(self.data.class_names))
            if stats["train_top1"] == stats["train_top1"] and stats["train_top1"] <= 150 / len(
                self.data.class_names
            ):
                signs.append(f"training top-1 {stats['train_top1']:.1f}% near chance")
        top1 = (self.history[-1].get("val") or {}).get("top1") if self.history else None
        # rank 0 validated: every rank decides as rank 0 does
        judged, signs, top1 = all_gather_object((judged, signs, top1))[0]
        if not judged:
            return None
        epoch = self.epoch + 1
        verdict = self.collapse_watch.observe(epoch, signs, stats["train_loss"], top1)
        if verdict is None:
            return None
        tip = advice(self.lr, self.cfg.optim.warmup_epochs, self.cfg.model.head)
        what = "training looks collapsed" if verdict == "collapsed" else "training is not learning"
        self.log.print(f"warning: epoch {epoch}: {what}: {'; '.join(signs)}; {tip}")
        self.log.event(
            "collapse",
            self.global_step,
            epoch=epoch,
            verdict=verdict,
            signs=signs,
            in_a_row=self.collapse_watch.in_a_row,
        )
        if not self.collapse_watch.should_stop:
            return None
        n = self.collapse_watch.in_a_row
        return (
            f"{what} for {n} epochs in a row (epochs {epoch - n + 1}-{epoch}): stopped; {tip}. "
            f"The checkpoint of epoch {epoch} is kept: add train.collapse_patience=0 to the same "
            f"command to go on"
        )

    def _train_epoch(self, loader: DataLoader) -> dict[str, float]:
        """One epoch (the rest of it when resumed). Nothing here reads a number back from the
        device except at log steps and checkpoints: the loss sum, the correct count and the
        non-finite check stay on the device."""
        cfg = self.cfg
        accum = cfg.optim.accum_steps
        batches = self.steps_per_epoch * accum
        self.ddp_model.train()
        self.replaced = 0
        bar = self.progress.bar(self.epoch, self.batch_in_epoch // accum)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        t_last, clips_last = time.perf_counter(), 0
        for video, target, hard in self._batches(loader, batches):
            micro = self.batch_in_epoch % accum
            sync = micro == accum - 1
            ctx = (
                self.ddp_model.no_sync() if (self.dist.distributed and not sync) else contextlib.nullcontext()
            )
            with ctx:
                with autocast(self.device, self.amp_dtype):
                    logits = self.ddp_model(video)
                loss = training_loss(
                    logits, target, self.multi_label, cfg.optim.label_smoothing, mixed=self.mixer is not None
                )
                self.loss_watch.observe(loss, self.epoch * batches + self.batch_in_epoch)
                self.scaler.scale(loss / accum).backward()
            loss_sum += loss.detach().double() * len(video)
            seen += len(video)
            if hard is not None:
                correct += (logits.argmax(-1) == hard).sum()
            self.batch_in_epoch += 1
            if not sync:
                continue
            self._optimizer_step()
            clips_last += self.total_batch
            bar.update(1)
            if self.global_step % cfg.train.log_every == 0 or self.global_step == self.total_steps:
                self._check_finite()
                now = time.perf_counter()
                rate = clips_last / max(now - t_last, 1e-9)
                t_last, clips_last = now, 0
                lr = self.optimizer.param_groups[0]["lr"]
                loss = float(loss_sum) / seen
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", clips_s=f"{rate:.1f}")
                self.log.event(
                    "train",
                    self.global_step,
                    epoch=self.epoch + 1,
                    loss=loss,
                    lr=lr,
                    clips_per_s=rate,
                    eta_s=self.progress.eta(self.global_step),
                )
            every = cfg.train.checkpoint_every
            if every and self.global_step % every == 0 and self.batch_in_epoch < batches:
                self.save_checkpoint()
        bar.close()
        self._check_finite()  # before this epoch's validation and checkpoint
        replaced = int(all_reduce_sum([float(self.replaced)], self.device)[0])
        if replaced:
            self.log.print(
                f"epoch {self.epoch + 1}: {replaced} training clip(s) failed to decode "
                f"and were replaced by other samples (see the warnings above)"
            )
        return {
            "replaced_clips": replaced,
            "train_loss": float(loss_sum) / max(seen, 1),
            "train_top1": (
                100.0 * int(correct) / seen
                if seen and self.mixer is None and not self.multi_label
                else float("nan")
            ),
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

    # ------------------------------------------------------------------ validation and the end

    def eval_model(self) -> nn.Module:
        """The weights used for validation and saved at the end (the EMA when enabled)."""
        return self.ema.module if self.ema is not None else self.model

    def _evaluate(
        self, model: nn.Module, dataset: Dataset, views: tuple[int, int] = (1, 1), fuse: str = "prob"
    ) -> tuple[dict[str, Any], list[dict[str, Any]], Any] | None:
        return evaluate(
            model,
            dataset,
            views=views,
            fuse=fuse,
            batch_size=self.cfg.eval.batch_size,
            workers=self.cfg.data.workers,
            device=self.device,
            amp_dtype=self.amp_dtype,
            dist_info=self.dist,
            class_names=self.data.class_names,
            multi_label=self.multi_label,
        )

    def validate(self) -> dict[str, Any] | None:
        """Single-view validation; the figures (rank 0) or None."""
        res = self._evaluate(self.eval_model(), self.data.val)
        if res is None:
            return None
        self.val_scores = res[2]
        metrics = {k: res[0][k] for k in (*headline_keys(self.multi_label), "num_videos", "num_failed")}
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
            res = self._evaluate(final, test, self.views, cfg.eval.fuse)
            if res is not None:
                metrics, records, _ = res
        if self.dist.is_main:
            final.save_pretrained(self.out)
            extra = {
                "model": cfg.model.name,
                "epochs": cfg.train.epochs,
                "global_step": self.global_step,
                "world_size": self.dist.world_size,
                "train_seconds": round(self.progress.elapsed(), 1),
                "history": self.history,
            }
            if metrics is not None:
                write_metrics(self.out / "metrics.json", metrics, records, self.command, extra)
                self.log.print(
                    f"validation ({metrics['views']} views, {metrics['num_videos']} videos, "
                    f"{metrics['num_failed']} failed): {figures(metrics, self.multi_label)}"
                )
            else:
                write_metrics(
                    self.out / "metrics.json", {"num_videos": 0, "num_failed": 0}, None, self.command, extra
                )
                self.log.print("no validation list (data.val_list): no accuracy to report")
            write_model_card(self.out)  # the card again, now with the run's metrics
            end_keys = headline_keys(self.multi_label)
            self.log.event("end", self.global_step, **((metrics and {k: metrics[k] for k in end_keys}) or {}))
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
