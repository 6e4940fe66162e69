"""Exporting a model for deployment: ONNX (torch's exporter) and ``torch.export`` (``.pt2``).

Every export is checked before it is kept: the written file is loaded back (ONNX Runtime for
ONNX when installed, else ``onnx.checker``; ``torch.export.load`` for ``.pt2``), run on seeded
clips of another batch size when the batch is dynamic, and compared with the eager model (max
absolute logit difference and top-1 agreement). A file that fails the check is never moved
into place: the export goes to a temporary file next to the target and is renamed only after
it passed.

``onnx_for_checkpoint`` is what ``--runtime onnxruntime|openvino`` uses: the checkpoint's own
``model.onnx`` when it is newer than its weights, else a checked export cached under
``$XVIT_CACHE/onnx/`` keyed by the hash of the checkpoint's files.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xvit.engine.run.rundir import nearest_existing
from xvit.models.storage import checkpoint_digest

__all__ = [
    "DEFAULT_OPSET",
    "FORMATS",
    "TOLERANCE",
    "ExportError",
    "ExportReport",
    "compare_logits",
    "example_clips",
    "export_model",
    "one_line",
    "onnx_cache_dir",
    "onnx_for_checkpoint",
    "runtime_model",
]

FORMATS = ("onnx", "pt2")
DEFAULT_OPSET = 18
TOLERANCE = 1e-4  # max abs logit difference accepted in fp32


class ExportError(RuntimeError):
    """A model that could not be exported, or whose export does not match the eager model."""


@dataclass
class ExportReport:
    path: Path
    fmt: str
    exporter: str  # "dynamo" / "torchscript" (ONNX) or "torch.export"
    checked_with: str  # onnxruntime, onnx.checker or torch.export.load
    max_abs_diff: float | None
    top1_agreement: float | None
    batch: int
    frames: int

    def summary(self) -> str:
        if self.max_abs_diff is None:
            check = f"structure checked with {self.checked_with} (install onnxruntime to compare outputs)"
        else:
            check = (
                f"max |exported - eager| = {self.max_abs_diff:.2e} (tolerance {TOLERANCE:g}), top-1 "
                f"agreement {self.top1_agreement:.1%} on {self.batch} clips, checked with {self.checked_with}"
            )
        return f"{self.path}: {self.fmt} via {self.exporter}; {check}"


def example_clips(model: nn.Module, batch: int, frames: int | None = None, seed: int = 0) -> torch.Tensor:
    """Seeded normalised-range clips ``(batch, 3, T, H, W)`` for the model's input size."""
    cfg = model.config  # type: ignore[attr-defined]
    t = int(frames or cfg.num_frames)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, t, int(cfg.img_size), int(cfg.img_size), generator=g)


def compare_logits(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(max abs difference, top-1 agreement) of two ``(B, C)`` logit arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ExportError(f"the exported model returns shape {b.shape}, the eager model {a.shape}")
    return float(np.abs(a - b).max()), float((a.argmax(-1) == b.argmax(-1)).mean())


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warnings on stdout/stderr; keep them for errors only."""
    buf = io.StringIO()
    # torch's ONNX exporter logs one warning per torchvision operator it cannot register
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
            warnings.simplefilter("ignore")
            yield buf
    finally:
        onnx_log.setLevel(level)


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:400]}"


def _batch_dim(dynamic_batch: bool) -> Any:
    return ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None


def _export_onnx(model: nn.Module, x: torch.Tensor, tmp: str, dynamic_batch: bool, opset: int) -> str:
    """Write the ONNX file; returns which exporter made it (dynamo first, then TorchScript)."""
    errors = []
    try:
        with _quiet():
            program = torch.onnx.export(
                model,
                (x,),
                dynamo=True,
                opset_version=opset,
                input_names=["video"],
                output_names=["logits"],
                dynamic_shapes=_batch_dim(dynamic_batch),
                verbose=False,
            )
            program.save(tmp, external_data=False)
        return "dynamo"
    except Exception as e:  # the exporter raises many types; fall back, keep the reason
        errors.append(f"dynamo exporter: {one_line(e)}")
    try:
        with _quiet():
            torch.onnx.export(
                model,
                (x,),
                tmp,
                dynamo=False,
                opset_version=opset,
                input_names=["video"],
                output_names=["logits"],
                dynamic_axes={"video": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None,
            )
        return "torchscript"
    except Exception as e:
        errors.append(f"TorchScript exporter: {one_line(e)}")
    raise ExportError("cannot export to ONNX: " + "; ".join(errors))


def _check_onnx(tmp: str, eager: np.ndarray, x: torch.Tensor) -> tuple[str, float | None, float | None]:
    from xvit.engine.deploy.runtimes import OnnxRuntime, RuntimeUnavailable

    try:
        runtime = OnnxRuntime(tmp)
    except RuntimeUnavailable:
        runtime = None
    if runtime is None:
        import onnx

        onnx.checker.check_model(tmp, full_check=True)
        return "onnx.checker", None, None
    return ("onnxruntime", *compare_logits(eager, runtime.run(x.numpy())))


def export_model(
    model: nn.Module,
    fmt: str,
    out: str | os.PathLike[str],
    *,
    frames: int | None = None,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    batch: int = 2,
    tolerance: float = TOLERANCE,
) -> ExportReport:
    """Export ``model`` (eval mode, CPU, fp32) to ``out`` in ``fmt`` (``onnx`` or ``pt2``),
    check it against the eager model and move it into place (a missing folder of ``out`` is
    made then); raises ``ValueError`` for bad options (``out`` must end in ``.onnx`` / ``.pt2``)
    and ``ExportError`` with one line naming the reason when the export fails or does not match."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "onnx" and opset < 18:
        raise ValueError(f"--opset must be >= 18 (torch's ONNX exporter), got {opset}")
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a file name")
    if out.suffix.lower() != f".{fmt}":
        raise ValueError(f"--out {out}: a {fmt} export is written to a .{fmt} file")
    base = nearest_existing(out.parent)  # the file is made there, then moved
    if not base.is_dir():
        raise ValueError(f"--out {out}: {base} is not a directory")
    model = model.eval().float().cpu()
    if dynamic_batch:  # a traced batch of 1 would be specialised (size-1 dims are constants)
        batch = max(batch, 2)
    x = example_clips(model, batch, frames, seed=0)
    # with a dynamic batch the check runs on another batch size than the one traced
    check_x = example_clips(model, batch + 1 if dynamic_batch else batch, frames, seed=1)
    try:
        with torch.inference_mode():
            eager = model(check_x).float().numpy()
    except Exception as e:
        raise ExportError(f"the eager model does not run on {tuple(x.shape)} clips: {one_line(e)}") from e
    tmp = str(base / f".tmp-{uuid.uuid4().hex}-{out.name}")  # same suffix: torch.export checks it
    try:
        if fmt == "onnx":
            exporter = _export_onnx(model, x, tmp, dynamic_batch, opset)
            try:
                checked_with, diff, agree = _check_onnx(tmp, eager, check_x)
            except ExportError:
                raise
            except Exception as e:
                raise ExportError(f"the exported ONNX file does not load or run: {one_line(e)}") from e
        else:
            exporter = "torch.export"
            try:
                with _quiet():
                    program = torch.export.export(model, (x,), dynamic_shapes=_batch_dim(dynamic_batch))
                    torch.export.save(program, tmp)
            except Exception as e:
                raise ExportError(f"cannot export with torch.export: {one_line(e)}") from e
            try:
                with torch.inference_mode():
                    got = torch.export.load(tmp).module()(check_x).float().numpy()
            except Exception as e:
                raise ExportError(f"the exported program does not reload or run: {one_line(e)}") from e
            checked_with = "torch.export.load"
            diff, agree = compare_logits(eager, got)
        if diff is not None and not diff <= tolerance:
            raise ExportError(
                f"the exported model differs from the eager one by {diff:.3g} (max abs logit; "
                f"tolerance {tolerance:g}); nothing written"
            )
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        out.parent.mkdir(parents=True, exist_ok=True)  # a missing folder: made once the export is checked
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return ExportReport(out, fmt, exporter, checked_with, diff, agree, int(check_x.shape[0]), int(x.shape[2]))


def onnx_cache_dir() -> Path:
    """``$XVIT_CACHE/onnx``, default ``~/.cache/xvit/onnx``."""
    return Path(os.environ.get("XVIT_CACHE") or Path.home() / ".cache" / "xvit") / "onnx"


def _checkpoint_key(directory: Path) -> str:
    return checkpoint_digest(directory, f"torch {torch.__version__} opset {DEFAULT_OPSET}")[:24]


def onnx_for_checkpoint(directory: str | os.PathLike[str], model: nn.Module) -> tuple[Path, str]:
    """The ONNX file (dynamic batch) for the checkpoint ``directory`` whose loaded model is
    ``model``, and a sentence saying where it came from.

    ``DIR/model.onnx`` is used when it is newer than ``DIR/model.safetensors`` (as ``xvit
    export --checkpoint DIR --format onnx --dynamic-batch --out DIR/model.onnx`` writes it);
    otherwise the model is exported (and checked) once into the cache.
    """
    directory = Path(directory)
    local = directory / "model.onnx"
    weights = directory / "model.safetensors"
    if local.is_file() and local.stat().st_mtime >= weights.stat().st_mtime:
        return local, f"using {local}"
    path = onnx_cache_dir() / f"{_checkpoint_key(directory)}.onnx"
    if path.is_file():
        return path, f"using the cached export {path}"
    path.parent.mkdir(parents=True, exist_ok=True)
    report = export_model(model, "onnx", path, dynamic_batch=True)
    stale = " (DIR/model.onnx is older than the weights, ignored)" if local.is_file() else ""
    return path, f"exported to the cache {path}{stale}; {report.summary().split('; ', 1)[1]}"


def runtime_model(checkpoint: str | os.PathLike[str], model: nn.Module, runtime: str) -> nn.Module:
    """``model`` (loaded from ``checkpoint``) in ``runtime`` as an ``nn.Module`` running on the
    CPU (``torch``: ``model`` itself); says on stderr which ONNX file it runs.

    A static int8 model (``xvit quantize --method static``) runs its own int8 ONNX file in
    ONNX Runtime, the runtime it was measured in, and only there; a dynamic int8 model runs in
    torch only."""
    import sys

    from xvit.engine.deploy.runtimes import RUNTIMES, RuntimeModule, open_onnx_runtime

    if runtime not in RUNTIMES:
        raise ValueError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    recipe = getattr(model, "quantization", None) or {}
    if recipe.get("method") == "static":
        if runtime != "onnxruntime":
            raise ValueError(
                f"{checkpoint} is an ONNX int8 model (xvit quantize --method static), which runs "
                "with --runtime onnxruntime only"
            )
        path = Path(recipe["onnx_path"])
        print(f"runtime onnxruntime: using {path} (static int8)", file=sys.stderr, flush=True)
        return RuntimeModule(open_onnx_runtime(runtime, path), config=model.config, source=path)
    if runtime == "torch":
        return model
    if recipe:
        raise ValueError(f"{checkpoint} is an int8 quantised model, which runs with --runtime torch only")
    path, how = onnx_for_checkpoint(checkpoint, model)
    print(f"runtime {runtime}: {how}", file=sys.stderr, flush=True)
    return RuntimeModule(open_onnx_runtime(runtime, path), config=model.config, source=path)
