"""Parameter and FLOP counts (`torch.utils.flop_counter`; a multiply-add is 2 FLOPs)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of `model` (only those with `requires_grad` if asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def default_input_shape(model: nn.Module) -> tuple[int, int, int, int, int]:
    """`(1, C, T, H, W)` from the model's config (its default clip)."""
    c = model.config  # type: ignore[attr-defined]
    return (1, c.in_chans, c.num_frames, c.img_size, c.img_size)


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Sequence[int] | None = None) -> int:
    """Forward FLOPs of `model` on one input of `input_shape` (default: `(1, C, T, H, W)`
    from its config).

    Runs the forward pass under `FlopCounterMode` (on the model's device; a model on the
    `meta` device costs no compute). Attention runs with the math SDPA backend so its
    matrix products are counted: the counter has no formula for the fused CPU kernel.
    Only matrix products and convolutions count (not softmax, norms or additions).
    """
    shape = tuple(input_shape) if input_shape is not None else default_input_shape(model)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    x = torch.zeros(shape, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with sdpa_kernel(SDPBackend.MATH), counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
