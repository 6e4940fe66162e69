"""The seed's Table 2: shift against mixing, averaging against temporal attention.

One recipe (the built-in synthetic one unless a config is given), several seeds, and these
variants, trained alike (same backbone width/depth, input, epochs and learning rate):

=============  ===============================  ============================
key            method                           model family + head
=============  ===============================  ============================
``vit-avg``    spatial-only ViT + avg           ``vit_*`` + ``avg``
``tsm-avg``    TSM-ViT + avg                    ``tsm_vit_*`` + ``avg``
``tsm-ta``     TSM-ViT + temporal attention     ``tsm_vit_*`` + ``ta``
``xvit-avg``   X-ViT + avg                      ``xvit_*`` + ``avg``
``xvit-ta``    X-ViT + temporal attention       ``xvit_*`` + ``ta``
``xvit_st-ta`` X-ViT + summary token + TA       ``xvit_st_*`` + ``ta``
=============  ===============================  ============================

The size suffix (``tiny_patch16``, ...) and ``model.overrides`` come from the recipe's
``model.name``. Each run goes to ``OUT/<variant>/seed-<S>`` through the engine's
:func:`xvit.engine.train.loop.train`; a run whose ``metrics.json`` exists is read back, not
retrained, and an interrupted one resumes from its last checkpoint. The summary (top-1 mean
and sample standard deviation over seeds, per-seed values, and on the synthetic data the
accuracy inside time-reversed twin pairs) is written as ``ablation.json`` and ``ablation.md``.
"""

from __future__ import annotations

import json
import math
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FAMILIES",
    "VARIANTS",
    "Variant",
    "format_markdown",
    "mean_std",
    "pair_accuracy",
    "run_ablation",
    "summarise",
    "variant_config",
]

# Model-name prefixes of the families compared, longest first so ``xvit_st_`` wins over ``xvit_``.
FAMILIES = ("tsm_vit", "xvit_st", "xvit", "vit")


@dataclass(frozen=True)
class Variant:
    """One row of the table: a model family and a temporal head."""

    key: str
    method: str
    family: str
    head: str


VARIANTS: dict[str, Variant] = {
    v.key: v
    for v in (
        Variant("vit-avg", "ViT (spatial only) + avg", "vit", "avg"),
        Variant("tsm-avg", "TSM-ViT + avg", "tsm_vit", "avg"),
        Variant("tsm-ta", "TSM-ViT + temporal attention", "tsm_vit", "ta"),
        Variant("xvit-avg", "X-ViT + avg", "xvit", "avg"),
        Variant("xvit-ta", "X-ViT + temporal attention", "xvit", "ta"),
        Variant("xvit_st-ta", "X-ViT + summary token + temporal attention", "xvit_st", "ta"),
    )
}

# A training function: (resolved config, command for the record) -> final metrics dict.
TrainFn = Callable[[Any, list[str]], dict[str, Any]]


def _size_suffix(model_name: str) -> str:
    """``xvit_tiny_patch16`` -> ``tiny_patch16`` (the part after the family prefix)."""
    for family in FAMILIES:
        if model_name.startswith(family + "_"):
            return model_name[len(family) + 1 :]
    raise ValueError(
        f"model.name {model_name!r}: the ablation needs a name of the form "
        f"<family>_<size>_patch<P> with family one of {', '.join(FAMILIES)}"
    )


def variant_config(base: Any, variant: Variant, seed: int, out: str | Path) -> Any:
    """The recipe ``base`` with the variant's model and head, the seed and the run directory."""
    from xvit.engine.run.config import apply_overrides

    name = f"{variant.family}_{_size_suffix(base.model.name)}"
    return apply_overrides(
        base,
        [
            f"model.name={name}",
            f"model.head={variant.head}",
            f"train.seed={seed}",
            f"train.out={out}",
        ],
    )


def _engine_train(cfg: Any, command: list[str]) -> dict[str, Any]:
    """Train with the engine in this process; returns the final metrics."""
    from xvit.engine.train.loop import train

    result = train(cfg, command=command, echo=True)
    if result.metrics is None:
        raise RuntimeError(f"{cfg.train.out}: training returned no metrics")
    return result.metrics


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1 in the denominator; None below two values)."""
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def pair_accuracy(predictions: list[dict[str, Any]], class_names: Sequence[str]) -> float | None:
    """Accuracy of telling a class from its time-reversed twin, in percent.

    For the built-in synthetic classes and the moving-squares classes
    (:mod:`xvit.data.squares`; twins ``2k``, ``2k + 1``).
    A video counts as right when its class scores above its twin (``label ^ 1``). The records
    hold the top-5 classes only: a class outside them scores below every listed one, and a
    video with neither class listed counts one half. None for other class lists or when no
    video was scored.
    """
    from xvit.data.squares import SQUARES_CLASSES
    from xvit.data.synth import CLASS_NAMES as SYNTH_CLASSES
    from xvit.data.synth import twin_of

    if tuple(class_names) not in (SYNTH_CLASSES, SQUARES_CLASSES):
        return None
    names = tuple(class_names)
    index = {name: i for i, name in enumerate(names)}
    total, right = 0, 0.0
    for rec in predictions:
        if rec.get("prediction") is None or "top" not in rec:
            continue
        label = index[rec["label"]] if isinstance(rec["label"], str) else int(rec["label"])
        probs = dict(rec["top"])
        p_label, p_twin = probs.get(names[label], -1.0), probs.get(names[twin_of(label)], -1.0)
        total += 1
        right += 1.0 if p_label > p_twin else 0.5 if p_label == p_twin else 0.0
    return 100.0 * right / total if total else None


@dataclass
class RunRecord:
    """One finished (or failed) training run."""

    variant: str
    seed: int
    out: str
    top1: float | None = None
    pair_top1: float | None = None
    val_top1_by_epoch: list[float] | None = None
    seconds: float | None = None
    error: str | None = None
    reused: bool = False


def _read_metrics(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RuntimeError(f"{path}: cannot read the run's metrics ({e})") from None


def run_ablation(
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    variants: Sequence[str] = tuple(VARIANTS),
    seeds: Sequence[int] = (0, 1, 2),
    out: str | Path = "runs/ablation",
    train_fn: TrainFn | None = None,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """Train every variant x seed (skipping finished runs) and write the summary into ``out``.

    Returns the summary document (see :func:`summarise`).
    """
    from xvit.engine.run.config import load_config

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if not seeds:
        raise ValueError("no seeds given")
    base = load_config(config, list(overrides))
    train_fn = train_fn or _engine_train
    out = Path(out)
    command = command or ["xvit", "ablate"]
    records: list[RunRecord] = []
    for seed in seeds:  # seed-major: a stopped sweep leaves whole seeds, not whole variants
        for key in variants:
            run_dir = out / key / f"seed-{seed}"
            cfg = variant_config(base, VARIANTS[key], seed, run_dir)
            rec = RunRecord(key, seed, str(run_dir))
            metrics_path = run_dir / "metrics.json"
            if metrics_path.is_file():
                metrics, rec.reused = _read_metrics(metrics_path), True
            else:
                print(f"[ablate] {key} seed {seed} -> {run_dir}", flush=True)
                start = time.perf_counter()
                try:
                    metrics = train_fn(cfg, _train_command(config, overrides, cfg))
                except (RuntimeError, ValueError) as e:  # a NaN stop, a broken config: go on
                    rec.error = str(e)
                    records.append(rec)
                    print(f"[ablate] {key} seed {seed} failed: {e}", flush=True)
                    continue
                rec.seconds = round(time.perf_counter() - start, 1)
                if metrics_path.is_file():  # the file also holds the predictions and history
                    metrics = _read_metrics(metrics_path)
            rec.top1 = float(metrics["top1"])
            rec.val_top1_by_epoch = [
                float(h["val"]["top1"]) for h in metrics.get("history", []) if h.get("val")
            ] or None
            names = _class_names(run_dir)
            rec.pair_top1 = pair_accuracy(metrics.get("predictions", []), names) if names else None
            records.append(rec)
    doc = summarise(records, variants, seeds)
    doc["command"] = shlex.join(command)
    doc["recipe"] = {
        "config": str(config) if config else "built-in synthetic recipe",
        "overrides": list(overrides),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "ablation.md").write_text(format_markdown(doc))
    return doc


def _train_command(config: str | Path | None, overrides: Sequence[str], cfg: Any) -> list[str]:
    """The `xvit train` command equivalent to one run of the ablation."""
    return [
        "xvit",
        "train",
        *([str(config)] if config else []),
        *overrides,
        "--model",
        cfg.model.name,
        "--head",
        cfg.model.head,
        "--seed",
        str(cfg.train.seed),
        "--out",
        cfg.train.out,
    ]


def _class_names(run_dir: Path) -> list[str] | None:
    """The run's class names, from the saved model's ``config.json``."""
    cfg_path = run_dir / "config.json"
    if cfg_path.is_file():
        names = json.loads(cfg_path.read_text()).get("class_names")
        if names:
            return list(names)
    return None


def summarise(records: Sequence[RunRecord], variants: Sequence[str], seeds: Sequence[int]) -> dict[str, Any]:
    """Per variant: per-seed top-1 (None where the run is missing or failed), mean and sample
    std over the completed seeds, their number, the same for the twin-pair accuracy, and the
    validation top-1 after each epoch averaged over the seeds (how fast each variant learns)."""
    rows = []
    for key in variants:
        by_seed = {r.seed: r for r in records if r.variant == key}
        top1 = [by_seed[s].top1 if s in by_seed else None for s in seeds]
        done = [v for v in top1 if v is not None]
        pair = [by_seed[s].pair_top1 for s in seeds if s in by_seed and by_seed[s].pair_top1 is not None]
        mean, std = mean_std(done)
        pmean, pstd = mean_std(pair)
        curves = [
            by_seed[s].val_top1_by_epoch for s in seeds if s in by_seed and by_seed[s].val_top1_by_epoch
        ]
        length = min((len(c) for c in curves), default=0)
        curve = [sum(c[e] for c in curves) / len(curves) for e in range(length)]
        rows.append(
            {
                "variant": key,
                "method": VARIANTS[key].method,
                "seeds": list(seeds),
                "top1": top1,
                "n": len(done),
                "top1_mean": mean,
                "top1_std": std,
                "pair_top1": [by_seed[s].pair_top1 if s in by_seed else None for s in seeds],
                "pair_top1_mean": pmean,
                "pair_top1_std": pstd,
                "val_top1_by_epoch_mean": curve or None,
                "errors": {str(r.seed): r.error for r in by_seed.values() if r.error},
                "seconds": [by_seed[s].seconds if s in by_seed else None for s in seeds],
            }
        )
    return {"rows": rows, "runs": [vars(r) for r in records]}


def _fmt(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.1f} ± {std:.1f}" if std is not None else f"{mean:.1f}"


def format_markdown(doc: dict[str, Any]) -> str:
    """The summary as a markdown table shaped like the seed's Table 2."""
    rows = doc["rows"]
    seeds = rows[0]["seeds"] if rows else []
    has_pair = any(r["pair_top1_mean"] is not None for r in rows)
    has_curve = any(r.get("val_top1_by_epoch_mean") for r in rows)
    head = ["Method", "Top-1 (%) mean ± std", "per seed (" + ", ".join(map(str, seeds)) + ")", "n"]
    if has_pair:
        head.append("twin-pair acc. (%) mean ± std")
    if has_curve:
        head.append("val top-1 after each epoch (mean over seeds)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        per_seed = ", ".join("—" if v is None else f"{v:.1f}" for v in r["top1"])
        cells = [r["method"], _fmt(r["top1_mean"], r["top1_std"]), per_seed, str(r["n"])]
        if has_pair:
            cells.append(_fmt(r["pair_top1_mean"], r["pair_top1_std"]))
        if has_curve:
            cells.append(" / ".join(f"{v:.1f}" for v in r.get("val_top1_by_epoch_mean") or []) or "—")
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if doc.get("command"):
        text += f"\nCommand: `{doc['command']}`\n"
    missing = [f"{r['variant']} seed {s}" for r in rows for s, v in zip(r["seeds"], r["top1"]) if v is None]
    if missing:
        text += "\nMissing runs (not finished or failed; — in the table): " + ", ".join(missing) + "\n"
    return text
