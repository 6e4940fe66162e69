"""The token mixers of the video backbone, the attention product, and all temporal mixing.

Which mixer each `attention=` variant uses is the table in `xvit.models.variants`.

Token layout: `x` is `(B, T, N, D)` with `N = 1 + S` (a CLS token, then the S patch tokens
of each frame). Every module here takes and returns that layout, and every attention goes
through `attention()`: `torch.nn.functional.scaled_dot_product_attention`, except for short
bf16/fp16 sequences on CPU, where two matmuls and a softmax are faster (see `attention`);
`set_attention_kernel` / `attention_kernel` / $XVIT_ATTENTION_KERNEL force either product.

* `Attention`: per-frame (spatial) attention. With a `ChannelShift` it becomes X-ViT's
  space-time mixing attention (keys/values of frame t take channel slices from frames
  t-w..t+w), optionally with the summary token (X-ViT + ST). With `shared_cls=True` the T
  CLS copies of a one-CLS-per-clip model are averaged after attention (TimeSformer).
* `TemporalAttention`: attention over time at each spatial position (TimeSformer's divided
  space-time attention, first half).
* `JointAttention`: full attention over the clip's CLS and all T*S patch tokens (ViViT
  model 1).
* `temporal_shift`: TSM's shift of the block input (TSM-ViT); not an attention, but it is
  the same channel shift as X-ViT's, so it lives here.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MIX_SPLITS = ("released", "even")


# --------------------------------------------------------------------------------------------
# Temporal channel shift (X-ViT mixing and TSM)
# --------------------------------------------------------------------------------------------


def channel_groups(
    channels: int, window: int = 1, split: str = "released", shift_div: int = 8
) -> list[tuple[int, int, int]]:
    """The channel groups that move in time: `(start, end, offset)` with channels
    `[start, end)` of frame t taken from frame `t + offset`; every other channel stays.

    * `"released"`: the authors' code (and TSM): with `fold = channels // shift_div`,
      channels `[0, fold)` come from t+1 and `[fold, 2*fold)` from t-1. For a window w > 1
      further folds follow in the order t+2, t-2, ..., t+w, t-w.
    * `"even"`: the paper's description: the channels are split in 2w+1 consecutive groups,
      group j taken from frame `t + j - w`; the remainder of the division goes to the centre
      group (offset 0).
    """
    if window < 0:
        raise ValueError(f"mixing window must be >= 0, got {window}")
    if window == 0:
        return []
    if split == "released":
        fold = channels // shift_div
        if fold == 0 or 2 * window * fold > channels:
            raise ValueError(
                f"released split: {channels} channels with shift_div={shift_div} and window "
                f"{window} needs 2*window*(channels//shift_div) <= channels and a non-empty fold"
            )
        groups = []
        for i in range(window):
            groups.append((2 * i * fold, (2 * i + 1) * fold, i + 1))
            groups.append(((2 * i + 1) * fold, (2 * i + 2) * fold, -(i + 1)))
        return groups
    if split == "even":
        n = 2 * window + 1
        base, rem = divmod(channels, n)
        if base == 0:
            raise ValueError(f"even split: {channels} channels cannot be split in {n} groups")
        groups, start = [], 0
        for j in range(n):
            size = base + (rem if j == window else 0)
            if j != window:
                groups.append((start, start + size, j - window))
            start += size
        return groups
    raise ValueError(f"unknown mixing split {split!r}; expected one of {MIX_SPLITS}")


def shift_channels_(x: torch.Tensor, groups: Sequence[tuple[int, int, int]]) -> torch.Tensor:
    """Shift channel groups of `x` along dim 1 (time), in place; zeros past the ends.

    `x` is `(B', L, ..., C)`, the L frames of one segment; for every `(start, end, offset)`
    the channels `[start, end)` of frame t become those of frame `t + offset`. Per group,
    only the moved slice is copied (zero-padded in time) and written back with one sliced
    assignment (one autograd node). Returns `x`.
    """
    length = x.shape[1]
    no_pad = [0, 0] * (x.ndim - 2)  # F.pad lists the last dim first; dim 1 comes last
    for start, end, offset in groups:
        src = x[..., start:end]
        if abs(offset) >= length:
            x[..., start:end] = 0
        elif offset > 0:  # frame t <- frame t + offset: drop the first frames, pad the end
            x[..., start:end] = F.pad(src[:, offset:], no_pad + [0, offset])
        else:  # frame t <- frame t - |offset|: drop the last frames, pad the start
            x[..., start:end] = F.pad(src[:, : length + offset], no_pad + [-offset, 0])
    return x


def shift_channels(x: torch.Tensor, groups: Sequence[tuple[int, int, int]]) -> torch.Tensor:
    """`shift_channels_` out of place: the same values in a new tensor, built by one
    `torch.cat` of the shifted and unshifted channel slices along the last dim.

    This is the form exported graphs get (`exporting()`): the in-place sliced assignments of
    `shift_channels_` export as `ScatterND` between two full `Transpose`s in every block, which
    ONNX Runtime runs at 0.75x eager (docs/deploy.md); a concatenation exports as `Concat`.
    The groups must not overlap (as `channel_groups` makes them)."""
    length, channels = x.shape[1], x.shape[-1]
    no_pad = [0, 0] * (x.ndim - 2)
    pieces, at = [], 0
    for start, end, offset in sorted(groups):
        if start < at or end > channels:
            raise ValueError(f"channel groups overlap or exceed {channels} channels: {list(groups)}")
        if start > at:
            pieces.append(x[..., at:start])
        src = x[..., start:end]
        if abs(offset) >= length:
            pieces.append(torch.zeros_like(src))
        elif offset > 0:
            pieces.append(F.pad(src[:, offset:], no_pad + [0, offset]))
        else:
            pieces.append(F.pad(src[:, : length + offset], no_pad + [-offset, 0]))
        at = end
    if at < channels:
        pieces.append(x[..., at:])
    return torch.cat(pieces, dim=-1) if pieces else x.clone()


def exporting() -> bool:
    """True while torch's ONNX exporters (dynamo or TorchScript), `torch.export` or
    `torch.jit.trace` trace the model: the shifts then take their out-of-place form."""
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def _segments(x: torch.Tensor, segment_len: int | None) -> torch.Tensor:
    """View `(B, T, ...)` as `(B*T/L, L, ...)` (free); checks that L divides T."""
    b, t = x.shape[:2]
    length = t if segment_len is None else segment_len
    if t % length != 0:
        raise ValueError(
            f"{t} frames is not a multiple of the segment length {length} (input tokens {tuple(x.shape)})"
        )
    return x.view(b * t // length, length, *x.shape[2:])


def temporal_shift(x: torch.Tensor, shift_div: int = 8, segment_len: int | None = None) -> torch.Tensor:
    """TSM's shift of `(B, T, N, D)` tokens: channels `[0, D/div)` from t+1, the next
    `D/div` from t-1, zero padded at the clip (segment) ends; a new tensor."""
    groups = channel_groups(x.shape[-1], 1, "released", shift_div)
    if exporting():
        return shift_channels(_segments(x, segment_len), groups).view(x.shape)
    y = x.clone()
    shift_channels_(_segments(y, segment_len), groups)
    return y


@dataclass(frozen=True)
class ChannelShift:
    """How X-ViT mixes keys and values across time (see `channel_groups`).

    `segment_len=None` means one segment: the whole clip. `mix_queries` mixes the queries
    too (an ablation; the paper mixes keys and values only).
    """

    window: int = 1
    split: str = "released"
    shift_div: int = 8
    segment_len: int | None = None
    mix_queries: bool = False


# --------------------------------------------------------------------------------------------
# The attention product
# --------------------------------------------------------------------------------------------

# On a CPU without AMX, PyTorch's fused SDPA kernel is no faster in bf16/fp16 than in fp32,
# while the plain product (scores, softmax, weighted values) over a few rows at a time runs
# about 2x faster in bf16 for per-frame sequences (197 tokens): docs/benchmarks.md, "bf16
# attention". Used only there and where the score matrix is small; long sequences (joint
# attention) keep the fused kernel. On a CPU with AMX tiles the fused kernel's bf16 path uses
# them and wins (whole bf16 X-ViT-B/16 8x224: 0.90x the chunked product's time).
MATH_MAX_KEYS = 512
MATH_CHUNK_BYTES = 4 << 20  # score-matrix bytes per chunk, so it stays in cache

# Which product `attention` computes (like timm's `set_fused_attn`):
# * "auto": the chunked plain product for bf16/fp16 on a CPU without AMX, with at most
#   `MATH_MAX_KEYS` keys and no dropout, SDPA otherwise (the default);
# * "sdpa": always `torch.nn.functional.scaled_dot_product_attention`;
# * "math": always the chunked plain product, except with attention dropout (SDPA then).
ATTENTION_KERNELS = ("auto", "sdpa", "math")
KERNEL_ENV_VAR = "XVIT_ATTENTION_KERNEL"


def _check_kernel(kernel: object, source: str) -> str:
    if kernel not in ATTENTION_KERNELS:
        raise ValueError(
            f"{source}={kernel!r} is not an attention kernel; choose one of {', '.join(ATTENTION_KERNELS)}"
        )
    return str(kernel)


# None until first read: $XVIT_ATTENTION_KERNEL is checked then, not at import, so that a bad
# value is an error a command can report (the CLI checks it at start-up).
_kernel: str | None = None


def set_attention_kernel(kernel: str) -> None:
    """Pick the attention product for every model in this process: "auto", "sdpa" or "math"
    (see `ATTENTION_KERNELS`; the start value comes from $XVIT_ATTENTION_KERNEL)."""
    global _kernel
    _kernel = _check_kernel(kernel, "attention kernel")


def get_attention_kernel() -> str:
    """The attention product in use: "auto", "sdpa" or "math" (first call: from
    $XVIT_ATTENTION_KERNEL, default "auto"; a bad value raises ``ValueError`` naming it)."""
    global _kernel
    if _kernel is None:
        _kernel = _check_kernel(os.environ.get(KERNEL_ENV_VAR) or "auto", KERNEL_ENV_VAR)
    return _kernel


@contextlib.contextmanager
def attention_kernel(kernel: str) -> Iterator[None]:
    """`set_attention_kernel(kernel)` inside a `with` block; the previous choice after it."""
    previous = get_attention_kernel()
    set_attention_kernel(kernel)
    try:
        yield
    finally:
        set_attention_kernel(previous)


def uses_chunked_product(q: torch.Tensor, k: torch.Tensor, dropout_p: float = 0.0) -> bool:
    """Whether `attention` computes these inputs with the chunked plain product rather than
    SDPA, under the current kernel choice (see `set_attention_kernel`)."""
    kernel = _kernel or get_attention_kernel()
    if dropout_p != 0.0 or kernel == "sdpa":
        return False
    if kernel == "math":
        return True
    return (
        q.device.type == "cpu"
        and q.dtype in (torch.bfloat16, torch.float16)
        and k.shape[-2] <= MATH_MAX_KEYS
        and not cpu_has_amx()
    )


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (Intel Sapphire Rapids and later), where the fused
    SDPA kernel's bf16 path beats the chunked product."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd)) v for `(R, H, Lq, hd)` queries and `(R, H, Lk, hd)` keys."""
    if uses_chunked_product(q, k, dropout_p):
        return chunked_product(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)


def chunked_product(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_bytes: int | None = None
) -> torch.Tensor:
    """The plain product, `chunk_bytes` of scores (default `MATH_CHUNK_BYTES`) at a time."""
    r, h, lq, _ = q.shape
    chunk_bytes = MATH_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    rows = max(1, chunk_bytes // (h * lq * k.shape[-2] * q.element_size()))
    scale = q.shape[-1] ** -0.5
    outs = []
    for i in range(0, r, rows):
        scores = (q[i : i + rows] * scale) @ k[i : i + rows].transpose(-1, -2)  # (r, H, Lq, Lk)
        outs.append(scores.softmax(dim=-1) @ v[i : i + rows])  # (r, H, Lq, hd)
    return outs[0] if len(outs) == 1 else torch.cat(outs)


# --------------------------------------------------------------------------------------------
# Attention modules
# --------------------------------------------------------------------------------------------


class _MultiHeadAttention(nn.Module):
    """Shared parts: `qkv` and `proj` linear layers (timm names) and the attention call."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def split_heads(self, qkv: torch.Tensor) -> list[torch.Tensor]:
        """`(..., L, 3C)` (contiguous) -> q, k, v as strided `(R, H, L, hd)` views."""
        length = qkv.shape[-2]
        qkv = qkv.view(-1, length, 3, self.num_heads, self.head_dim)
        return [qkv[:, :, i].transpose(1, 2) for i in range(3)]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of `(R, H, Lq, hd)` queries on `(R, H, Lk, hd)` keys -> `(R, Lq, C)`."""
        drop = self.attn_drop if self.training else 0.0
        out = attention(q, k, v, dropout_p=drop)
        return out.transpose(1, 2).flatten(2)


class Attention(_MultiHeadAttention):
    """Multi-head self-attention inside each frame of `(B, T, N, D)` tokens.

    * `shift=None`: spatial attention (an image ViT applied per frame).
    * `shift=ChannelShift(...)`: space-time mixing (X-ViT). The `(B, T, N, 3C)` output of
      `qkv` has the channel slices of k and v (and q with `mix_queries`) shifted in time in
      place, on the concatenated-heads axis, then q, k, v are strided views handed to SDPA:
      no extra parameters, no extra FLOPs, no permute/contiguous round trip.
    * `summary_token=True` (X-ViT + ST, needs `shift`): each frame's queries attend their
      own N (mixed) keys/values plus T summary keys/values, one per frame of the clip. The
      summary of frame t is the mean over its S patch tokens (the CLS excluded) of the
      block's normalised input, projected by the same `qkv`; by linearity that is the mean
      of frame t's unmixed patch keys/values, which is how it is computed. The summaries
      span the whole clip, across segment boundaries.
    * `shared_cls=True`: one CLS per clip kept as T identical copies; the CLS outputs are
      averaged over the frames (TimeSformer's spatial attention).

    The positional arguments are those of every attention module here: `dim`, `num_heads`,
    `qkv_bias`, `attn_drop`, `proj_drop`.
    """

    def __init__(
        self,
        dim: int,
        *args: Any,
        shift: ChannelShift | None = None,
        summary_token: bool = False,
        shared_cls: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(dim, *args, **kwargs)
        if summary_token and shift is None:
            raise ValueError("the summary token is part of the mixing attention: give a shift")
        self.shift = shift
        self.summary_token = summary_token
        self.shared_cls = shared_cls
        # the moved channel groups of the concatenated-heads axis, fixed by `dim`
        self.groups = channel_groups(dim, shift.window, shift.split, shift.shift_div) if shift else []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, n, c = x.shape
        qkv = self.qkv(x)  # (B, T, N, 3C)
        if self.summary_token:
            # (B, T, 2C): per-frame mean of the unmixed patch keys and values
            summary = qkv[:, :, 1:, c:].mean(dim=2)
        if self.shift is not None and exporting():
            # out of place (see `shift_channels`): the groups of k, v (and q) on the 3C axis
            first = 0 if self.shift.mix_queries else 1
            flat = [(j * c + s, j * c + e, o) for j in range(first, 3) for s, e, o in self.groups]
            qkv = shift_channels(_segments(qkv, self.shift.segment_len), flat).view(b, t, n, 3 * c)
        elif self.shift is not None:
            parts = _segments(qkv, self.shift.segment_len)  # (B*T/L, L, N, 3C), a view
            parts = parts.view(*parts.shape[:3], 3, c)
            moving = parts if self.shift.mix_queries else parts[:, :, :, 1:]  # q? k, v
            shift_channels_(moving, self.groups)
        q, k, v = self.split_heads(qkv)  # (B*T, H, N, hd)
        if self.summary_token:
            # every frame also attends the T summary tokens of its clip: (B*T, H, T, hd)
            kv = summary.view(b, 1, t, 2, self.num_heads, self.head_dim)
            kv = kv.expand(b, t, -1, -1, -1, -1).flatten(0, 1)  # (B*T, T, 2, H, hd)
            k = torch.cat([k, kv[:, :, 0].transpose(1, 2)], dim=2)
            v = torch.cat([v, kv[:, :, 1].transpose(1, 2)], dim=2)
        out = self.proj(self.attend(q, k, v).view(b, t, n, c))
        if self.shared_cls:
            cls = out[:, :, :1].mean(dim=1, keepdim=True).expand(b, t, 1, c)
            out = torch.cat([cls, out[:, :, 1:]], dim=2)
        return self.proj_drop(out)


class TemporalAttention(_MultiHeadAttention):
    """Attention over the T frames at each spatial position, on patch tokens `(B, T, S, D)`
    (TimeSformer's temporal attention; parameter names `qkv`, `proj`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, s, c = x.shape
        qkv = self.qkv(x.transpose(1, 2))  # (B, S, T, 3C), contiguous
        out = self.proj(self.attend(*self.split_heads(qkv)).view(b, s, t, c))
        return self.proj_drop(out.transpose(1, 2))


class JointAttention(_MultiHeadAttention):
    """Full attention over one clip: the CLS (taken once from the T identical copies) and all
    T*S patch tokens, 1 + T*S keys (ViViT model 1). The CLS result is written to all T
    copies."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, n, c = x.shape
        tokens = torch.cat([x[:, 0, :1], x[:, :, 1:].flatten(1, 2)], dim=1)  # (B, 1+T*S, C)
        out = self.proj(self.attend(*self.split_heads(self.qkv(tokens))))
        cls = out[:, None, :1].expand(b, t, 1, c)
        out = torch.cat([cls, out[:, 1:].view(b, t, n - 1, c)], dim=2)
        return self.proj_drop(out)
