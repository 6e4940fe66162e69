"""Pre-norm transformer blocks on `(B, T, N, D)` tokens, one class per block structure.

`Block` takes its token mixer as `attn_layer` (timm's pattern: the variant picks the module
class, the block does not branch on it). Two variants change the block around the mixer:
`TSMBlock` shifts the block input in time (TSM-ViT) and `DividedBlock` puts TimeSformer's
temporal attention before the spatial one. Which variant builds which block is the table in
`xvit.models.variants`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from xvit.models.attention import Attention, ChannelShift, TemporalAttention, temporal_shift
from xvit.models.layers import DropPath, Mlp

# `attn_layer(dim, num_heads, qkv_bias, attn_drop, proj_drop)` -> the block's token mixer
AttnLayer = Callable[[int, int, bool, float, float], nn.Module]


class Block(nn.Module):
    """x + DropPath(attn(LN(x))), then x + DropPath(MLP(LN(x))); timm's names `norm1`,
    `attn`, `norm2`, `mlp`. `attn_layer` builds the token mixer (default: per-frame
    `Attention`)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_eps: float = 1e-6,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        attn_layer: AttnLayer = Attention,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = attn_layer(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def init_weights(self) -> None:
        """What the block changes after the model's generic initialisation (nothing)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class TSMBlock(Block):
    """TSM-ViT: the block input is shifted in time first and the shifted tokens are used in
    the residual: Y = SHIFT(Z); Y' = MSA(LN(Y)) + Y; Z' = MLP(LN(Y')) + Y'."""

    def __init__(self, dim: int, num_heads: int, *args: Any, shift: ChannelShift, **kwargs: Any) -> None:
        super().__init__(dim, num_heads, *args, **kwargs)
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(temporal_shift(x, self.shift.shift_div, self.shift.segment_len))


class DividedBlock(Block):
    """TimeSformer's divided space-time block: temporal attention on the patch tokens
    (`temporal_norm1`, `temporal_attn`, `temporal_fc`, with a residual), then spatial
    attention whose CLS outputs are averaged over the frames (one CLS per clip, kept as T
    identical copies), then the MLP. The arguments are `Block`'s (no `attn_layer`); the
    temporal norm and attention take the settings of the spatial ones."""

    def __init__(self, dim: int, num_heads: int, *args: Any, **kwargs: Any) -> None:
        spatial = functools.partial(Attention, shared_cls=True)
        super().__init__(dim, num_heads, *args, attn_layer=spatial, **kwargs)
        attn = self.attn
        self.temporal_norm1 = nn.LayerNorm(dim, eps=self.norm1.eps)
        self.temporal_attn = TemporalAttention(
            dim, num_heads, attn.qkv.bias is not None, attn.attn_drop, attn.proj_drop.p
        )
        self.temporal_fc = nn.Linear(dim, dim)
        # TimeSformer's module order (norm1, temporal_*, attn, ...): the order of the
        # parameters, which the optimizer state and the seeded initialisation follow
        for name in ("attn", "drop_path", "norm2", "mlp"):
            self._modules[name] = self._modules.pop(name)

    def init_weights(self) -> None:
        """`temporal_fc` starts at zero, so the block starts as a spatial one."""
        nn.init.zeros_(self.temporal_fc.weight)
        nn.init.zeros_(self.temporal_fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = x[:, :, 1:]
        res = self.temporal_fc(self.drop_path(self.temporal_attn(self.temporal_norm1(patches))))
        x = torch.cat([x[:, :, :1], patches + res], dim=2)
        return super().forward(x)


__all__ = ["AttnLayer", "Block", "DividedBlock", "TSMBlock"]
