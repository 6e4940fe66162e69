"""Attention variants against slow explicit references: the mixing attention builds every
query frame's key/value set channel by channel; the summary token, TSM shift, joint and
divided attention are computed by hand with loops and boolean masks."""

from __future__ import annotations

import math

import pytest
import torch
from _model_helpers import randomise
from torch import nn

from xvit.models.attention import (
    Attention,
    ChannelShift,
    JointAttention,
    channel_groups,
    temporal_shift,
)
from xvit.models.blocks import DividedBlock, TSMBlock
from xvit.models.video_vit import VideoViT, VideoViTConfig

B, T, S, DIM, HEADS = 2, 6, 4, 48, 4
N = 1 + S


# --------------------------------------------------------------------------------------------
# Slow references
# --------------------------------------------------------------------------------------------


def offsets_by_channel(channels: int, window: int, split: str, shift_div: int) -> list[int]:
    """From the description, one channel at a time: the frame offset channel c is read from."""
    offsets = [0] * channels
    if split == "released":
        # fold channels from t+1, then fold from t-1 (then t+2, t-2, ...); the rest from t
        fold = channels // shift_div
        order = [o for i in range(1, window + 1) for o in (i, -i)]
        for c in range(channels):
            if c // fold < len(order):
                offsets[c] = order[c // fold]
    else:
        # 2w+1 consecutive groups, group j from t + j - w; the remainder goes to the centre
        n = 2 * window + 1
        sizes = [channels // n] * n
        sizes[window] += channels % n
        c = 0
        for j, size in enumerate(sizes):
            for _ in range(size):
                offsets[c] = j - window
                c += 1
    return offsets


def mix_by_hand(x: torch.Tensor, offsets: list[int], segment_len: int | None) -> torch.Tensor:
    """(B, T, N, C): channel c of frame t taken from frame t + offsets[c] of the same
    segment, zero when that frame is outside the segment."""
    t_len = x.shape[1]
    seg = segment_len or t_len
    out = torch.zeros_like(x)
    for t in range(t_len):
        for c, off in enumerate(offsets):
            src = t + off
            if 0 <= src < t_len and src // seg == t // seg:
                out[:, t, :, c] = x[:, src, :, c]
    return out


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Explicit multi-head softmax attention of (..., Lq, C) queries on (..., Lk, C)."""
    hd = q.shape[-1] // heads
    outs = []
    for h in range(heads):
        sl = slice(h * hd, (h + 1) * hd)
        scores = q[..., sl] @ k[..., sl].transpose(-1, -2) / math.sqrt(hd)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        outs.append(scores.softmax(-1) @ v[..., sl])
    return torch.cat(outs, dim=-1)


def mixing_attention_by_hand(
    x: torch.Tensor,
    attn: Attention,
    window: int,
    split: str,
    shift_div: int,
    segment_len: int | None,
    mix_queries: bool,
    summary: bool = False,
) -> torch.Tensor:
    c = x.shape[-1]
    w, b = attn.qkv.weight, attn.qkv.bias
    q, k, v = (x @ w[i * c : (i + 1) * c].T + b[i * c : (i + 1) * c] for i in range(3))
    offsets = offsets_by_channel(c, window, split, shift_div)
    km, vm = mix_by_hand(k, offsets, segment_len), mix_by_hand(v, offsets, segment_len)
    qm = mix_by_hand(q, offsets, segment_len) if mix_queries else q
    if summary:  # per frame: mean over the S patch tokens of the projected input
        t_len, n = x.shape[1], x.shape[2]
        sk = torch.stack(
            [
                sum(x[:, t, s] @ w[c : 2 * c].T + b[c : 2 * c] for s in range(1, n)) / (n - 1)
                for t in range(t_len)
            ],
            1,
        )
        sv = torch.stack(
            [
                sum(x[:, t, s] @ w[2 * c :].T + b[2 * c :] for s in range(1, n)) / (n - 1)
                for t in range(t_len)
            ],
            1,
        )
    out = torch.zeros_like(x)
    for t in range(x.shape[1]):
        keys, values = km[:, t], vm[:, t]
        if summary:
            keys, values = torch.cat([keys, sk], 1), torch.cat([values, sv], 1)
        out[:, t] = attend(qm[:, t], keys, values, attn.num_heads)
    return attn.proj(out)


# --------------------------------------------------------------------------------------------
# Mixing and summary token
# --------------------------------------------------------------------------------------------


def test_channel_groups_released_split_matches_the_released_code():
    # fold = 64 // 8 = 8: channels [0, 8) from t+1, [8, 16) from t-1, the rest unmoved
    assert channel_groups(64, 1, "released", 8) == [(0, 8, 1), (8, 16, -1)]
    # even split of 64 channels over 3 frames: 21 / 22 (centre, gets the remainder) / 21
    assert channel_groups(64, 1, "even") == [(0, 21, -1), (43, 64, 1)]


@pytest.mark.parametrize(
    "window,split,shift_div,segment_len,mix_queries",
    [
        (1, "released", 8, None, False),
        (1, "released", 4, 3, False),
        (2, "released", 8, None, False),
        (1, "even", 8, None, False),
        (2, "even", 8, 3, False),
        (1, "even", 8, 2, True),
        (1, "released", 8, None, True),
    ],
)
def test_mixing_attention_equals_channel_by_channel_reference(
    window, split, shift_div, segment_len, mix_queries
):
    torch.manual_seed(0)
    shift = ChannelShift(window, split, shift_div, segment_len, mix_queries)
    attn = Attention(DIM, HEADS, shift=shift).eval()
    randomise(attn)
    x = torch.randn(B, T, N, DIM)
    with torch.no_grad():
        ours = attn(x)
        ref = mixing_attention_by_hand(x, attn, window, split, shift_div, segment_len, mix_queries)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_mixing_attention_gradients_equal_reference():
    """The in-place channel moves on the qkv output are differentiable."""
    torch.manual_seed(1)
    attn = Attention(DIM, HEADS, shift=ChannelShift(1, "released", 8, 3)).train()
    randomise(attn, seed=1)
    x = torch.randn(B, T, N, DIM, requires_grad=True)
    target = torch.randn(B, T, N, DIM)
    (attn(x) * target).sum().backward()
    ours = (x.grad.clone(), attn.qkv.weight.grad.clone())
    x.grad = None
    attn.zero_grad()
    (mixing_attention_by_hand(x, attn, 1, "released", 8, 3, False) * target).sum().backward()
    torch.testing.assert_close(ours[0], x.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[1], attn.qkv.weight.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("split,segment_len", [("released", None), ("even", 3)])
def test_summary_token_attention_equals_hand_computation(split, segment_len):
    torch.manual_seed(2)
    attn = Attention(DIM, HEADS, shift=ChannelShift(1, split, 8, segment_len), summary_token=True).eval()
    randomise(attn, seed=2)
    x = torch.randn(B, T, N, DIM)
    with torch.no_grad():
        ours = attn(x)
        ref = mixing_attention_by_hand(x, attn, 1, split, 8, segment_len, False, summary=True)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("segment_len", [None, 3])
def test_tsm_shift_equals_hand_built_tensor(segment_len):
    x = torch.randn(B, T, N, 64)
    fold = 64 // 8
    seg = segment_len or T
    ref = x.clone()
    for t in range(T):
        nxt, prv = t + 1, t - 1
        ref[:, t, :, :fold] = x[:, nxt, :, :fold] if nxt < T and nxt // seg == t // seg else 0
        ref[:, t, :, fold : 2 * fold] = (
            x[:, prv, :, fold : 2 * fold] if prv >= 0 and prv // seg == t // seg else 0
        )
    before = x.clone()
    out = temporal_shift(x, 8, segment_len)
    assert torch.equal(out, ref)
    assert torch.equal(x, before), "the shift must not modify its input"


def test_tsm_block_uses_the_shifted_input_in_the_residual():
    """Y = SHIFT(Z); Y' = MSA(LN(Y)) + Y; Z' = MLP(LN(Y')) + Y' (the seed's equations 1-3)."""
    torch.manual_seed(3)
    shift = ChannelShift(1, "released", 8)
    block = TSMBlock(DIM, HEADS, shift=shift).eval()
    randomise(block, seed=3)
    z = torch.randn(B, T, N, DIM)
    with torch.no_grad():
        y = temporal_shift(z, 8)
        y1 = block.attn(block.norm1(y)) + y
        ref = block.mlp(block.norm2(y1)) + y1
        torch.testing.assert_close(block(z), ref)


# --------------------------------------------------------------------------------------------
# Joint and divided space-time attention, with explicit masks over the 1 + T*S tokens
# --------------------------------------------------------------------------------------------


def clip_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, T, N, D) with T identical CLS copies -> (B, 1 + T*S, D): CLS, then frame by frame."""
    return torch.cat([x[:, 0, :1], x[:, :, 1:].flatten(1, 2)], dim=1)


def project(x: torch.Tensor, qkv: nn.Linear) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return qkv(x).chunk(3, dim=-1)


def test_joint_attention_equals_full_masked_attention():
    torch.manual_seed(4)
    attn = JointAttention(DIM, HEADS).eval()
    randomise(attn, seed=4)
    x = torch.randn(B, T, N, DIM)
    x[:, 1:, 0] = x[:, :1, 0]  # one CLS per clip, as T copies
    tokens = clip_tokens(x)
    mask = torch.ones(1 + T * S, 1 + T * S, dtype=torch.bool)  # everything sees everything
    with torch.no_grad():
        ref = attn.proj(attend(*project(tokens, attn.qkv), HEADS, mask))
        ours = attn(x)
    torch.testing.assert_close(clip_tokens(ours), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[:, :, 0], ref[:, :1].expand(B, T, DIM), atol=1e-5, rtol=1e-5)


def test_divided_block_equals_masked_attention_reference():
    torch.manual_seed(5)
    block = DividedBlock(DIM, HEADS).eval()
    randomise(block, seed=5)
    x = torch.randn(B, T, N, DIM)
    x[:, 1:, 0] = x[:, :1, 0]
    tokens = clip_tokens(x)  # (B, 1 + T*S, D)
    frame = torch.tensor([-1] + [t for t in range(T) for _ in range(S)])  # -1: the CLS
    pos = torch.tensor([-1] + [s for _ in range(T) for s in range(S)])
    with torch.no_grad():
        # temporal attention: a patch sees the patches at its spatial position (CLS left out)
        patches = tokens[:, 1:]
        same_pos = pos[1:, None] == pos[None, 1:]
        t_attn = block.temporal_attn
        res = t_attn.proj(attend(*project(block.temporal_norm1(patches), t_attn.qkv), HEADS, same_pos))
        tokens = torch.cat([tokens[:, :1], patches + block.temporal_fc(res)], dim=1)
        # spatial attention: a patch sees the CLS and its own frame; the CLS result is the
        # mean over frames t of the CLS attending the CLS and frame t
        q, k, v = project(block.norm1(tokens), block.attn.qkv)
        own_frame = (frame[:, None] == frame[None, :]) | (frame[None, :] == -1)
        spatial = attend(q, k, v, HEADS, own_frame)
        cls = torch.stack(
            [attend(q[:, :1], k, v, HEADS, (frame == -1) | (frame == t)) for t in range(T)]
        ).mean(0)
        spatial = block.attn.proj(torch.cat([cls, spatial[:, 1:]], dim=1))
        tokens = tokens + spatial
        ref = tokens + block.mlp(block.norm2(tokens))
        ours = block(x)
    torch.testing.assert_close(clip_tokens(ours), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[:, :, 0], ref[:, :1].expand(B, T, DIM), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# Locality of the mixing: the temporal receptive field grows by w per mixing layer
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "depth,window,mix_layers,segment_len,reach",
    [(2, 1, None, None, 2), (1, 2, None, None, 2), (3, 1, [0, 2], None, 2), (2, 1, None, 4, 2)],
)
def test_mixing_locality(depth, window, mix_layers, segment_len, reach):
    torch.manual_seed(6)
    t_len, j = 8, 3
    config = VideoViTConfig(
        embed_dim=32,
        depth=depth,
        num_heads=2,
        img_size=16,
        patch_size=8,
        num_frames=t_len,
        num_classes=3,
        attention="mixing",
        mix_window=window,
        mix_layers=mix_layers,
        segment_len=segment_len,
        head="avg",
    )
    model = VideoViT(config).eval()
    randomise(model, seed=6)
    video = torch.randn(1, 3, t_len, 16, 16)
    other = video.clone()
    other[:, :, j] += torch.randn(3, 16, 16)
    with torch.no_grad():
        diff = (model.forward_features(video) - model.forward_features(other)).abs().amax(-1)[0]
    seg = segment_len or t_len
    for t in range(t_len):
        reachable = abs(t - j) <= reach and t // seg == j // seg
        if reachable:
            assert diff[t] > 1e-4, f"frame {t} should see frame {j}"
        else:
            assert diff[t] < 1e-6, f"frame {t} must not see frame {j} (diff {diff[t]})"


# --------------------------------------------------------------------------------------------
# The attention product: the CPU bf16 path (plain product, in chunks) against float64
# --------------------------------------------------------------------------------------------


def _reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    q, k, v = (a.double() for a in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_short_reduced_precision_attention_takes_the_chunked_product(monkeypatch, dtype):
    import xvit.models.attention as attn

    monkeypatch.setattr(attn, "cpu_has_amx", lambda: False)  # with AMX, "auto" takes SDPA
    # a chunk of 3 rows: 7 rows of (4 heads x 9 x 11) scores split as 3 + 3 + 1
    monkeypatch.setattr(attn, "MATH_CHUNK_BYTES", 3 * 4 * 9 * 11 * torch.finfo(dtype).bits // 8)
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(7, 4, n, 16, generator=gen) for n in (9, 11, 11))
    calls = []
    monkeypatch.setattr(attn.F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(a))
    out = attn.attention(q.to(dtype), k.to(dtype), v.to(dtype))
    assert not calls and out.dtype == dtype and out.shape == (7, 4, 9, 16)
    torch.testing.assert_close(out.double(), _reference_attention(q, k, v), atol=3e-2, rtol=3e-2)


def test_fp32_dropout_and_long_sequences_keep_the_fused_kernel(monkeypatch):
    import xvit.models.attention as attn

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=gen) for _ in range(3))
    torch.testing.assert_close(
        attn.attention(q, k, v).double(), _reference_attention(q, k, v), atol=1e-5, rtol=1e-5
    )
    seen = []
    real = attn.F.scaled_dot_product_attention
    monkeypatch.setattr(
        attn.F, "scaled_dot_product_attention", lambda *a, **kw: seen.append(a[0].dtype) or real(*a, **kw)
    )
    attn.attention(q, k, v)  # fp32
    attn.attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), dropout_p=0.5)  # dropout
    long_k = torch.randn(1, 1, attn.MATH_MAX_KEYS + 1, 8, dtype=torch.bfloat16)
    attn.attention(q[:1, :1].bfloat16(), long_k, long_k)  # long key sequence
    assert seen == [torch.float32, torch.bfloat16, torch.bfloat16]


# --------------------------------------------------------------------------------------------
# The kernel switch: set_attention_kernel / attention_kernel / $XVIT_ATTENTION_KERNEL
# --------------------------------------------------------------------------------------------


def _spy_sdpa(monkeypatch, attn) -> list[torch.dtype]:
    """Record every SDPA call (its dtype) and still compute it."""
    seen: list[torch.dtype] = []
    real = attn.F.scaled_dot_product_attention
    monkeypatch.setattr(
        attn.F, "scaled_dot_product_attention", lambda *a, **kw: seen.append(a[0].dtype) or real(*a, **kw)
    )
    return seen


@pytest.mark.parametrize(
    ("kernel", "dtype", "keys", "dropout", "amx", "uses_sdpa"),
    [
        ("auto", torch.bfloat16, 11, 0.0, False, False),  # short bf16, CPU without AMX: chunked
        ("auto", torch.bfloat16, 11, 0.0, True, True),  # the same with AMX tiles: the fused kernel
        ("auto", torch.float16, 11, 0.0, False, False),
        ("auto", torch.float32, 11, 0.0, False, True),
        ("auto", torch.bfloat16, 600, 0.0, False, True),  # more than MATH_MAX_KEYS keys
        ("sdpa", torch.bfloat16, 11, 0.0, False, True),
        ("sdpa", torch.float16, 11, 0.0, False, True),
        ("math", torch.float32, 11, 0.0, True, False),
        ("math", torch.float64, 600, 0.0, False, False),
        ("math", torch.bfloat16, 11, 0.5, False, True),  # dropout: only SDPA has it
        ("auto", torch.bfloat16, 11, 0.5, False, True),
    ],
)
def test_attention_kernel_picks_the_expected_product(
    monkeypatch, kernel, dtype, keys, dropout, amx, uses_sdpa
):
    import xvit.models.attention as attn

    monkeypatch.setattr(attn, "cpu_has_amx", lambda: amx)

    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 2, 9, 8, generator=gen, dtype=dtype)
    k, v = (torch.randn(3, 2, keys, 8, generator=gen, dtype=dtype) for _ in range(2))
    seen = _spy_sdpa(monkeypatch, attn)
    with attn.attention_kernel(kernel):
        assert attn.get_attention_kernel() == kernel
        assert attn.uses_chunked_product(q, k, dropout) is not uses_sdpa
        out = attn.attention(q, k, v, dropout_p=dropout)
    assert seen == ([dtype] if uses_sdpa else [])
    assert out.shape == (3, 2, 9, 8) and out.dtype == dtype


def test_cpu_has_amx_follows_torchs_probe(monkeypatch):
    import xvit.models.attention as attn

    for value in (True, False):
        attn.cpu_has_amx.cache_clear()
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda value=value: value)
        assert attn.cpu_has_amx() is value
    attn.cpu_has_amx.cache_clear()
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert attn.cpu_has_amx() is False  # a torch without the probe: the no-AMX rule
    attn.cpu_has_amx.cache_clear()


@pytest.mark.parametrize("kernel", ["auto", "sdpa", "math"])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_every_attention_kernel_matches_the_float64_reference(kernel, dtype, tol):
    import xvit.models.attention as attn

    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(5, 3, n, 16, generator=gen) for n in (7, 13, 13))
    with attn.attention_kernel(kernel):
        out = attn.attention(q.to(dtype), k.to(dtype), v.to(dtype))
    torch.testing.assert_close(out.double(), _reference_attention(q, k, v), atol=tol, rtol=tol)


def test_whole_model_agrees_across_attention_kernels():
    """X-ViT and joint attention (long sequences) in fp32: every kernel gives the same logits."""
    import xvit.models.attention as attn

    for attention in ("mixing", "joint"):
        cfg = VideoViTConfig(
            img_size=32,
            patch_size=8,
            num_frames=4,
            embed_dim=48,
            depth=2,
            num_heads=4,
            num_classes=5,
            attention=attention,
            head="ta",
        )
        torch.manual_seed(0)
        model = VideoViT(cfg).eval()
        randomise(model)
        x = torch.randn(2, 3, 4, 32, 32)
        with torch.inference_mode():
            outs = {}
            for kernel in attn.ATTENTION_KERNELS:
                with attn.attention_kernel(kernel):
                    outs[kernel] = model(x)
        torch.testing.assert_close(outs["math"], outs["sdpa"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(outs["auto"], outs["sdpa"], atol=1e-4, rtol=1e-4)


def test_attention_kernel_switch_restores_and_refuses_bad_values():
    import xvit.models.attention as attn

    before = attn.get_attention_kernel()
    with pytest.raises(RuntimeError, match="inside"), attn.attention_kernel("math"):
        assert attn.get_attention_kernel() == "math"
        raise RuntimeError("inside")
    assert attn.get_attention_kernel() == before
    with pytest.raises(ValueError, match=r"'fused'.*auto, sdpa, math"):
        attn.set_attention_kernel("fused")
    with pytest.raises(ValueError, match="'MATH'"), attn.attention_kernel("MATH"):
        pass
    assert attn.get_attention_kernel() == before
    attn.set_attention_kernel("sdpa")
    try:
        assert attn.get_attention_kernel() == "sdpa"
    finally:
        attn.set_attention_kernel(before)


def test_attention_kernel_environment_variable(tmp_path):
    import os
    import subprocess
    import sys

    code = (
        "import torch, xvit.models.attention as a; q = torch.ones(1, 1, 2, 4); "
        "print(a.get_attention_kernel(), a.uses_chunked_product(q, q))"
    )

    def run(value: str | None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "XVIT_ATTENTION_KERNEL"}
        if value is not None:
            env["XVIT_ATTENTION_KERNEL"] = value
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120
        )

    assert run(None).stdout.split() == ["auto", "False"]  # fp32: SDPA
    assert run("math").stdout.split() == ["math", "True"]
    assert run("sdpa").stdout.split() == ["sdpa", "False"]
    bad = run("fast")
    assert bad.returncode != 0 and bad.stdout == ""
    assert "XVIT_ATTENTION_KERNEL='fast' is not an attention kernel" in bad.stderr
    assert "auto, sdpa, math" in bad.stderr


def test_bf16_mixing_model_agrees_with_fp32():
    """The whole X-ViT in bf16 (chunked product) stays close to the fp32 model (SDPA)."""
    cfg = VideoViTConfig(
        img_size=32,
        patch_size=8,
        num_frames=4,
        embed_dim=48,
        depth=2,
        num_heads=4,
        num_classes=5,
        attention="mixing",
        head="ta",
    )
    torch.manual_seed(0)
    model = VideoViT(cfg).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.inference_mode():
        ref = model.forward_features(x)
        low = model.to(torch.bfloat16).forward_features(x.bfloat16()).float()
    assert (low - ref).abs().max() < 0.1 * ref.abs().max()


def test_bad_attention_kernel_variable_is_a_one_line_cli_error(monkeypatch, capsys):
    from xvit.cli.main import main
    from xvit.models import attention as attn

    monkeypatch.setenv("XVIT_ATTENTION_KERNEL", "fast")
    monkeypatch.setattr(attn, "_kernel", None)  # as in a new process: the variable is read once
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "xvit models: error: XVIT_ATTENTION_KERNEL='fast' is not an attention kernel; "
        "choose one of auto, sdpa, math\n"
    )
