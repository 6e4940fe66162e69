"""The attention variants: one table of what each `attention=` value is and builds.

Everything that depends on the variant reads `VARIANTS` (the config's choices, which layers
`mix_layers` selects, whether `segment_len` applies, the block of each layer); nothing else
names a variant. A variant is resolved once, when the model is built.

| variant   | block          | token mixer                          | moves channels in time |
|-----------|----------------|--------------------------------------|------------------------|
| spatial   | `Block`        | `Attention` (per frame)              | no                     |
| mixing    | `Block`        | `Attention` + `ChannelShift` (X-ViT) | keys/values            |
| summary   | `Block`        | the same + summary tokens (X-ViT+ST) | keys/values            |
| tsm       | `TSMBlock`     | `Attention`                          | the block input        |
| divided   | `DividedBlock` | `TemporalAttention`, then `Attention` with one CLS per clip | no |
| joint     | `Block`        | `JointAttention` (one CLS per clip)  | no                     |

`clip_wide` says why a variant's frames meet across the whole clip whatever `segment_len`
is (summary tokens, temporal or joint attention); the others keep frames apart except for
the channel shift, which `segment_len` bounds. `VideoViT.segment_len_for_reuse` reads it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xvit.models.attention import Attention, ChannelShift, JointAttention
from xvit.models.blocks import Block, DividedBlock, TSMBlock

# build(shift, dim=..., num_heads=..., mlp_ratio=..., qkv_bias=..., norm_eps=..., drop=...,
#       attn_drop=..., drop_path=...) -> the block of one layer
BuildBlock = Callable[..., Block]


@dataclass(frozen=True)
class AttentionVariant:
    """One `attention=` value: how a layer of it is built and how it uses time.

    `mixes`: the attention mixes keys/values across frames (X-ViT); `shifts`: the block input
    is shifted across frames (TSM). Either way the variant moves channels in time
    (`temporal`): `mix_layers` picks its layers (the others are spatial) and `segment_len`
    bounds the movement.
    """

    build: BuildBlock
    mixes: bool = False
    shifts: bool = False
    # why frames meet across the whole clip whatever segment_len is ("": they do not)
    clip_wide: str = ""

    @property
    def temporal(self) -> bool:
        return self.mixes or self.shifts


def _spatial(shift: ChannelShift, **kw: Any) -> Block:
    return Block(**kw)


def _mixing(shift: ChannelShift, **kw: Any) -> Block:
    return Block(**kw, attn_layer=functools.partial(Attention, shift=shift))


def _summary(shift: ChannelShift, **kw: Any) -> Block:
    return Block(**kw, attn_layer=functools.partial(Attention, shift=shift, summary_token=True))


def _tsm(shift: ChannelShift, **kw: Any) -> Block:
    return TSMBlock(**kw, shift=shift)


def _divided(shift: ChannelShift, **kw: Any) -> Block:
    return DividedBlock(**kw)


def _joint(shift: ChannelShift, **kw: Any) -> Block:
    return Block(**kw, attn_layer=JointAttention)


VARIANTS: dict[str, AttentionVariant] = {
    "spatial": AttentionVariant(_spatial),
    "mixing": AttentionVariant(_mixing, mixes=True),
    "summary": AttentionVariant(_summary, mixes=True, clip_wide="the summary tokens span the whole clip"),
    "tsm": AttentionVariant(_tsm, shifts=True),
    "divided": AttentionVariant(
        _divided, clip_wide="temporal attention and the shared CLS span the whole clip"
    ),
    "joint": AttentionVariant(_joint, clip_wide="joint attention spans the whole clip"),
}
ATTENTION_TYPES = tuple(VARIANTS)

__all__ = ["ATTENTION_TYPES", "VARIANTS", "AttentionVariant"]
