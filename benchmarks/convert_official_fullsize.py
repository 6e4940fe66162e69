"""Full-size check of `xvit convert-official` (ViT-B/16, 16x224, 12 heads).

Builds random checkpoints in the released K600 and SSv2 layouts (without a cfg, so the
presets are used), converts them, and compares the converted model's logits with the
test suite's independent float64 re-implementation of the released forward pass.

    python benchmarks/convert_official_fullsize.py

Takes about a minute and ~4 GB of memory on 2 cores. Results are recorded in docs/models.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_convert_official as ref

from xvit.models.convert_official import convert_official
from xvit.models.hub import load_model


def main() -> None:
    ref.D, ref.DEPTH, ref.HEADS, ref.PATCH, ref.IMG = 768, 12, 12, 16, 224
    ref.MLP_DIM, ref.HEAD_HEADS = 768, 12
    out = Path(tempfile.mkdtemp())
    for preset, seg, div, classes in [("k600", 8, 8, 600), ("ssv2", 16, 4, 174)]:
        state = ref.released_state(classes)
        ckpt = ref.save_released(out / f"{preset}.pth", state, cfg=None)
        start = time.perf_counter()
        convert_official(ckpt, out / preset, preset=preset)
        convert_s = time.perf_counter() - start
        model = load_model(out / preset)
        x = ref.video(batch=1)
        with torch.no_grad():
            y = model(x)
        expected = ref.released_forward(state, x, seg, div)
        diff = (y.double() - expected).abs().max().item()
        print(
            f"{preset}: convert {convert_s:.1f}s  max|diff| {diff:.2e}  "
            f"max|logit| {expected.abs().max().item():.2f}  heads {model.config.num_heads}  "
            f"segment {model.config.segment_len}  div {model.config.shift_div}"
        )


if __name__ == "__main__":
    main()
