"""The backbone against Hugging Face reference implementations carrying the same weights:
`ViTModel` (spatial attention / mixing switched off) and `TimesformerModel` (divided
space-time attention)."""

from __future__ import annotations

import pytest
import torch
from _model_helpers import randomise

import xvit
from xvit.models import VideoViT, VideoViTConfig

transformers = pytest.importorskip("transformers")

DIM, DEPTH, HEADS, IMG, PATCH = 64, 2, 4, 32, 8


def tiny_config(**kw) -> VideoViTConfig:
    base = dict(
        embed_dim=DIM,
        depth=DEPTH,
        num_heads=HEADS,
        img_size=IMG,
        patch_size=PATCH,
        num_frames=4,
        num_classes=5,
        norm_eps=1e-6,
    )
    base.update(kw)
    return VideoViTConfig(**base)


def hf_vit(pooler: bool):
    cfg = transformers.ViTConfig(
        hidden_size=DIM,
        num_hidden_layers=DEPTH,
        num_attention_heads=HEADS,
        intermediate_size=4 * DIM,
        image_size=IMG,
        patch_size=PATCH,
        layer_norm_eps=1e-6,
        qkv_bias=True,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return transformers.ViTModel(cfg, add_pooling_layer=pooler).eval()


def vit_to_hf(ours: dict[str, torch.Tensor], hf_keys: set[str]) -> dict[str, torch.Tensor]:
    """Our (timm-named) ViT weights in HF `ViTModel` names (transformers 4.x or 5.x layout)."""
    new = any(k.startswith("layers.") for k in hf_keys)
    out = {
        "embeddings.cls_token": ours["cls_token"],
        "embeddings.position_embeddings": ours["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": ours["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": ours["patch_embed.proj.bias"],
        "layernorm.weight": ours["norm.weight"],
        "layernorm.bias": ours["norm.bias"],
    }
    for i in range(DEPTH):
        b = f"blocks.{i}."
        qw, kw, vw = ours[b + "attn.qkv.weight"].chunk(3)
        qb, kb, vb = ours[b + "attn.qkv.bias"].chunk(3)
        if new:
            h = f"layers.{i}."
            names = dict(
                q=h + "attention.q_proj",
                k=h + "attention.k_proj",
                v=h + "attention.v_proj",
                o=h + "attention.o_proj",
                fc1=h + "mlp.fc1",
                fc2=h + "mlp.fc2",
            )
        else:
            h = f"encoder.layer.{i}."
            names = dict(
                q=h + "attention.attention.query",
                k=h + "attention.attention.key",
                v=h + "attention.attention.value",
                o=h + "attention.output.dense",
                fc1=h + "intermediate.dense",
                fc2=h + "output.dense",
            )
        for key, w, bias in (("q", qw, qb), ("k", kw, kb), ("v", vw, vb)):
            out[names[key] + ".weight"], out[names[key] + ".bias"] = w, bias
        out[names["o"] + ".weight"] = ours[b + "attn.proj.weight"]
        out[names["o"] + ".bias"] = ours[b + "attn.proj.bias"]
        for ln, hn in (("norm1", "layernorm_before"), ("norm2", "layernorm_after")):
            out[h + hn + ".weight"] = ours[b + ln + ".weight"]
            out[h + hn + ".bias"] = ours[b + ln + ".bias"]
        for fc in ("fc1", "fc2"):
            out[names[fc] + ".weight"] = ours[b + "mlp." + fc + ".weight"]
            out[names[fc] + ".bias"] = ours[b + "mlp." + fc + ".bias"]
    if "pre_logits.fc.weight" in ours:
        out["pooler.dense.weight"] = ours["pre_logits.fc.weight"]
        out["pooler.dense.bias"] = ours["pre_logits.fc.bias"]
    return out


def load_hf(hf: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert not [k for k in missing if "position_ids" not in k], missing


def frames_through_hf(hf, video: torch.Tensor, **kw) -> torch.Tensor:
    """HF ViT run on every frame of `(B, 3, T, H, W)` separately -> (B, T, ...)."""
    b, c, t, h, w = video.shape
    out = hf(pixel_values=video.transpose(1, 2).reshape(b * t, c, h, w), **kw)
    return out


@pytest.mark.parametrize(
    "attention,kw",
    [
        ("spatial", {}),
        ("mixing", {"mix_layers": []}),  # X-ViT with mixing switched off in every layer
        ("tsm", {"mix_layers": []}),
    ],
)
def test_spatial_backbone_equals_hf_vit(attention, kw):
    torch.manual_seed(0)
    model = VideoViT(tiny_config(attention=attention, **kw)).eval()
    randomise(model)
    with torch.no_grad():
        model.temp_embed.zero_()  # HF ViT has no temporal embedding
    hf = hf_vit(pooler=False)
    load_hf(hf, vit_to_hf(model.state_dict(), set(hf.state_dict())))
    video = torch.randn(2, 3, 4, IMG, IMG)
    with torch.no_grad():
        ours = model.forward_features(video)  # (B, T, D): final-norm CLS per frame
        ref = frames_through_hf(hf, video).last_hidden_state[:, 0].view(2, 4, DIM)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_xvit_single_frame_with_temporal_embedding_and_representation_layer_equals_hf_vit():
    """T=1, mixing off: the temporal embedding is a constant added to every token, i.e. part
    of the position embedding; the representation layer is HF's pooler (Linear + tanh)."""
    torch.manual_seed(1)
    model = VideoViT(
        tiny_config(attention="mixing", mix_layers=[], num_frames=1, representation_size=DIM)
    ).eval()
    randomise(model, seed=1)
    hf = hf_vit(pooler=True)
    state = vit_to_hf(model.state_dict(), set(hf.state_dict()))
    state["embeddings.position_embeddings"] = model.pos_embed.detach() + model.temp_embed.detach()[:, 0]
    load_hf(hf, state)
    video = torch.randn(3, 3, 1, IMG, IMG)
    with torch.no_grad():
        ours = model.forward_features(video)[:, 0]
        ref = hf(pixel_values=video[:, :, 0]).pooler_output
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_position_embedding_resized_like_hf_interpolate_pos_encoding():
    """A larger input than the config's image size: bicubic resize of the position grid."""
    torch.manual_seed(2)
    model = VideoViT(tiny_config(num_frames=2)).eval()
    randomise(model, seed=2)
    with torch.no_grad():
        model.temp_embed.zero_()
    hf = hf_vit(pooler=False)
    load_hf(hf, vit_to_hf(model.state_dict(), set(hf.state_dict())))
    video = torch.randn(1, 3, 2, 48, 48)
    with torch.no_grad():
        ours = model.forward_features(video)
        ref = frames_through_hf(hf, video, interpolate_pos_encoding=True).last_hidden_state[:, 0]
    torch.testing.assert_close(ours[0], ref, atol=1e-5, rtol=1e-5)


def timesformer_to_hf(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {
        "embeddings.cls_token": ours["cls_token"],
        "embeddings.position_embeddings": ours["pos_embed"],
        "embeddings.time_embeddings": ours["temp_embed"][:, :, 0],
        "embeddings.patch_embeddings.projection.weight": ours["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": ours["patch_embed.proj.bias"],
        "layernorm.weight": ours["norm.weight"],
        "layernorm.bias": ours["norm.bias"],
    }
    names = {
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "attn.qkv": "attention.attention.qkv",
        "attn.proj": "attention.output.dense",
        "temporal_norm1": "temporal_layernorm",
        "temporal_attn.qkv": "temporal_attention.attention.qkv",
        "temporal_attn.proj": "temporal_attention.output.dense",
        "temporal_fc": "temporal_dense",
        "mlp.fc1": "intermediate.dense",
        "mlp.fc2": "output.dense",
    }
    for i in range(DEPTH):
        for ours_name, hf_name in names.items():
            for p in ("weight", "bias"):
                out[f"encoder.layer.{i}.{hf_name}.{p}"] = ours[f"blocks.{i}.{ours_name}.{p}"]
    return out


def test_divided_attention_equals_hf_timesformer():
    torch.manual_seed(3)
    model = xvit.create_model(
        "timesformer_tiny_patch16",
        num_classes=5,
        num_frames=4,
        img_size=IMG,
        embed_dim=DIM,
        depth=DEPTH,
        num_heads=HEADS,
        patch_size=PATCH,
    ).eval()
    randomise(model, seed=3)
    cfg = transformers.TimesformerConfig(
        hidden_size=DIM,
        num_hidden_layers=DEPTH,
        num_attention_heads=HEADS,
        intermediate_size=4 * DIM,
        image_size=IMG,
        patch_size=PATCH,
        num_frames=4,
        layer_norm_eps=1e-6,
        qkv_bias=True,
        attention_type="divided_space_time",
        hidden_act="gelu",
    )
    hf = transformers.TimesformerModel(cfg).eval()
    load_hf(hf, timesformer_to_hf(model.state_dict()))
    video = torch.randn(2, 3, 4, IMG, IMG)
    with torch.no_grad():
        ours = model.forward_features(video)  # (B, T, D): T identical copies of the clip CLS
        ref = hf(pixel_values=video.transpose(1, 2)).last_hidden_state[:, 0]
    for t in range(4):
        torch.testing.assert_close(ours[:, t], ref, atol=1e-5, rtol=1e-5)
