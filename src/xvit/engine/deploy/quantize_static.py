"""Static int8 through ONNX Runtime's quantiser: the fp32 ONNX export, calibrated on real clips.

``quantize_onnx_static`` exports the model (checked against eager, dynamic batch), runs ONNX
Runtime's shape pre-processing and ``onnxruntime.quantization.quantize_static`` on it: QDQ
format, weights int8 per output channel (symmetric), activations uint8 (asymmetric, ranges
from MinMax calibration), on the matrix products whose second operand is a weight (the
model's linear layers, as the dynamic method; the attention products and every other operator
stay fp32). The calibration clips are one centre view per video of ``--calib``, decoded by
xvit's data layer exactly as ``xvit eval`` feeds the model, read one clip at a time (ONNX
Runtime's calibration keeps only each tensor's per-clip minimum and maximum).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from xvit.engine.deploy.export import ExportError, export_model, one_line
from xvit.engine.deploy.runtimes import require
from xvit.engine.run.data import build_eval_dataset, read_split

__all__ = [
    "INPUT_NAME",
    "STATIC_ONNX_NAME",
    "CalibrationClips",
    "CalibrationError",
    "quantize_onnx_static",
    "static_recipe",
]

STATIC_ONNX_NAME = "model.int8.onnx"
INPUT_NAME = "video"  # the input of xvit's ONNX exports


def static_recipe() -> dict[str, Any]:
    """What ``quantize_onnx_static`` does, as stored in ``quantization.json``."""
    return {
        "method": "static",
        "runtime": "onnxruntime",
        "onnx": STATIC_ONNX_NAME,
        "format": "QDQ",
        "weights": "int8, per output channel, symmetric",
        "activations": "uint8, per tensor, asymmetric (MinMax calibration)",
        "ops": ["MatMul with a constant weight", "Gemm"],
    }


class CalibrationError(ValueError):
    """A calibration list none of whose videos can be read."""


class CalibrationClips:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over the first ``size`` videos of a
    list file: ``get_next()`` gives ``{input_name: float32 (1, 3, T, H, W)}`` (one centre view,
    as ``xvit eval`` preprocesses it) and None at the end. Videos that cannot be decoded are
    skipped and listed in ``failures`` (``path: reason``). The first readable clip is decoded
    when the reader is made, so a list with none is a ``CalibrationError`` before any work."""

    def __init__(
        self,
        cfg: Any,
        list_file: str | os.PathLike[str],
        size: int,
        class_names: list[str] | None = None,
        input_name: str = INPUT_NAME,
    ):
        samples, _, _ = read_split(cfg, str(list_file), class_names=class_names)
        if not samples:
            raise CalibrationError(f"--calib {list_file}: the list has no videos")
        self.list_file, self.size = str(list_file), int(size)
        self.samples = samples[:size]
        self.dataset = build_eval_dataset(cfg, self.samples, (1, 1))
        self.input_name = input_name
        self.next_index = 0
        self.used = 0
        self.failures: list[str] = []
        self.pending = self._read()
        if self.pending is None:
            raise CalibrationError(
                f"--calib {list_file}: none of its first {len(self.samples)} videos could be read "
                f"(first error: {self.failures[0]})"
            )

    def _read(self) -> np.ndarray | None:
        """The next decodable clip (1, 3, T, H, W), or None at the end of the list."""
        while self.next_index < len(self.samples):
            item = self.dataset[self.next_index]
            self.next_index += 1
            video = item.get("video")
            if video is None:
                self.failures.append(str(item.get("error") or self.samples[self.next_index - 1].path))
                continue
            clip = video.reshape(-1, *video.shape[-4:])[:1]  # the centre view
            return np.ascontiguousarray(clip.float().numpy())
        return None

    def facts(self) -> dict[str, Any]:
        """``list``, ``size``, ``videos_used`` and ``failures`` (so far), for quantization.json."""
        return {
            "list": self.list_file,
            "size": self.size,
            "videos_used": self.used,
            "failures": list(self.failures),
        }

    def get_next(self) -> dict[str, np.ndarray] | None:
        clip, self.pending = self.pending, None
        if clip is None:
            clip = self._read()
        if clip is None:
            return None
        self.used += 1
        return {self.input_name: clip}


@contextlib.contextmanager
def _quiet_ort():
    """ONNX Runtime's quantiser logs its progress and tips at INFO/WARNING on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def quantize_onnx_static(model: nn.Module, reader: Any, out_file: str | os.PathLike[str]) -> None:
    """Write the static int8 ONNX model of ``model`` (fp32, CPU) to ``out_file``, calibrated
    on the clips of ``reader`` (``get_next() -> {INPUT_NAME: array} | None``, as
    ``CalibrationClips``). A quantiser failure is an ``ExportError`` naming ONNX Runtime's
    reason."""
    require("onnxruntime")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_file = Path(out_file)
    with tempfile.TemporaryDirectory(prefix=".xvit-quant-", dir=out_file.parent) as work:
        fp32 = Path(work) / "fp32.onnx"
        export_model(model, "onnx", fp32, dynamic_batch=True)  # checked against eager
        pre = Path(work) / "pre.onnx"
        try:
            with _quiet_ort():
                quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
                quantize_static(
                    str(pre),
                    str(out_file),
                    reader,
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul", "Gemm"],
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={
                        "MatMulConstBOnly": True,  # the linear layers, not q @ k^T or attn @ v
                        "WeightSymmetric": True,
                        "ActivationSymmetric": False,
                    },
                )
        except CalibrationError:
            raise
        except Exception as e:  # ONNX Runtime's quantiser raises many types
            raise ExportError(f"ONNX Runtime's static quantiser failed: {one_line(e)}") from e
