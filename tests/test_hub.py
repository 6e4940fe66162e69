"""Weights on disk: save_pretrained / load_model, and ImageNet initialisation from image-ViT
checkpoints in the layouts they are published in (timm .pth / .safetensors, JAX .npz,
Hugging Face ViT). The reference for every loader is Hugging Face's `ViTModel` carrying the
same weights: a spatial video model at one frame per image must give its features.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

transformers = pytest.importorskip("transformers")

from xvit.models.hub import CheckpointError, load_model, load_pretrained, save_pretrained  # noqa: E402
from xvit.models.imagenet import resample_patch_embed  # noqa: E402
from xvit.models.video_vit import VideoViT, VideoViTConfig  # noqa: E402

D, DEPTH, HEADS = 64, 2, 4


def tiny_config(**kw: object) -> VideoViTConfig:
    base: dict[str, object] = dict(
        name="test_vit",
        img_size=32,
        patch_size=8,
        embed_dim=D,
        depth=DEPTH,
        num_heads=HEADS,
        num_frames=2,
        num_classes=5,
        attention="spatial",
        head="avg",
    )
    base.update(kw)
    return VideoViTConfig(**base)


def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Weights far from their initial values, so that loading mistakes show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name or "layernorm" in name:
                p.copy_(1 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
            else:
                p.copy_(0.1 * noise)
    return module


def hf_vit(image: int = 32, patch: int = 8, dim: int = D, pooler: bool = True, seed: int = 0):
    """A random Hugging Face ViTModel with timm's conventions (LayerNorm eps 1e-6)."""
    cfg = transformers.ViTConfig(
        hidden_size=dim,
        num_hidden_layers=DEPTH,
        num_attention_heads=HEADS,
        intermediate_size=4 * dim,
        image_size=image,
        patch_size=patch,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
        qkv_bias=True,
    )
    return randomise(transformers.ViTModel(cfg, add_pooling_layer=pooler), seed).eval()


def hf_features(hf, images: torch.Tensor, pooler: bool = True, **kw: object) -> torch.Tensor:
    with torch.no_grad():
        out = hf(pixel_values=images, **kw)
    return out.pooler_output if pooler else out.last_hidden_state[:, 0]


def frames_features(model: VideoViT, clip: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval().forward_features(clip)


def clip(batch: int = 2, frames: int = 2, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(seed))


def _hf_saved(hf) -> dict[str, torch.Tensor]:
    """The state dict as HF publishes it (`encoder.layer.i.attention.attention.query`...):
    what `save_pretrained` writes, whatever the module names of the installed version."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        return load_file(Path(d) / "model.safetensors")


def timm_state(hf_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm-layout ViT state dict with the weights of an HF (published layout) state dict,
    plus a 1000-class image head as timm checkpoints have."""
    sd = {
        "cls_token": hf_sd["embeddings.cls_token"],
        "pos_embed": hf_sd["embeddings.position_embeddings"],
        "patch_embed.proj.weight": hf_sd["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": hf_sd["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": hf_sd["layernorm.weight"],
        "norm.bias": hf_sd["layernorm.bias"],
        "head.weight": torch.randn(1000, D),
        "head.bias": torch.randn(1000),
    }
    if "pooler.dense.weight" in hf_sd:
        sd["pre_logits.fc.weight"] = hf_sd["pooler.dense.weight"]
        sd["pre_logits.fc.bias"] = hf_sd["pooler.dense.bias"]
    for i in range(DEPTH):
        h, t = f"encoder.layer.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            sd[t + f"attn.qkv.{kind}"] = torch.cat(
                [hf_sd[h + f"attention.attention.{n}.{kind}"] for n in ("query", "key", "value")]
            )
            sd[t + f"attn.proj.{kind}"] = hf_sd[h + f"attention.output.dense.{kind}"]
            sd[t + f"norm1.{kind}"] = hf_sd[h + f"layernorm_before.{kind}"]
            sd[t + f"norm2.{kind}"] = hf_sd[h + f"layernorm_after.{kind}"]
            sd[t + f"mlp.fc1.{kind}"] = hf_sd[h + f"intermediate.dense.{kind}"]
            sd[t + f"mlp.fc2.{kind}"] = hf_sd[h + f"output.dense.{kind}"]
    return {k: v.contiguous() for k, v in sd.items()}


def jax_arrays(hf_sd: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The same weights as the original JAX/Flax ViT checkpoint stores them: conv kernels
    HWIO, dense kernels (in, out), attention q/k/v kernels (D, heads, head_dim) and out
    kernel (heads, head_dim, D)."""
    hd = D // HEADS

    def n(t: torch.Tensor) -> np.ndarray:
        return t.detach().numpy().astype(np.float32)

    a = {
        "embedding/kernel": n(hf_sd["embeddings.patch_embeddings.projection.weight"].permute(2, 3, 1, 0)),
        "embedding/bias": n(hf_sd["embeddings.patch_embeddings.projection.bias"]),
        "cls": n(hf_sd["embeddings.cls_token"]),
        "Transformer/posembed_input/pos_embedding": n(hf_sd["embeddings.position_embeddings"]),
        "Transformer/encoder_norm/scale": n(hf_sd["layernorm.weight"]),
        "Transformer/encoder_norm/bias": n(hf_sd["layernorm.bias"]),
        "pre_logits/kernel": n(hf_sd["pooler.dense.weight"].T),
        "pre_logits/bias": n(hf_sd["pooler.dense.bias"]),
        "head/kernel": np.random.default_rng(0).normal(size=(D, 21843)).astype(np.float32),
        "head/bias": np.zeros(21843, np.float32),
    }
    for i in range(DEPTH):
        h, j = f"encoder.layer.{i}.", f"Transformer/encoderblock_{i}/"
        for ln, src in (("LayerNorm_0", "layernorm_before"), ("LayerNorm_2", "layernorm_after")):
            a[j + f"{ln}/scale"] = n(hf_sd[h + f"{src}.weight"])
            a[j + f"{ln}/bias"] = n(hf_sd[h + f"{src}.bias"])
        m = j + "MultiHeadDotProductAttention_1/"
        for name in ("query", "key", "value"):
            w = hf_sd[h + f"attention.attention.{name}.weight"]  # (H*hd, D)
            a[m + f"{name}/kernel"] = n(w.T.reshape(D, HEADS, hd))
            a[m + f"{name}/bias"] = n(hf_sd[h + f"attention.attention.{name}.bias"].reshape(HEADS, hd))
        a[m + "out/kernel"] = n(hf_sd[h + "attention.output.dense.weight"].T.reshape(HEADS, hd, D))
        a[m + "out/bias"] = n(hf_sd[h + "attention.output.dense.bias"])
        a[j + "MlpBlock_3/Dense_0/kernel"] = n(hf_sd[h + "intermediate.dense.weight"].T)
        a[j + "MlpBlock_3/Dense_0/bias"] = n(hf_sd[h + "intermediate.dense.bias"])
        a[j + "MlpBlock_3/Dense_1/kernel"] = n(hf_sd[h + "output.dense.weight"].T)
        a[j + "MlpBlock_3/Dense_1/bias"] = n(hf_sd[h + "output.dense.bias"])
    return a


# --------------------------------------------------------------------------------------------
# save_pretrained / load_model
# --------------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    import xvit

    config = tiny_config(
        attention="mixing",
        segment_len=2,
        head="ta",
        head_num_heads=2,
        representation_size=D,
        class_names=[f"c{i}" for i in range(5)],
    )
    model = randomise(VideoViT(config)).eval()
    out = model.save_pretrained(tmp_path / "run")
    assert sorted(p.name for p in Path(out).iterdir()) == ["README.md", "config.json", "model.safetensors"]
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["architecture"] == "VideoViT" and meta["format_version"] == 1
    assert meta["xvit_version"] == xvit.__version__ and meta["class_names"][4] == "c4"

    loaded = xvit.load_model(tmp_path / "run")
    assert not loaded.training
    assert loaded.config == model.config
    x = clip()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # the weights file alone is a plain safetensors file (hub layout)
    assert set(load_file(tmp_path / "run" / "model.safetensors")) == set(model.state_dict())
    # load_model also accepts the path of either file
    assert isinstance(load_model(tmp_path / "run" / "config.json"), VideoViT)
    # written through temporary files, with the permissions of any new file
    (tmp_path / "run" / "plain").write_text("")
    mode = (tmp_path / "run" / "plain").stat().st_mode
    assert (tmp_path / "run" / "model.safetensors").stat().st_mode == mode


def test_save_pretrained_handles_shared_and_strided_tensors(tmp_path: Path) -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = tiny_config()
            self.a = nn.Linear(4, 3)
            self.b = nn.Linear(4, 3)
            self.b.weight = self.a.weight  # tied
            self.register_buffer("t", torch.arange(12.0).reshape(3, 4).T)  # non-contiguous

    m = Tied()
    save_pretrained(m, tmp_path)
    sd = load_file(tmp_path / "model.safetensors")
    assert torch.equal(sd["a.weight"], m.a.weight) and torch.equal(sd["b.weight"], m.a.weight)
    assert torch.equal(sd["t"], m.t)


def test_load_model_missing_things(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_model(tmp_path / "nowhere")
    VideoViT(tiny_config()).save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_model(tmp_path / "m")


def test_load_model_unknown_config_key(tmp_path: Path) -> None:
    VideoViT(tiny_config()).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["mixing_flavour"] = "spicy"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config\.json.*mixing_flavour"):
        load_model(tmp_path)
    del cfg["mixing_flavour"]
    cfg["attention"] = "telepathy"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config\.json.*telepathy"):
        load_model(tmp_path)


def test_load_model_truncated_weights(tmp_path: Path) -> None:
    VideoViT(tiny_config()).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated"):
        load_model(tmp_path)
    weights.write_bytes(data[:6])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated"):
        load_model(tmp_path)


def test_load_model_lists_missing_unexpected_and_mismatched(tmp_path: Path) -> None:
    VideoViT(tiny_config()).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    # one layer fewer (blocks.1.* unexpected), a representation layer (pre_logits.fc.*
    # missing) and 6 classes (head.fc.* mismatched)
    cfg.update(depth=1, representation_size=D, num_classes=6)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path)
    msg = str(err.value)
    assert "model.safetensors" in msg
    assert "missing keys (2): pre_logits.fc.bias, pre_logits.fc.weight" in msg
    assert "unexpected keys" in msg and "blocks.1.attn.qkv.weight" in msg
    assert "head.fc.weight: checkpoint (5, 64) vs model (6, 64)" in msg


# --------------------------------------------------------------------------------------------
# ImageNet initialisation: every published layout gives HF ViTModel's features
# --------------------------------------------------------------------------------------------


def _check_against_hf(model: VideoViT, hf, pooler: bool = True) -> None:
    x = clip()
    feats = frames_features(model, x)  # (B, T, D): each frame through the image ViT
    for t in range(x.shape[2]):
        torch.testing.assert_close(feats[:, t], hf_features(hf, x[:, :, t], pooler), atol=2e-5, rtol=1e-4)


def test_load_pretrained_hf_directory_and_file(tmp_path: Path) -> None:
    hf = hf_vit()
    hf.save_pretrained(tmp_path / "hf")  # the published layout: encoder.layer.i.attention...
    model = VideoViT(tiny_config(representation_size=D))
    head_before = model.head.fc.weight.clone()
    report = load_pretrained(model, tmp_path / "hf")
    _check_against_hf(model, hf)
    assert "temp_embed" in report.missing and "head.fc.weight" in report.missing
    assert torch.equal(model.head.fc.weight, head_before)  # the video head is untouched
    assert not report.unexpected

    model2 = VideoViT(tiny_config(representation_size=D))
    load_pretrained(model2, tmp_path / "hf" / "model.safetensors", strict=True)
    _check_against_hf(model2, hf)


def test_load_pretrained_hf_module_names_and_classifier(tmp_path: Path) -> None:
    """transformers >= 5 module names (`layers.i.attention.q_proj`), and a
    ViTForImageClassification state dict (`vit.` prefix, `classifier` dropped)."""
    hf = hf_vit()
    torch.save(hf.state_dict(), tmp_path / "modern.pth")
    model = VideoViT(tiny_config(representation_size=D))
    load_pretrained(model, tmp_path / "modern.pth", strict=True)
    _check_against_hf(model, hf)

    cls_cfg = transformers.ViTConfig(**{**hf.config.to_dict(), "num_labels": 7})
    clf = randomise(transformers.ViTForImageClassification(cls_cfg), seed=3).eval()
    clf.save_pretrained(tmp_path / "clf")
    model = VideoViT(tiny_config())  # no representation layer: the CLS after the final norm
    report = load_pretrained(model, tmp_path / "clf")
    assert report.unexpected == ["head.bias", "head.weight"]  # the 7-class image classifier
    _check_against_hf(model, clf.vit, pooler=False)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_load_pretrained_timm_files(tmp_path: Path, fmt: str) -> None:
    hf = hf_vit(seed=1)
    sd = timm_state(_hf_saved(hf))
    path = tmp_path / f"vit.{fmt}"
    if fmt == "pth":
        torch.save({"model": sd, "epoch": 3}, path)  # a training checkpoint wrapper
    else:
        save_file(sd, path)
    model = VideoViT(tiny_config(representation_size=D))
    report = load_pretrained(model, path, strict=True)
    _check_against_hf(model, hf)
    assert report.unexpected == ["head.bias", "head.weight"]  # the 1000-class image head
    assert "pre_logits.fc.weight" in report.loaded

    # a model without a representation layer drops the in21k pre_logits and reports it
    model = VideoViT(tiny_config())
    report = load_pretrained(model, path)
    assert "pre_logits.fc.weight" in report.unexpected
    _check_against_hf(model, hf, pooler=False)


def test_load_pretrained_jax_npz(tmp_path: Path) -> None:
    hf = hf_vit(seed=2)
    np.savez(tmp_path / "ViT-Ti_8.npz", **jax_arrays(_hf_saved(hf)))
    model = VideoViT(tiny_config(representation_size=D))
    report = load_pretrained(model, tmp_path / "ViT-Ti_8.npz", strict=True)
    _check_against_hf(model, hf)
    assert report.unexpected == ["head.bias", "head.weight"]


def test_load_pretrained_truncated_files(tmp_path: Path) -> None:
    hf = hf_vit()
    sd = timm_state(_hf_saved(hf))
    torch.save(sd, tmp_path / "a.pth")
    save_file(sd, tmp_path / "a.safetensors")
    np.savez(tmp_path / "a.npz", **jax_arrays(_hf_saved(hf)))
    model = VideoViT(tiny_config())
    for name in ("a.pth", "a.safetensors", "a.npz"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut_{name}").write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match=re.escape(f"cut_{name}") + ".*truncated"):
            load_pretrained(model, tmp_path / f"cut_{name}")


def test_load_pretrained_resizes_pos_embed(tmp_path: Path) -> None:
    """A 32x32 (4x4 grid) checkpoint into a 48x48 (6x6 grid) model: bicubic resize of the
    grid, CLS position kept, as the model resizes at run time and as HF's
    `interpolate_pos_encoding` does (timm's filter antialiases: slightly different values)."""
    hf = hf_vit(seed=4)
    hf.save_pretrained(tmp_path / "hf")
    model = VideoViT(tiny_config(img_size=48, representation_size=D))
    report = load_pretrained(model, tmp_path / "hf")
    assert any("pos_embed: (1, 17, 64) -> (1, 37, 64)" in a for a in report.adapted)

    old = hf.embeddings.position_embeddings.detach()
    grid = old[:, 1:].reshape(1, 4, 4, D).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(6, 6), mode="bicubic", align_corners=False)
    expected = torch.cat([old[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 36, D)], dim=1)
    torch.testing.assert_close(model.pos_embed.detach(), expected)

    x = clip(size=48)
    feats = frames_features(model, x)
    for t in range(2):
        ref = hf_features(hf, x[:, :, t], interpolate_pos_encoding=True)
        torch.testing.assert_close(feats[:, t], ref, atol=2e-5, rtol=1e-4)


def _timm_old_resample(kernel: np.ndarray, new: tuple[int, int]) -> np.ndarray:
    """timm's first resample_patch_embed (numpy): pinv of the resize matrix of basis patches."""
    old = kernel.shape[-2:]
    mat = []
    for i in range(int(np.prod(old))):
        basis = np.zeros(old)
        basis[np.unravel_index(i, old)] = 1.0
        up = F.interpolate(torch.tensor(basis)[None, None], size=new, mode="bicubic", antialias=True)[
            0, 0
        ].numpy()
        mat.append(up.reshape(-1))
    resize_mat = np.stack(mat).T  # (new, old)
    pinv = np.linalg.pinv(resize_mat.T)  # (new, old)
    out = np.einsum("no,cio->cin", pinv, kernel.reshape(*kernel.shape[:2], -1))
    return out.reshape(*kernel.shape[:2], *new)


def test_resample_patch_embed() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, 4, 4, generator=g)
    new = resample_patch_embed(w, (8, 8))
    np.testing.assert_allclose(new.numpy(), _timm_old_resample(w.double().numpy(), (8, 8)), atol=1e-5)
    # upsampling is exact: the new kernel on a resized patch gives the old kernel's output
    patches = torch.randn(10, 3, 4, 4, generator=g)
    resized = F.interpolate(patches, size=(8, 8), mode="bicubic", antialias=True)
    torch.testing.assert_close(F.conv2d(resized, new), F.conv2d(patches, w), atol=1e-4, rtol=1e-4)
    # downsampling matches timm (least squares)
    np.testing.assert_allclose(
        resample_patch_embed(w, (2, 2)).numpy(), _timm_old_resample(w.double().numpy(), (2, 2)), atol=1e-5
    )


def test_load_pretrained_resamples_patch_size(tmp_path: Path) -> None:
    """A patch-8 checkpoint into a patch-16 model (64x64 input keeps the 4x4 grid)."""
    hf = hf_vit(seed=5)
    hf.save_pretrained(tmp_path / "hf")
    model = VideoViT(tiny_config(img_size=64, patch_size=16, representation_size=D))
    report = load_pretrained(model, tmp_path / "hf", strict=True)
    assert any("patch (8, 8) -> (16, 16)" in a for a in report.adapted)
    expected = torch.tensor(
        _timm_old_resample(
            hf.embeddings.patch_embeddings.projection.weight.detach().double().numpy(), (16, 16)
        )
    )
    torch.testing.assert_close(model.patch_embed.proj.weight.double(), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.pos_embed, hf.embeddings.position_embeddings)


def test_load_pretrained_wrong_width_lists_shapes(tmp_path: Path) -> None:
    hf = hf_vit(dim=32)
    hf.save_pretrained(tmp_path / "hf32")
    model = VideoViT(tiny_config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_pretrained(model, tmp_path / "hf32")
    msg = str(err.value)
    assert "hf32" in msg and "cls_token: checkpoint (1, 1, 32) vs model (1, 1, 64)" in msg
    assert "blocks.1.mlp.fc2.weight: checkpoint (32, 128) vs model (64, 256)" in msg
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # untouched


def test_load_pretrained_strict_missing_backbone_key(tmp_path: Path) -> None:
    sd = timm_state(_hf_saved(hf_vit()))
    del sd["blocks.1.norm2.bias"]
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(
        CheckpointError, match=r"partial\.pth[\s\S]*missing keys \(1\): blocks\.1\.norm2\.bias"
    ):
        load_pretrained(VideoViT(tiny_config()), tmp_path / "partial.pth", strict=True)
    report = load_pretrained(VideoViT(tiny_config()), tmp_path / "partial.pth")
    assert "blocks.1.norm2.bias" in report.missing


def test_load_pretrained_video_params_stay_initialised(tmp_path: Path) -> None:
    """X-ViT: the temporal embedding and the TA head keep their values; TimeSformer: the
    temporal attention starts as a copy of the spatial one and temporal_fc stays zero."""
    hf = hf_vit()
    hf.save_pretrained(tmp_path / "hf")
    xv = VideoViT(tiny_config(attention="mixing", head="ta", head_num_heads=2))
    with torch.no_grad():
        xv.temp_embed.normal_()
    kept = {k: v.clone() for k, v in xv.state_dict().items() if k == "temp_embed" or k.startswith("head.")}
    load_pretrained(xv, tmp_path / "hf")
    assert all(torch.equal(v, xv.state_dict()[k]) for k, v in kept.items())

    ts = VideoViT(tiny_config(attention="divided", temp_embed_cls=False, head="linear"))
    report = load_pretrained(ts, tmp_path / "hf")
    for i in range(DEPTH):
        blk = ts.blocks[i]
        assert torch.equal(blk.temporal_attn.qkv.weight, blk.attn.qkv.weight)
        assert torch.equal(blk.temporal_attn.proj.bias, blk.attn.proj.bias)
        assert torch.equal(blk.temporal_norm1.weight, blk.norm1.weight)
        assert torch.count_nonzero(blk.temporal_fc.weight) == 0
    assert any("temporal_attn.qkv.weight <- blocks.0.attn.qkv.weight" in a for a in report.adapted)
    torch.testing.assert_close(
        ts.blocks[0].attn.qkv.weight, timm_state(_hf_saved(hf))["blocks.0.attn.qkv.weight"]
    )


def test_load_pretrained_refuses_a_checkpoint_that_fits_nothing(tmp_path: Path) -> None:
    torch.save({"model_state": {"base_model.cls_token": torch.zeros(1, 1, D)}}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match=r"x\.pth: no tensor of the checkpoint fits"):
        load_pretrained(VideoViT(tiny_config()), tmp_path / "x.pth")
