"""Model API: parameter and FLOP counts against formulas, heads against hand computations,
the registry, the config round trip, the temporal embedding, and clear errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from _model_helpers import randomise

import xvit
from xvit.models import VideoViT, VideoViTConfig
from xvit.models.layers import resize_temp_embed

TINY = dict(embed_dim=32, depth=1, num_heads=2, patch_size=8)


def tiny(name: str, frames: int = 4, img: int = 16, classes: int = 5, **kw) -> VideoViT:
    return xvit.create_model(
        name, num_classes=classes, num_frames=frames, img_size=img, **{**TINY, **kw}
    ).eval()


def meta_model(name: str, **kw) -> VideoViT:
    with torch.device("meta"):
        return xvit.create_model(name, **kw)


# --------------------------------------------------------------------------------------------
# Parameters and FLOPs
# --------------------------------------------------------------------------------------------


def test_vit_base_parameter_count_matches_timm():
    # timm's vit_base_patch16_224 has 86,567,656 parameters with its 1000-class head;
    # ours adds the temporal embedding (8 x 768) and has a 400-class head instead
    timm_backbone = 86_567_656 - (768 * 1000 + 1000)
    model = meta_model("vit_base_patch16", num_classes=400, num_frames=8)
    assert xvit.count_params(model) == timm_backbone + 8 * 768 + (768 * 400 + 400)


@pytest.mark.parametrize("head", ["avg", "linear", "ta"])
def test_xvit_has_exactly_the_parameters_and_flops_of_spatial_vit(head):
    """Mixing adds no parameter (both models have the temporal embedding) and no FLOP."""
    vit = meta_model("vit_base_patch16", num_frames=8, head=head)
    for name in ("xvit_base_patch16", "xvit_st_base_patch16", "tsm_vit_base_patch16"):
        other = meta_model(name, num_frames=8, head=head)
        assert xvit.count_params(other) == xvit.count_params(vit)
        assert {k: v.shape for k, v in other.state_dict().items()} == {
            k: v.shape for k, v in vit.state_dict().items()
        }
    vit_flops = xvit.count_flops(vit, (1, 3, 8, 224, 224))
    assert xvit.count_flops(meta_model("xvit_base_patch16", num_frames=8, head=head)) == vit_flops
    # the summary token adds T keys/values per frame: well under 1%
    st = xvit.count_flops(meta_model("xvit_st_base_patch16", num_frames=8, head=head))
    assert vit_flops < st < 1.01 * vit_flops


def backbone_flops(kind: str, t: int, img: int, d: int, depth: int, p: int = 16) -> int:
    """Hand formula (multiply-add = 2 FLOPs) of the backbone plus a linear head on 400 classes.
    Every layer's MLP runs on T*(1+S) tokens (the T CLS copies included)."""
    s = (img // p) ** 2
    n = 1 + s
    patch = 2 * t * s * d * 3 * p * p
    mlp = 2 * t * n * d * 4 * d * 2
    spatial = 2 * t * n * d * 3 * d + 4 * t * n * n * d + 2 * t * n * d * d
    if kind == "spatial":
        layer = spatial + mlp
    elif kind == "joint":
        m = 1 + t * s
        layer = 2 * m * d * 3 * d + 4 * m * m * d + 2 * m * d * d + mlp
    elif kind == "divided":
        temporal = 2 * t * s * d * 3 * d + 4 * s * t * t * d + 2 * t * s * d * d + 2 * t * s * d * d
        layer = temporal + spatial + mlp
    return patch + depth * layer + 2 * d * 400


@pytest.mark.parametrize(
    "name,kind",
    [
        ("vit_base_patch16", "spatial"),
        ("timesformer_base_patch16", "divided"),
        ("joint_vit_base_patch16", "joint"),
    ],
)
def test_flops_match_formulas_at_vit_base_8x224(name, kind):
    model = meta_model(name, num_frames=8, head="linear")
    assert xvit.count_flops(model) == backbone_flops(kind, 8, 224, 768, 12)


def test_attention_flops_are_counted_on_cpu():
    """The fused CPU attention kernel has no FLOP formula; counting must still include the
    4*T*N^2*D attention products."""
    model = tiny("vit_tiny_patch16", frames=2, img=32, classes=400, head="linear")
    s, n, d = 16, 17, 32
    expected = backbone_flops("spatial", 2, 32, d, 1, p=8)
    assert xvit.count_flops(model, (1, 3, 2, 32, 32)) == expected
    assert 4 * 2 * n * n * d < expected  # the attention term is part of it
    assert xvit.count_params(model, trainable_only=True) == xvit.count_params(model)
    model.pos_embed.requires_grad_(False)
    assert xvit.count_params(model, trainable_only=True) == xvit.count_params(model) - (1 + s) * d


# --------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------


def test_avg_and_linear_heads_by_hand():
    feats = torch.randn(3, 4, 32)
    avg = tiny("vit_tiny_patch16", head="avg").head
    lin = tiny("vit_tiny_patch16", head="linear").head
    w, b = avg.fc.weight, avg.fc.bias
    per_frame = [feats[:, t] @ w.T + b for t in range(4)]
    torch.testing.assert_close(avg(feats), sum(per_frame) / 4)
    w, b = lin.fc.weight, lin.fc.bias
    torch.testing.assert_close(lin(feats), feats.mean(1) @ w.T + b)


@pytest.mark.parametrize("head_cls", ["token", "mean"])
def test_temporal_attention_head_released_layout_and_hand_computation(head_cls):
    """The released head (the CLS enters as its token, the MLP classifier) and the default
    CLS input (token plus the mean of the frame features), by hand; the same parameters
    either way."""
    model = tiny("xvit_tiny_patch16", head_cls=head_cls, head_classifier="mlp")
    randomise(model)
    names = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("head.")}
    assert names["head.cls_token"] == (1, 1, 32)
    assert "head.blocks.0.attn.qkv.weight" in names and "head.blocks.0.attn.qkv.bias" not in names
    assert {k for k in names if k.startswith("head.mlp_head")} == {
        f"head.mlp_head.{i}.{p}" for i in (0, 1, 4) for p in ("weight", "bias")
    }
    head = model.head
    blk = head.blocks[0]
    assert blk.norm1.eps == 1e-5 and head.mlp_head[0].eps == 1e-5
    feats = torch.randn(2, 4, 32)
    with torch.no_grad():
        cls = head.cls_token.expand(2, 1, 32) + (feats.mean(1, keepdim=True) if head_cls == "mean" else 0)
        x = torch.cat([cls, feats], 1)  # (B, 1+T, D)
        h = F.layer_norm(x, (32,), blk.norm1.weight, blk.norm1.bias, 1e-5)
        q, k, v = (h @ blk.attn.qkv.weight.T).chunk(3, -1)
        heads = []
        for i in range(2):
            sl = slice(16 * i, 16 * (i + 1))
            a = (q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(16)).softmax(-1)
            heads.append(a @ v[..., sl])
        x = x + blk.attn.proj(torch.cat(heads, -1))
        h = F.layer_norm(x, (32,), blk.norm2.weight, blk.norm2.bias, 1e-5)
        x = x + blk.mlp.fc2(F.gelu(blk.mlp.fc1(h)))
        m = head.mlp_head
        cls = F.layer_norm(x[:, 0], (32,), m[0].weight, m[0].bias, 1e-5)
        ref = m[4](F.gelu(m[1](cls)))
        torch.testing.assert_close(head(feats), ref, atol=1e-5, rtol=1e-5)


def test_temporal_attention_head_default_classifier_by_hand():
    """The default head: the CLS enters as the token plus the frames' mean, one block, then
    LayerNorm and one linear layer (no MLP: `head_classifier="linear"`)."""
    model = tiny("xvit_tiny_patch16")
    assert model.config.head_cls == "mean" and model.config.head_classifier == "linear"
    randomise(model)
    head = model.head
    assert not any(k.startswith("head.mlp_head") for k in model.state_dict())
    feats = torch.randn(2, 4, 32)
    with torch.no_grad():
        x = torch.cat([head.cls_token.expand(2, 1, 32) + feats.mean(1, keepdim=True), feats], 1)
        x = head.blocks[0](x.unsqueeze(1))[:, 0]
        ref = head.fc(F.layer_norm(x[:, 0], (32,), head.norm.weight, head.norm.bias, 1e-5))
        torch.testing.assert_close(head(feats), ref, atol=1e-5, rtol=1e-5)


def test_vivit_factorised_encoder_head():
    model = tiny("vivit_fe_tiny_patch16")
    assert len(model.head.blocks) == 4
    keys = set(model.state_dict())
    assert {"head.pos_embed", "head.norm.weight", "head.fc.weight"} <= keys
    assert not any(k.startswith("head.mlp_head") for k in keys)
    assert model.no_weight_decay() == {
        "pos_embed",
        "cls_token",
        "temp_embed",
        "head.cls_token",
        "head.pos_embed",
    }
    with pytest.raises(ValueError, match="vivit_fe_tiny_patch16 supports head 'ta'"):
        xvit.create_model("vivit_fe_tiny_patch16", head="avg")


# --------------------------------------------------------------------------------------------
# Every model runs forward and backward
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "family", ["vit", "xvit", "xvit_st", "tsm_vit", "timesformer", "joint_vit", "vivit_fe"]
)
def test_every_family_forward_backward(family):
    model = tiny(f"{family}_tiny_patch16", frames=4, drop_path_rate=0.1, head_drop_rate=0.5)
    model.train()
    video = torch.randn(2, 3, 4, 16, 16)
    logits = model(video)
    assert logits.shape == (2, 5)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model.config.name == f"{family}_tiny_patch16"


def test_gradient_checkpointing_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    model = tiny("xvit_tiny_patch16", depth=2).train()
    randomise(model)
    video = torch.randn(2, 3, 4, 16, 16)
    model(video).square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(video).square().sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], msg=n)


def test_temporal_embedding_tile_and_interpolate():
    a, b = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    te = torch.cat([a, b], 1)
    torch.testing.assert_close(resize_temp_embed(te, 4, "tile"), torch.cat([a, b, a, b], 1))
    # linear, align_corners=False: 3 samples of 2 entries at -1/6, 1/2, 7/6 (clamped)
    torch.testing.assert_close(resize_temp_embed(te, 3, "interpolate"), torch.cat([a, (a + b) / 2, b], 1))
    # the released X-ViT K600 model: 8 entries, 16 frames, segments of 8
    model = tiny("xvit_tiny_patch16", frames=16, temp_embed_frames=8, temp_embed_mode="tile", segment_len=8)
    assert model.temp_embed.shape == (1, 8, 1, 32)
    assert model(torch.randn(1, 3, 16, 16, 16)).shape == (1, 5)


# --------------------------------------------------------------------------------------------
# Registry and config
# --------------------------------------------------------------------------------------------


def test_list_models_and_names():
    names = xvit.list_models()
    families = ["vit", "xvit", "xvit_st", "tsm_vit", "timesformer", "joint_vit", "vivit_fe"]
    expected = {f"{f}_{s}_patch16" for f in families for s in ("tiny", "small", "base", "large")}
    assert set(names) == expected
    assert xvit.list_models("xvit_st_*") == [
        f"xvit_st_{s}_patch16" for s in ("base", "large", "small", "tiny")
    ]
    model = meta_model("xvit_large_patch16")
    c = model.config
    assert (c.embed_dim, c.depth, c.num_heads, c.attention, c.head) == (1024, 24, 16, "mixing", "ta")


def test_create_model_overrides_and_config_json_round_trip():
    model = tiny("xvit_tiny_patch16", mix_split="even", class_names=list("abcde"))
    c = model.config
    assert c.mix_split == "even" and c.num_frames == 4 and c.img_size == 16
    text = json.dumps(c.to_dict())
    again = VideoViTConfig.from_dict(json.loads(text))
    assert again == c
    assert again.mean == (0.5, 0.5, 0.5) and again.class_names == list("abcde")


def test_unknown_model_name_lists_close_matches():
    with pytest.raises(ValueError, match="xvit_base_patch16"):
        xvit.create_model("xvit_bse_patch16")


def test_unknown_override_is_a_type_error_with_suggestions():
    with pytest.raises(TypeError, match="mix_window"):
        xvit.create_model("xvit_tiny_patch16", mix_windw=2)


def test_from_dict_rejects_unknown_keys_and_bad_values():
    d = VideoViTConfig().to_dict()
    with pytest.raises(ValueError, match="unknown VideoViTConfig keys \\['bogus'\\]"):
        VideoViTConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ValueError, match="attention='sparse'"):
        VideoViTConfig(attention="sparse")
    with pytest.raises(ValueError, match="img_size 230 is not divisible by patch_size 16"):
        VideoViTConfig(img_size=230)
    with pytest.raises(ValueError, match="mix_layers \\[12\\]"):
        VideoViTConfig(mix_layers=[12])


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,message",
    [
        ((3, 4, 16, 16), "got a tensor of shape \\(3, 4, 16, 16\\)"),
        ((1, 4, 4, 16, 16), "input \\(1, 4, 4, 16, 16\\) has 4 channels"),
        ((1, 3, 4, 18, 16), "H=18 and W=16 must be multiples of the patch size 8"),
    ],
)
def test_bad_input_shapes(shape, message):
    model = tiny("vit_tiny_patch16")
    with pytest.raises(ValueError, match=message):
        model(torch.randn(shape))


def test_frames_not_divisible_by_segment_length():
    model = tiny("xvit_tiny_patch16", frames=8, segment_len=4)
    with pytest.raises(ValueError, match="T=6 frames is not a multiple of segment_len=4"):
        model(torch.randn(1, 3, 6, 16, 16))


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    """`xvit models ...` through its own parser (independent of the other sub-commands)."""
    import argparse

    from xvit.cli import models

    parser = argparse.ArgumentParser(prog="xvit")
    models.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_models_lists_parameters_and_flops(capsys):
    assert run_cli(["models", "vit_tiny*", "--frames", "2", "--img-size", "32", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["vit_tiny_patch16"]
    model = meta_model("vit_tiny_patch16", num_frames=2, img_size=32)
    assert rows[0]["params_m"] == xvit.count_params(model) / 1e6
    assert rows[0]["gflops"] == xvit.count_flops(model) / 1e9
    assert run_cli(["models", "nothing_like_this*"]) == 1


def test_a_saved_model_from_before_head_cls_loads_as_it_was(tmp_path):
    """A config.json written before `head_cls` existed (no such key) describes a
    temporal-attention head whose CLS entered as the token alone: it loads so, with the
    logits of that model, not this version's default."""
    import json

    model = tiny("xvit_tiny_patch16", head_cls="token", head_classifier="mlp")
    randomise(model)
    model.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    assert config.pop("head_cls") == "token"
    assert config.pop("head_classifier") == "mlp"  # a file from before that field: the MLP
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    loaded = xvit.load_model(tmp_path / "old")
    assert loaded.config.head_cls == "token" and loaded.config.head_classifier == "mlp"
    x = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
        mean = tiny("xvit_tiny_patch16", head_classifier="mlp")
        mean.load_state_dict(model.state_dict())  # the same tensors, the default CLS input
        assert mean.config.head_cls == "mean" and not torch.allclose(mean(x), model(x))
