"""`xvit convert-official`: released X-ViT (PySlowFast) checkpoints -> save_pretrained dirs.

A small checkpoint in the released layout is built here from random tensors (no xvit model
code involved), and its expected logits are computed by `released_forward`, a plain-torch
re-implementation of the released algorithm (paper.md, "Layout of a released checkpoint").
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from xvit.cli import convert
from xvit.models.convert_official import convert_official
from xvit.models.hub import CheckpointError, load_model
from xvit.models.released import infer_num_heads

D, DEPTH, HEADS, PATCH, IMG, FRAMES = 64, 2, 4, 8, 32, 16
MLP_DIM = 48  # TEMPORAL_HEAD.MLP_DIM (768 in the released models: differs from D here on purpose)
HEAD_HEADS = 2  # TEMPORAL_HEAD.NUM_ATTENTION_HEADS


# --------------------------------------------------------------------------------------------
# A checkpoint in the released layout
# --------------------------------------------------------------------------------------------


def released_state(num_classes: int, seed: int = 0, temp_entries: int = 8) -> dict[str, torch.Tensor]:
    """`model_state` of a tiny released-style X-ViT (ViT in21k backbone + TA head)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, std: float = 0.15) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    def w(*shape: int, std: float = 0.15) -> torch.Tensor:
        """A weight matrix; its std shrinks as 1/sqrt(width) for wider models than D=64."""
        return r(*shape, std=std * (64 / D) ** 0.5)

    def ln(prefix: str, dim: int) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": 1 + r(dim, std=0.1), f"{prefix}.bias": r(dim, std=0.1)}

    # The embeddings and the representation layer are small (variance ~1e-5) so that the
    # LayerNorms right after them (block 0's norm1, the head's) depend on their eps.
    sd: dict[str, torch.Tensor] = {
        "base_model.cls_token": r(1, 1, D, std=3e-3),
        "base_model.pos_embed": r(1, 1 + (IMG // PATCH) ** 2, D, std=3e-3),
        "base_model.temp_embed": r(1, temp_entries, 1, D, std=3e-3),
        "base_model.patch_embed.proj.weight": r(D, 3, PATCH, PATCH, std=2e-4),
        "base_model.patch_embed.proj.bias": r(D, std=3e-3),
        **ln("base_model.norm", D),
        "base_model.pre_logits.fc.weight": w(D, D, std=4e-4),
        "base_model.pre_logits.fc.bias": r(D, std=3e-3),
    }

    def block(p: str, qkv_bias: bool) -> None:
        sd.update(ln(p + "norm1", D))
        sd.update(ln(p + "norm2", D))
        sd[p + "attn.qkv.weight"] = w(3 * D, D, std=0.25)
        if qkv_bias:
            sd[p + "attn.qkv.bias"] = r(3 * D)
        sd[p + "attn.proj.weight"] = w(D, D)
        sd[p + "attn.proj.bias"] = r(D)
        sd[p + "mlp.fc1.weight"] = w(4 * D, D)
        sd[p + "mlp.fc1.bias"] = r(4 * D)
        sd[p + "mlp.fc2.weight"] = w(D, 4 * D)
        sd[p + "mlp.fc2.bias"] = r(D)

    for i in range(DEPTH):
        block(f"base_model.blocks.{i}.", qkv_bias=True)
    sd["consensus.cls_token"] = r(1, 1, D, std=3e-3)
    block("consensus.temporal_encoder.0.", qkv_bias=False)  # no qkv bias in the TA head
    sd.update(ln("consensus.mlp_head.0", D))
    sd["consensus.mlp_head.1.weight"] = w(MLP_DIM, D)
    sd["consensus.mlp_head.1.bias"] = r(MLP_DIM)
    sd["consensus.mlp_head.4.weight"] = w(num_classes, MLP_DIM)
    sd["consensus.mlp_head.4.bias"] = r(num_classes)
    # Present in the released files, unused with the TA head.
    sd["new_fc.weight"] = w(num_classes, D)
    sd["new_fc.bias"] = r(num_classes)
    return sd


def released_cfg(num_classes: int, segments: int, div: int) -> str:
    """The `cfg` YAML string of a PySlowFast checkpoint (a subset of `cfg.dump()`)."""
    cfg = {
        "DATA": {
            "NUM_FRAMES": FRAMES,
            "MEAN": [0.5, 0.5, 0.5],
            "STD": [0.5, 0.5, 0.5],
            "TRAIN_CROP_SIZE": IMG,
            "TEST_CROP_SIZE": IMG,
        },
        "XVIT": {
            "BASE_MODEL": "vit_tiny_custom",  # not a standard width: heads come from --num-heads
            "CONSENSUS_TYPE": "vit",
            "USE_XVIT": True,
            "SHIFT_DIV": div,
            "NUM_SEGMENTS": segments,
            "LOCATIONS_LIST": list(range(15)),  # past the depth: ignored, as the released code does
            "BEFORE_SOFTMAX": True,
            "BACKBONE": {"NORM_LAYER": "LN", "DROP_PATH_RATE": 0.0},
        },
        "TEMPORAL_HEAD": {
            "HIDDEN_DIM": D,
            "NUM_ATTENTION_HEADS": HEAD_HEADS,
            "NUM_HIDDEN_LAYERS": 1,
            "MLP_DIM": MLP_DIM,
        },
        "MODEL": {"NUM_CLASSES": num_classes, "ARCH": "xvit", "MODEL_NAME": "XVIT", "DROPOUT_RATE": 0.5},
    }
    return yaml.safe_dump(cfg)


def save_released(path: Path, state: dict[str, torch.Tensor], cfg: str | None) -> Path:
    ckpt: dict[str, object] = {
        "epoch": 30,
        "model_state": state,
        "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.0, "params": [0, 1]}]},
    }
    if cfg is not None:
        ckpt["cfg"] = cfg
    torch.save(ckpt, path)
    return path


# --------------------------------------------------------------------------------------------
# The released forward pass, re-implemented in plain torch (float64)
# --------------------------------------------------------------------------------------------


def _ln(x: torch.Tensor, sd: dict, p: str, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps)


def _released_shift(x: torch.Tensor, n_segment: int, fold_div: int) -> torch.Tensor:
    """The released TemporalShift on k or v of shape (nt, heads, tokens, head_dim)."""
    nt, num_heads, d, c = x.size()
    n_batch = nt // n_segment
    x = x.view(n_batch, n_segment, num_heads, d, c)
    fold = c * num_heads // fold_div
    x = x.permute(0, 1, 2, 4, 3).contiguous().view(n_batch, n_segment, num_heads * c, d)
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]  # channels [0, fold) from frame t+1
    out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]  # [fold, 2 fold) from frame t-1
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    out = out.view(n_batch, n_segment, num_heads, c, d).permute(0, 1, 2, 4, 3).contiguous()
    return out.view(nt, num_heads, d, c)


def _block(
    x: torch.Tensor, sd: dict, p: str, heads: int, eps: float, shift: tuple[int, int] | None
) -> torch.Tensor:
    B, N, C = x.shape
    h = _ln(x, sd, p + "norm1", eps)
    qkv = F.linear(h, sd[p + "attn.qkv.weight"], sd.get(p + "attn.qkv.bias"))
    q, k, v = qkv.reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    if shift is not None:
        k, v = _released_shift(k, *shift), _released_shift(v, *shift)
    attn = ((q @ k.transpose(-2, -1)) * (C // heads) ** -0.5).softmax(-1)
    h = (attn @ v).transpose(1, 2).reshape(B, N, C)
    x = x + F.linear(h, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
    h = _ln(x, sd, p + "norm2", eps)
    h = F.linear(
        F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
        sd[p + "mlp.fc2.weight"],
        sd[p + "mlp.fc2.bias"],
    )
    return x + h


def _released_features(
    state: dict[str, torch.Tensor],
    video: torch.Tensor,
    segments: int,
    div: int,
    mix: Sequence[int] | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """(B, T, D) per-frame features of the released backbone (`base_model`)."""
    sd = {k: v.double() for k, v in state.items()}
    B, _, T, H, W = video.shape
    x = video.double().transpose(1, 2).reshape(B * T, 3, H, W)
    b = "base_model."
    x = (
        F.conv2d(x, sd[b + "patch_embed.proj.weight"], sd[b + "patch_embed.proj.bias"], stride=PATCH)
        .flatten(2)
        .transpose(1, 2)
    )
    x = torch.cat([sd[b + "cls_token"].expand(B * T, -1, -1), x], dim=1) + sd[b + "pos_embed"]
    tp = sd[b + "temp_embed"].shape[1]  # 8 entries, repeated every 8 frames
    x = (x.view(B * T // tp, tp, x.size(1), x.size(2)) + sd[b + "temp_embed"]).view(B * T, -1, D)
    for i in range(DEPTH):
        mixes = mix is None or i in mix  # LOCATIONS_LIST: the blocks that shift k and v
        x = _block(x, sd, f"{b}blocks.{i}.", HEADS, eps, (segments, div) if mixes else None)
    x = _ln(x, sd, b + "norm", eps)[:, 0]
    x = torch.tanh(F.linear(x, sd[b + "pre_logits.fc.weight"], sd[b + "pre_logits.fc.bias"]))
    return x.view(B, T, -1)


def released_forward(
    state: dict[str, torch.Tensor],
    video: torch.Tensor,
    segments: int,
    div: int,
    mix: Sequence[int] | None = None,
    eps: float = 1e-6,
    head_eps: float = 1e-5,
) -> torch.Tensor:
    """Logits of the released X-ViT (TA head) for `video` (B, 3, T, H, W): backbone
    LayerNorms with eps 1e-6, the head's (nn.LayerNorm default) 1e-5."""
    sd = {k: v.double() for k, v in state.items()}
    x = _released_features(state, video, segments, div, mix, eps)
    B = x.shape[0]
    c = "consensus."
    x = torch.cat([sd[c + "cls_token"].expand(B, -1, -1), x], dim=1)
    x = _block(x, sd, c + "temporal_encoder.0.", HEAD_HEADS, head_eps, None)
    x = _ln(x[:, 0], sd, c + "mlp_head.0", head_eps)
    x = F.gelu(F.linear(x, sd[c + "mlp_head.1.weight"], sd[c + "mlp_head.1.bias"]))
    return F.linear(x, sd[c + "mlp_head.4.weight"], sd[c + "mlp_head.4.bias"])


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def run_convert(*argv: str) -> int:
    """`xvit convert-official ...` through the sub-command's own parser and function."""
    parser = argparse.ArgumentParser(prog="xvit")
    convert.add_parser(parser.add_subparsers())
    args = parser.parse_args(["convert-official", *argv])
    return args.func(args)


def video(seed: int = 1, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, FRAMES, IMG, IMG, generator=g)


def test_released_reference_is_sensitive_to_the_quirks() -> None:
    """The reference itself: mixing, its segments, its split, the temporal-embedding tiling
    and both LayerNorm eps change the logits far beyond the 1e-4 tolerance."""
    state = released_state(10)
    x = video()
    base = released_forward(state, x, segments=8, div=8)
    assert (base - released_forward(state, x, 8, 8, mix=[])).abs().max() > 1e-2
    assert (base - released_forward(state, x, 8, 8, mix=[1])).abs().max() > 1e-2
    assert (base - released_forward(state, x, 16, 8)).abs().max() > 1e-2
    assert (base - released_forward(state, x, 8, 4)).abs().max() > 1e-2
    assert (base - released_forward(state, x, 8, 8, eps=1e-5)).abs().max() > 1e-2
    assert (base - released_forward(state, x, 8, 8, head_eps=1e-6)).abs().max() > 1e-2
    shuffled = dict(state, **{"base_model.temp_embed": state["base_model.temp_embed"].roll(1, 1)})
    assert (base - released_forward(shuffled, x, 8, 8)).abs().max() > 1e-2


@pytest.mark.parametrize(
    ("segments", "div", "classes"), [(8, 8, 12), (16, 4, 7)], ids=["k600-like", "ssv2-like"]
)
def test_convert_matches_released_forward(tmp_path: Path, segments: int, div: int, classes: int) -> None:
    state = released_state(classes)
    ckpt = save_released(tmp_path / "xvit.pth", state, released_cfg(classes, segments, div))
    labels = tmp_path / "classes.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(classes)))
    out = tmp_path / "converted"
    assert (
        run_convert(str(ckpt), "--out", str(out), "--num-heads", str(HEADS), "--class-names", str(labels))
        == 0
    )
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()

    model = load_model(out)
    assert model.config.class_names == [f"class {i}" for i in range(classes)]
    assert list(model.config.mean) == [0.5] * 3 and list(model.config.std) == [0.5] * 3
    x = video()
    with torch.no_grad():
        logits = model(x)
    expected = released_forward(state, x, segments, div)
    assert logits.shape == (2, classes)
    torch.testing.assert_close(logits.double(), expected, atol=1e-4, rtol=0)


def test_convert_without_cfg_uses_preset(tmp_path: Path) -> None:
    # The k600 preset: 16 frames in segments of 8, div 8. The tiny head has HEAD_HEADS heads
    # (not the preset's 12) and 5 classes (not 600): both given on the command line.
    state = released_state(5)
    ckpt = save_released(tmp_path / "nocfg.pth", state, cfg=None)
    assert (
        run_convert(
            str(ckpt),
            "--out",
            str(tmp_path / "b"),
            "--preset",
            "k600",
            "--num-heads",
            str(HEADS),
            "--head-num-heads",
            str(HEAD_HEADS),
            "--num-classes",
            "5",
        )
        == 0
    )
    model = load_model(tmp_path / "b")
    cfg = model.config
    assert (cfg.num_frames, cfg.segment_len, cfg.shift_div, cfg.temp_embed_frames) == (16, 8, 8, 8)
    x = video(3, batch=1)
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(logits.double(), released_forward(state, x, 8, 8), atol=1e-4, rtol=0)


def test_convert_without_cfg_or_preset_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = save_released(tmp_path / "nocfg.pth", released_state(5), cfg=None)
    with pytest.raises(CheckpointError, match=r"nocfg\.pth.*no 'cfg'.*--preset"):
        convert_official(ckpt, tmp_path / "a")
    # the command reports it on stderr with exit code 2 (bad input), and writes nothing
    assert run_convert(str(ckpt), "--out", str(tmp_path / "a")) == 2
    assert "no 'cfg'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_a_file_that_is_not_a_checkpoint_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A video, a text file or a missing file given as the checkpoint: exit 2, one line saying
    what it is not (not the safe loader's multi-line advice), nothing written."""
    mp4 = tmp_path / "clip.mp4"
    mp4.write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(64))
    text = tmp_path / "notes.pth"
    text.write_text("hello\n")
    for path, says in (
        (mp4, "not a weights file (it is a video)"),
        (text, "not a weights file"),
        (tmp_path / "nope.pyth", "no such checkpoint file"),
    ):
        assert run_convert(str(path), "--out", str(tmp_path / "a")) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
    pickled = tmp_path / "objects.pth"
    torch.save({"cfg": argparse.Namespace(a=1), "state": {}}, pickled)  # an object the safe loader refuses
    assert run_convert(str(pickled), "--out", str(tmp_path / "a")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused by the safe loader" in err[0], err
    assert not (tmp_path / "a").exists()


def test_convert_num_classes_must_fit_weights(tmp_path: Path) -> None:
    ckpt = save_released(tmp_path / "x.pth", released_state(5), cfg=None)
    with pytest.raises(CheckpointError, match="600 classes.*has 5"):
        convert_official(ckpt, tmp_path / "o", preset="k600", num_heads=HEADS, head_num_heads=HEAD_HEADS)


def test_convert_avg_consensus_uses_new_fc(tmp_path: Path) -> None:
    """CONSENSUS_TYPE avg: the average of new_fc over the frames; consensus.* absent."""
    state = {k: v for k, v in released_state(9).items() if not k.startswith("consensus.")}
    cfg = yaml.safe_load(released_cfg(9, 16, 4))
    cfg["XVIT"]["CONSENSUS_TYPE"] = "avg"
    ckpt = save_released(tmp_path / "avg.pth", state, yaml.safe_dump(cfg))
    convert_official(ckpt, tmp_path / "o", num_heads=HEADS)
    model = load_model(tmp_path / "o")
    assert model.config.head == "avg"
    x = video(5, batch=1)
    with torch.no_grad():
        logits = model(x)
    # the released backbone (mixing in one segment of 16, div 4), new_fc on every frame,
    # the mean over the frames (TSM's ConsensusModule('avg'))
    per_frame = _released_features(state, x, 16, 4)
    expected = F.linear(per_frame, state["new_fc.weight"].double(), state["new_fc.bias"].double()).mean(dim=1)
    torch.testing.assert_close(logits.double(), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("use_xvit", "locations"), [(True, [1, 5, 12]), (False, [0, 1])], ids=["some-blocks", "use-xvit-off"]
)
def test_convert_mixing_layers(tmp_path: Path, use_xvit: bool, locations: list[int]) -> None:
    """XVIT.LOCATIONS_LIST picks the blocks that mix (indices past the depth ignored, as in
    the released code); XVIT.USE_XVIT False turns mixing off."""
    state = released_state(6)
    cfg = yaml.safe_load(released_cfg(6, 8, 8))
    cfg["XVIT"].update(USE_XVIT=use_xvit, LOCATIONS_LIST=locations)
    ckpt = save_released(tmp_path / "x.pth", state, yaml.safe_dump(cfg))
    convert_official(ckpt, tmp_path / "o", num_heads=HEADS)
    model = load_model(tmp_path / "o")
    x = video(6, batch=1)
    with torch.no_grad():
        logits = model(x)
    mixing = [i for i in locations if i < DEPTH] if use_xvit else []
    torch.testing.assert_close(
        logits.double(), released_forward(state, x, 8, 8, mix=mixing), atol=1e-4, rtol=0
    )


def test_convert_strips_ddp_prefix(tmp_path: Path) -> None:
    state = released_state(6)
    ckpt = save_released(
        tmp_path / "ddp.pth", {f"module.{k}": v for k, v in state.items()}, released_cfg(6, 8, 8)
    )
    assert run_convert(str(ckpt), "--out", str(tmp_path / "o"), "--num-heads", str(HEADS)) == 0
    x = video(4, batch=1)
    with torch.no_grad():
        logits = load_model(tmp_path / "o")(x)
    torch.testing.assert_close(logits.double(), released_forward(state, x, 8, 8), atol=1e-4, rtol=0)


def test_convert_lists_unexpected_and_missing_keys(tmp_path: Path) -> None:
    state = released_state(6)
    state["base_model.extra_thing.weight"] = torch.zeros(3)
    state["something_else"] = torch.zeros(1)
    del state["consensus.mlp_head.0.bias"]
    ckpt = save_released(tmp_path / "bad.pth", state, released_cfg(6, 8, 8))
    with pytest.raises(CheckpointError) as err:
        convert_official(ckpt, tmp_path / "o", num_heads=HEADS)
    msg = str(err.value)
    assert "bad.pth" in msg
    assert "unexpected" in msg and "base_model.extra_thing.weight" in msg and "something_else" in msg
    assert "missing" in msg and "consensus.mlp_head.0.bias" in msg
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_convert_rejects_wrong_shapes(tmp_path: Path) -> None:
    state = released_state(6)
    state["consensus.temporal_encoder.0.mlp.fc1.weight"] = torch.zeros(4 * D, D + 1)
    ckpt = save_released(tmp_path / "shape.pth", state, released_cfg(6, 8, 8))
    with pytest.raises(
        CheckpointError, match=r"temporal_encoder\.0\.mlp\.fc1\.weight: checkpoint \(256, 65\)"
    ):
        convert_official(ckpt, tmp_path / "o", num_heads=HEADS)


def test_convert_truncated_or_missing_file(tmp_path: Path) -> None:
    ckpt = save_released(tmp_path / "full.pth", released_state(6), released_cfg(6, 8, 8))
    data = ckpt.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth.*truncated"):
        convert_official(cut, tmp_path / "o", num_heads=HEADS)
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        convert_official(tmp_path / "nope.pth", tmp_path / "o")


def test_convert_refuses_pickled_objects(tmp_path: Path) -> None:
    """Only tensors and plain containers: torch.load(weights_only=True) refuses the rest."""
    ckpt = tmp_path / "evil.pth"
    torch.save(
        {"model_state": released_state(6), "cfg": released_cfg(6, 8, 8), "args": argparse.Namespace(lr=0.1)},
        ckpt,
    )
    with pytest.raises(CheckpointError, match=r"evil\.pth.*weights_only"):
        convert_official(ckpt, tmp_path / "o", num_heads=HEADS)


def test_num_heads_follow_base_model_name_or_width() -> None:
    assert infer_num_heads("vit_base_patch16_224_in21k", 768) == 12
    assert infer_num_heads("vit_large_patch16_224_in21k", 1024) == 16
    assert infer_num_heads("vit_small_patch16_224", 384) == 6
    assert infer_num_heads(None, 192) == 3
    with pytest.raises(CheckpointError, match="--num-heads"):
        infer_num_heads("vit_tiny_custom", 100)
