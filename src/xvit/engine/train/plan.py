"""`xvit train --dry-run`: what a run would do, checked without training.

:func:`describe_run` resolves nothing new: it reads the config ``load_config`` resolved,
builds the model on the ``meta`` device (no memory, no weights) to count its parameters and
FLOPs, reads the annotation lists (or class folders), applies ``data.val_split`` as the run
would, and opens a sample of the videos of each split to find unreadable files early.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from xvit.engine.run.config import config_text
from xvit.engine.run.data import cache_dir, read_split, resolve_format, split_holdout
from xvit.engine.run.labels import pretrained_classes_note
from xvit.engine.run.model import model_options
from xvit.engine.run.schema import Config
from xvit.engine.train.train_state import check_resume, newest_state
from xvit.models import count_flops, count_params, create_model
from xvit.models.weights import looks_like_weights_name

__all__ = ["describe_run", "probe_videos"]


def probe_videos(samples: list[Any], limit: int = 16) -> tuple[int, list[str]]:
    """Open up to ``limit`` videos spread evenly over ``samples`` and decode their first and
    last frames; (videos probed, one line per unreadable video)."""
    from xvit.data.video import open_video

    if not samples:
        return 0, []
    step = max(1, len(samples) // limit)
    picked = samples[::step][:limit]
    bad = []
    for sample in picked:
        try:
            reader = open_video(sample.path)
            try:
                n = reader.num_frames
                if n < 1:
                    raise ValueError("no frames")
                reader.read([0, n - 1])
            finally:
                close = getattr(reader, "close", None)
                if close is not None:
                    close()
        except Exception as e:
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            bad.append(text if str(sample.path) in text else f"{sample.path}: {text}")
    return len(picked), bad


def _model_lines(cfg: Config, num_classes: int) -> list[str]:
    with torch.device("meta"):
        model = create_model(cfg.model.name, num_classes=max(num_classes, 1), **model_options(cfg))
    mc = model.config
    shape = (1, 3, cfg.data.num_frames, cfg.data.img_size, cfg.data.img_size)
    gflops = count_flops(model, shape) / 1e9
    lines = [
        (
            f"model: {cfg.model.name} ({mc.attention} attention, head {mc.head}), width "
            f"{mc.embed_dim}, depth {mc.depth}, {mc.num_heads} heads, patch {mc.patch_size}"
        ),
        (
            f"  {count_params(model) / 1e6:.2f} M parameters, {gflops:.3f} GFLOPs per "
            f"{cfg.data.num_frames}x{cfg.data.img_size}x{cfg.data.img_size} clip, "
            f"normalisation mean {list(mc.mean)} std {list(mc.std)}"
        ),
    ]
    if cfg.model.pretrained:
        if looks_like_weights_name(cfg.model.pretrained):
            note = " (weights by name: downloaded and converted on first use, then cached)"
        else:
            note = "" if Path(cfg.model.pretrained).exists() else " (NOT FOUND)"
        lines.append(f"  initial weights: {cfg.model.pretrained}{note}")
    return lines


def _output_lines(cfg: Config, class_names: list[str], fresh: bool) -> list[str]:
    """Whether the run starts or resumes ``train.out``, with the checks the run itself makes on
    resuming (settings that may not change, the list's classes, the checkpoint's epoch against
    ``train.epochs``): a :class:`ConfigError` where the run would refuse."""
    out = Path(cfg.train.out)
    said: list[str] = []
    state, path = newest_state(out / "checkpoints", False, said.append) if not fresh else (None, None)
    if state is None or path is None:
        start = "starts afresh (the previous run set aside first)" if fresh and out.exists() else "starts"
        return [f"output: {out}: the run {start} (nothing written: dry run)"]
    model = None
    if class_names and "?" not in class_names:  # the classes are known: checked as the run checks them
        with torch.device("meta"):
            model = create_model(cfg.model.name, num_classes=len(class_names), **model_options(cfg))
    changed, epoch, batch = check_resume(state, path, cfg, out, class_names, model)
    where = f"epoch {epoch}" + (f", step {batch} in it" if batch else "") + f" of {cfg.train.epochs}"
    where += ": no epochs left" if epoch >= cfg.train.epochs else ""
    lines = [f"output: {out}: the run resumes from {path.name} ({where}) (nothing written: dry run)"]
    lines += [f"  changed on resume: {k} {old!r} -> {new!r}" for k, (old, new) in changed.items()]
    return lines + [f"  {line}" for line in said]


def describe_run(cfg: Config, probe: int = 16, fresh: bool = False) -> str:
    """The resolved config (with sources), the model and the data of a run, as text; raises
    :class:`ConfigError` where the run would refuse to resume ``train.out``."""
    d = cfg.data
    lines = ["# resolved config (each value: where it came from)", config_text(cfg).rstrip(), ""]
    train_list, val_list = d.train_list, d.val_list
    names: list[str] = []
    data_lines: list[str] = []
    if resolve_format(cfg) == "synth":
        root = Path(d.synth_dir) if d.synth_dir else cache_dir() / "synth"
        if (root / "synth.json").exists():
            train_list, val_list = str(root / "train.txt"), str(root / "val.txt")
            if not Path(train_list).is_file():
                train_list = val_list = None
        else:
            train_list = val_list = None
        if train_list is None:
            data_lines.append(f"data: the built-in synthetic dataset, generated on first use into {root}")
            names = ["?"] * 8
    if train_list is not None:
        samples, names, train_ann = read_split(cfg, train_list)
        val_samples: list[Any] = []
        notes = [pretrained_classes_note(cfg.model.pretrained, names)]
        how = f"from {val_list}" if val_list else "none (no data.val_list, data.val_split=0)"
        if val_list:
            val_samples, _, val_ann = read_split(
                cfg, val_list, class_names=names, train_annotations=train_ann
            )
            notes += getattr(val_ann, "notes", [])
        elif d.val_split > 0:
            samples, val_samples = split_holdout(cfg, samples)
            how = f"held out of the training videos (data.val_split={d.val_split}, per class)"
        data_lines.append(
            f"data: {resolve_format(cfg, train_list)} {train_list}: {len(names)} classes"
            + (f" ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})" if names else "")
        )
        data_lines += [f"  note: {n}" for n in notes if n]
        data_lines.append(f"  train: {len(samples)} videos")
        data_lines.append(f"  validation: {len(val_samples)} videos, {how}")
        for split, items in (("train", samples), ("validation", val_samples)):
            probed, bad = probe_videos(items, probe)
            if probed:
                data_lines.append(f"  probe ({split}): {probed} videos opened, {len(bad)} unreadable")
                data_lines += [f"    unreadable: {b}" for b in bad]
    lines += _model_lines(cfg, len(names)) + data_lines
    lines += _output_lines(cfg, names, fresh)
    return "\n".join(lines)
