"""`xvit quantize`: an int8 copy of a saved model, measured against fp32 before it is kept.

Method ``dynamic`` (the default): ``torch.ao`` dynamic quantisation of every ``nn.Linear``
(int8 weights, activations quantised per batch on the fly; no calibration data needed). The
output directory holds the fp32 weights and ``quantization.json`` (the recipe and the measured
figures); ``xvit.models.load_model`` re-applies the recipe (see ``xvit.models.quantization``).

Method ``static``: ONNX Runtime's static quantiser on the model's ONNX export, calibrated on
the videos of ``calib_list`` (``xvit.engine.deploy.quantize_static``); the directory also holds the
int8 ONNX file, which runs with ``--runtime onnxruntime``. Its agreement is measured in ONNX
Runtime.

Top-1 agreement with fp32 (and accuracy, when the clips are labelled) is measured on a
validation list (one centre view per video) or, without one, on seeded random clips. The
directory is written only when the agreement reaches ``min_agreement`` (or ``force``), into a
temporary directory renamed into place at the end.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from xvit.engine.run.data import build_eval_dataset, label_space, read_split
from xvit.engine.run.metrics import agreement_figures
from xvit.engine.run.saved import load_run
from xvit.engine.run.scoring import score_dataset
from xvit.models.quantization import QUANTIZATION_NAME, SUPPORTED_METHODS, apply_quantization
from xvit.models.storage import save_pretrained

__all__ = ["DEFAULT_CALIB_SIZE", "AgreementTooLow", "quantize_checkpoint"]

RANDOM_CLIPS = 32
DEFAULT_CALIB_SIZE = 32  # videos of --calib used by the static method


class AgreementTooLow(RuntimeError):
    """The quantised model agrees with fp32 on fewer clips than asked; nothing written."""


class _Both(torch.nn.Module):
    """fp32 and int8 side by side on the same clips (each video decoded once): their logits
    concatenated along the class dimension."""

    def __init__(self, fp32: torch.nn.Module, int8: torch.nn.Module):
        super().__init__()
        self.fp32, self.int8 = fp32, int8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.fp32(x).float(), self.int8(x).float()], dim=-1)


def _logits_on_list(
    model, int8, cfg, list_file: str, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[dict[str, Any]]]:
    """fp32 logits, int8 logits and labels of the videos of ``list_file`` that were read (one
    centre view each), and the ones that failed (path and error)."""
    class_names = list(model.config.class_names) if model.config.class_names else None
    samples, _, _ = read_split(cfg, str(list_file), class_names=class_names, against="the model")
    label_space(samples, int(model.config.num_classes), list_file, "the model")  # accuracy needs its labels
    dataset = build_eval_dataset(cfg, samples, (1, 1))
    scores = score_dataset(_Both(model, int8), dataset, batch_size=batch_size, workers=0, device="cpu")
    assert scores is not None
    n = int(model.config.num_classes)
    both = scores.view_logits[:, 0]
    failed = [{"path": str(samples[f["index"]].path), "error": f["error"]} for f in scores.failures]
    return both[:, :n], both[:, n:], scores.labels, failed


def _compare(
    fp32: torch.Tensor, int8: torch.Tensor, labels: torch.Tensor | None, failed: int = 0
) -> dict[str, Any]:
    """Agreement over the clips both models saw; accuracy over every listed video, the
    ``failed`` ones (unreadable) counted as wrong, as ``xvit eval`` counts them."""
    out: dict[str, Any] = {"clips": int(fp32.shape[0]), **agreement_figures(fp32, int8)}
    if labels is not None and labels.ndim == 1:
        videos = int(fp32.shape[0]) + failed
        out["accuracy_fp32"] = float((fp32.argmax(-1) == labels).sum()) / videos
        out["accuracy_int8"] = float((int8.argmax(-1) == labels).sum()) / videos
    return out


def _static_int8(path: Path, config: Any) -> torch.nn.Module:
    """The static int8 ONNX file in ONNX Runtime, as a module (what ``--runtime onnxruntime``
    runs on the output directory)."""
    from xvit.engine.deploy.runtimes import OnnxRuntime, RuntimeModule

    return RuntimeModule(OnnxRuntime(path), config=config, source=path)


def _check_method_options(method: str, calib_list: str | None, calib_size: int) -> None:
    if method not in SUPPORTED_METHODS:
        raise ValueError(f"--method must be one of {', '.join(SUPPORTED_METHODS)}, got {method!r}")
    if method == "static" and calib_list is None:
        raise ValueError(
            "--method static needs --calib LIST, the videos to calibrate the activation ranges on"
        )
    if method == "dynamic" and calib_list is not None:
        raise ValueError("--calib applies to --method static (dynamic quantisation needs no calibration)")
    if calib_size < 1:
        raise ValueError(f"--calib-size must be >= 1, got {calib_size}")
    if calib_list is not None and not Path(calib_list).is_file():
        raise FileNotFoundError(f"--calib {calib_list}: no such file")


def quantize_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    method: str = "dynamic",
    val_list: str | None = None,
    calib_list: str | None = None,
    calib_size: int = DEFAULT_CALIB_SIZE,
    min_agreement: float = 0.99,
    force: bool = False,
    batch_size: int = 8,
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Quantise the model of ``checkpoint`` into the new directory ``out``; returns the
    figures (``top1_agreement``, ``max_prob_diff``, accuracies with a labelled list; for the
    static method also ``calibration``: list, size, videos used, videos that failed)."""
    _check_method_options(method, calib_list, calib_size)
    if not 0.0 <= min_agreement <= 1.0:
        raise ValueError(f"--min-agreement must be in [0, 1], got {min_agreement}")
    if val_list is not None and not Path(val_list).exists():
        raise FileNotFoundError(f"--list {val_list}: no such file")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} exists and is not an empty directory")
    if not out.parent.is_dir():
        raise ValueError(f"--out: the directory {out.parent} does not exist")
    if method == "static":
        from xvit.engine.deploy.runtimes import require

        require("onnxruntime")  # before any work
    model, cfg = load_run(checkpoint, overrides)
    if getattr(model, "quantization", None):
        raise ValueError(f"{checkpoint} is already quantised")
    model = model.cpu().eval()
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex}.tmp"
    try:
        save_pretrained(model, tmp)
        run_cfg = Path(checkpoint) / "config.yaml"
        if run_cfg.is_file():  # the run's sampling settings, as load_run reads them
            shutil.copy2(run_cfg, tmp / "config.yaml")
        if method == "static":
            from xvit.engine.deploy.quantize_static import (
                CalibrationClips,
                quantize_onnx_static,
                static_recipe,
            )

            recipe = static_recipe()
            names = list(model.config.class_names) if model.config.class_names else None
            reader = CalibrationClips(cfg, calib_list, calib_size, names)  # fails fast: no readable video
            quantize_onnx_static(model, reader, tmp / recipe["onnx"])
            calibration = reader.facts()
            int8 = _static_int8(tmp / recipe["onnx"], model.config)
        else:
            recipe = {"method": method, "dtype": "qint8", "modules": ["Linear"]}
            calibration = None
            int8 = apply_quantization(model, recipe)
        figures = _measure(model, int8, cfg, val_list, batch_size)
        figures.update(min_agreement=min_agreement)
        if calibration is not None:
            figures["calibration"] = calibration
        if figures["top1_agreement"] < min_agreement and not force:
            raise AgreementTooLow(
                f"int8 agrees with fp32 on {figures['top1_agreement']:.2%} of {figures['clips']} clips, "
                f"below --min-agreement {min_agreement:.2%}; nothing written (--force to keep it anyway)"
            )
        recipe.update(
            figures={k: v for k, v in figures.items() if k != "calibration"},
            source=str(checkpoint),
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            torch_version=torch.__version__,
        )
        if calibration is not None:
            import onnxruntime

            recipe.update(calibration=calibration, onnxruntime_version=onnxruntime.__version__)
        (tmp / QUANTIZATION_NAME).write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
        if out.is_dir():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return figures


def _measure(model, int8, cfg, val_list: str | None, batch_size: int) -> dict[str, Any]:
    """``_compare`` of fp32 ``model`` and ``int8`` on ``val_list`` (one centre view per video)
    or on seeded random clips, with ``measured_on`` naming which."""
    if val_list is not None:
        fp32_logits, int8_logits, labels, failed = _logits_on_list(model, int8, cfg, val_list, batch_size)
        if fp32_logits.shape[0] == 0:
            raise ValueError(f"{val_list}: no video could be read")
        source = str(val_list)
    else:
        g = torch.Generator().manual_seed(0)
        c = model.config
        x = torch.randn(RANDOM_CLIPS, 3, c.num_frames, c.img_size, c.img_size, generator=g)
        with torch.inference_mode():
            fp32_logits = torch.cat([model(b) for b in x.split(batch_size)])
            int8_logits = torch.cat([int8(b) for b in x.split(batch_size)])
        labels, source, failed = None, f"{RANDOM_CLIPS} seeded random clips (no --list given)", []
    figures = _compare(fp32_logits, int8_logits, labels, len(failed))
    figures["measured_on"] = source
    if val_list is not None:
        figures["failed"] = failed  # unreadable videos: not in the agreement, wrong in the accuracy
    return figures
