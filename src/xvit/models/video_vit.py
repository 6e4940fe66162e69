"""The one video backbone: a ViT applied to every frame whose attention is chosen per model
(and per layer for the mixing variants), followed by a temporal head.

Parameter names are timm's ViT names (`cls_token`, `pos_embed`, `patch_embed.proj`,
`blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`, `norm`, `pre_logits.fc`), plus
`temp_embed (1, Tp, 1, D)`, TimeSformer's `blocks.i.{temporal_norm1,temporal_attn,temporal_fc}`
for divided attention, and the head under `head.*`. See docs/design.md.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from xvit.models.attention import MIX_SPLITS, ChannelShift
from xvit.models.heads import HEAD_CLASSIFIERS, HEAD_CLS_INPUTS, HEAD_TYPES, build_head, trunc_normal_linear
from xvit.models.layers import TEMP_EMBED_MODES, PatchEmbed, resize_pos_embed, resize_temp_embed
from xvit.models.storage import save_pretrained
from xvit.models.variants import ATTENTION_TYPES, VARIANTS


@dataclass
class VideoViTConfig:
    """Every architectural choice of a `VideoViT`, plus its preprocessing; JSON round-trips
    with `to_dict()` / `from_dict()`.

    attention: "spatial" (per frame), "mixing" (X-ViT), "summary" (X-ViT + summary token),
        "tsm" (TSM-ViT: shifted block input), "divided" (TimeSformer), "joint" (all T*S
        tokens); see `xvit.models.variants`. For the variants that move channels in time
        (mixing, summary, tsm), `mix_layers` lists the layers that mix/shift (None: all; the
        others are spatial). "divided" and "joint" keep one CLS per clip.
    mix_*: window w, channel split ("released" or "even"), `shift_div` (fold = C // div for
        the released split and for TSM), mixing the queries too, and `segment_len` (no mixing
        across segment boundaries; None: the whole clip is one segment).
    temp_embed_frames: Tp, the entries of the learnable temporal embedding (None: num_frames);
        for another clip length it is resized ("interpolate", linear) or repeated every Tp
        frames ("tile", the released X-ViT behaviour). `temp_embed_cls` adds it to the CLS
        tokens too (X-ViT released) rather than to the patch tokens only (TimeSformer).
    head: "avg" (mean of per-frame logits), "linear" (linear on the mean feature), "ta"
        (temporal attention: `head_depth` blocks over a new CLS and the T frame features,
        with `head_num_heads` heads (None: num_heads), qkv bias `head_qkv_bias`, LayerNorm
        eps `head_norm_eps`, optional `head_pos_embed`, and the classifier
        `head_classifier` "linear" (LayerNorm, Dropout, Linear; the default, as ViViT's) or
        "mlp" (LayerNorm, Linear(D, head_mlp_dim), GELU, Dropout, Linear; released X-ViT,
        kept by converted checkpoints: trained from scratch at the recipe's rate it learned
        slower than averaging and stayed at chance on a harder task, docs/results.md)). `head_cls`: what the
        head's CLS enters its blocks as: "mean" (the learned token plus the mean of the frame
        features: the default, the head starts from what averaging sees and cannot settle on
        an output of its own) or "token" (the learned token alone: released X-ViT, ViViT).
        `head_drop_rate` is the dropout before the classifier.
    representation_size: the ImageNet-21k representation layer `pre_logits.fc` + tanh on the
        final CLS (None: none).
    class_names, mean, std, multi_label: what the outputs mean and what input they expect
        (`multi_label`: one sigmoid per class instead of a softmax over the classes).
    """

    name: str = ""
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_frames: int = 8
    num_classes: int = 400
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    representation_size: int | None = None
    attention: str = "spatial"
    mix_layers: list[int] | None = None
    mix_window: int = 1
    mix_split: str = "released"
    shift_div: int = 8
    mix_queries: bool = False
    segment_len: int | None = None
    temp_embed_frames: int | None = None
    temp_embed_mode: str = "interpolate"
    temp_embed_cls: bool = True
    head: str = "avg"
    head_drop_rate: float = 0.0
    head_depth: int = 1
    head_num_heads: int | None = None
    head_mlp_dim: int | None = None
    head_qkv_bias: bool = False
    head_norm_eps: float = 1e-5
    head_pos_embed: bool = False
    head_classifier: str = "linear"
    head_cls: str = "mean"
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    class_names: list[str] | None = None
    # The classes are not exclusive: read the logits with a sigmoid per class, not a softmax
    # (trained with binary cross-entropy); only how the outputs are read, not the network.
    multi_label: bool = False

    def __post_init__(self) -> None:
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if self.mix_layers is not None:
            self.mix_layers = [int(i) for i in self.mix_layers]
        if self.class_names is not None:
            self.class_names = [str(c) for c in self.class_names]
        self.validate()

    def validate(self) -> None:
        """Raise `ValueError` naming the first field that is out of range."""
        choices = {
            "attention": ATTENTION_TYPES,
            "head": HEAD_TYPES,
            "mix_split": MIX_SPLITS,
            "temp_embed_mode": TEMP_EMBED_MODES,
            "head_classifier": HEAD_CLASSIFIERS,
            "head_cls": HEAD_CLS_INPUTS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}={getattr(self, key)!r}; expected one of {allowed}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not divisible by patch_size {self.patch_size}")
        for key in ("num_frames", "depth", "num_heads", "patch_size", "shift_div", "head_depth"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.segment_len is not None and self.segment_len < 1:
            raise ValueError(f"segment_len must be >= 1 or None, got {self.segment_len}")
        bad = [i for i in self.mix_layers or [] if not 0 <= i < self.depth]
        if bad:
            raise ValueError(f"mix_layers {bad} outside the {self.depth} layers")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} names for num_classes={self.num_classes}"
            )
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"mean {self.mean} / std {self.std} need {self.in_chans} values")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VideoViTConfig:
        """The config from `to_dict()` output; unknown keys raise `ValueError` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown VideoViTConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)


class VideoViT(nn.Module):
    """Video ViT: `(B, 3, T, H, W)` normalised frames -> `(B, num_classes)` logits."""

    def __init__(self, config: VideoViTConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        c = config
        dim = c.embed_dim
        self.num_features = self.embed_dim = dim
        self.patch_embed = PatchEmbed(c.img_size, c.patch_size, c.in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, dim))
        self.temp_embed = nn.Parameter(torch.zeros(1, c.temp_embed_frames or c.num_frames, 1, dim))
        self.pos_drop = nn.Dropout(c.drop_rate)

        shift = ChannelShift(c.mix_window, c.mix_split, c.shift_div, c.segment_len, c.mix_queries)
        # stochastic depth decays linearly from 0 (first block) to drop_path_rate (last)
        dpr = [c.drop_path_rate * i / max(c.depth - 1, 1) for i in range(c.depth)]
        self.blocks = nn.ModuleList(
            VARIANTS[kind].build(
                shift,
                dim=dim,
                num_heads=c.num_heads,
                mlp_ratio=c.mlp_ratio,
                qkv_bias=c.qkv_bias,
                norm_eps=c.norm_eps,
                drop=c.drop_rate,
                attn_drop=c.attn_drop_rate,
                drop_path=dpr[i],
            )
            for i, kind in enumerate(layer_kinds(c))
        )
        # resolved once: whether segment_len applies to the input (see check_input)
        self.uses_segments = VARIANTS[c.attention].temporal
        self.norm = nn.LayerNorm(dim, eps=c.norm_eps)
        if c.representation_size:
            self.pre_logits = nn.Sequential()
            self.pre_logits.add_module("fc", nn.Linear(dim, c.representation_size))
            self.pre_logits.add_module("act", nn.Tanh())
            self.num_features = c.representation_size
        else:
            self.pre_logits = nn.Identity()
        self.head = build_head(c, self.num_features)
        self.grad_checkpointing = False
        self.init_weights()

    def init_weights(self) -> None:
        """timm's ViT initialisation of the backbone: truncated normal (std 0.02) for linear
        layers and the position embedding, small normal CLS, zero temporal embedding;
        TimeSformer's `temporal_fc` starts at zero so a divided block starts as a spatial
        one. The head initialises itself (`heads.py`: the TA head as the released X-ViT
        builds it, apart from the backbone)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.zeros_(self.temp_embed)
        head = set(self.head.modules())
        for m in self.modules():
            if m in head:
                continue
            if isinstance(m, nn.Linear):
                trunc_normal_linear(m)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for blk in self.blocks:
            blk.init_weights()
        self.head.init_weights()

    # -- API used by the engine ------------------------------------------------------------

    def reset_head(self, **fields: Any) -> None:
        """Set the config's head `fields` (e.g. `head_classifier="mlp"`) and build a new,
        freshly initialised head from them, on the device and dtype of the old one."""
        old = next(self.head.parameters(), None)
        for key, value in fields.items():
            if not key.startswith("head"):
                raise ValueError(f"reset_head: {key!r} is not a head field")
            setattr(self.config, key, value)
        self.config.validate()
        self.head = build_head(self.config, self.num_features)
        self.head.init_weights()
        if old is not None:
            self.head.to(device=old.device, dtype=old.dtype)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write `config.json` and `model.safetensors` into `directory` (`xvit.models.storage`;
        `xvit.load_model` reads them back)."""
        return save_pretrained(self, directory)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool | None = None,
        revision: str | None = None,
        commit_message: str = "Upload xvit model",
    ) -> str:
        """Upload `config.json`, `model.safetensors` and a model card to the Hugging Face Hub
        repo `repo_id` (created when missing; `$HF_ENDPOINT` honoured); returns the commit
        URL. `xvit.load_model("hf-hub:" + repo_id)` loads it back. Needs `xvit[hub]`."""
        import tempfile

        from xvit.models.download import upload_folder

        with tempfile.TemporaryDirectory(prefix="xvit-push-") as tmp:
            save_pretrained(self, tmp, repo_id=repo_id)
            return upload_folder(
                tmp, repo_id, token=token, private=private, revision=revision, commit_message=commit_message
            )

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay (embeddings and CLS tokens)."""
        names = {"pos_embed", "cls_token", "temp_embed", "head.cls_token", "head.pos_embed"}
        return names & {n for n, _ in self.named_parameters()}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute every block in the backward pass instead of storing its activations."""
        self.grad_checkpointing = enable

    # -- forward ---------------------------------------------------------------------------

    def check_input(self, x: torch.Tensor) -> None:
        """Raise `ValueError` naming the shape when `x` is not a valid `(B, C, T, H, W)` clip."""
        c = self.config
        shape = tuple(x.shape)
        if x.ndim != 5:
            raise ValueError(f"expected a (B, {c.in_chans}, T, H, W) clip, got a tensor of shape {shape}")
        _, ch, t, h, w = x.shape
        if ch != c.in_chans:
            raise ValueError(
                f"input {shape} has {ch} channels at dim 1; expected {c.in_chans} (layout (B, C, T, H, W))"
            )
        if h % c.patch_size or w % c.patch_size:
            raise ValueError(
                f"input {shape}: H={h} and W={w} must be multiples of the patch size {c.patch_size}"
            )
        if self.uses_segments and c.segment_len is not None and t % c.segment_len:
            raise ValueError(f"input {shape}: T={t} frames is not a multiple of segment_len={c.segment_len}")
        tp = self.temp_embed.shape[1]
        if c.temp_embed_mode == "tile" and t % tp:
            raise ValueError(f"input {shape}: T={t} is not a multiple of the {tp} tiled temporal embeddings")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, C, T, H, W)` -> `(B, T, N, D)` tokens with position and temporal embeddings."""
        self.check_input(x)
        return self._tokens(x, resize_temp_embed(self.temp_embed, x.shape[2], self.config.temp_embed_mode))

    def _tokens(self, x: torch.Tensor, temp: torch.Tensor) -> torch.Tensor:
        """Patch tokens of `(B, C, T, H, W)` frames plus CLS, position and the `(1, T, 1, D)`
        temporal embedding `temp`: `(B, T, N, D)`."""
        b, ch, t, h, w = x.shape
        p = self.config.patch_size
        x = x.transpose(1, 2).reshape(b * t, ch, h, w)
        x = self.patch_embed(x)  # (B*T, S, D)
        cls = self.cls_token.expand(b * t, -1, -1)
        x = torch.cat([cls, x], dim=1) + resize_pos_embed(self.pos_embed, (h // p, w // p))
        x = x.view(b, t, x.shape[1], x.shape[2])
        if self.config.temp_embed_cls:
            x = x + temp
        else:
            x = torch.cat([x[:, :, :1], x[:, :, 1:] + temp], dim=2)
        return self.pos_drop(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, C, T, H, W)` -> `(B, T, F)` per-frame features: the final-norm CLS of every
        frame, through the representation layer when there is one."""
        return self._backbone(self.embed(x))

    def _backbone(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, T, N, D)` embedded tokens -> `(B, T, F)` per-frame features."""
        for blk in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return self.pre_logits(self.norm(x[:, :, 0]))

    # -- segment reuse: sliding windows that share whole segments -----------------------------

    def _reuse_unit(self) -> tuple[int | None, str]:
        """(unit, "") or (None, why): see `segment_len_for_reuse`."""
        c, t = self.config, self.config.num_frames
        kinds = layer_kinds(c)
        for kind in dict.fromkeys(kinds):
            if VARIANTS[kind].clip_wide:
                return None, f"attention={kind}: {VARIANTS[kind].clip_wide}"
        moves = any(VARIANTS[kind].temporal for kind in kinds)
        segment = (c.segment_len or t) if moves else 1
        if segment >= t:
            return None, (
                f"attention={c.attention} moves channels across all {t} frames of the clip "
                "(segment_len is not set)"
            )
        with torch.no_grad():
            period = temp_embed_period(resize_temp_embed(self.temp_embed, t, c.temp_embed_mode))
        unit = math.lcm(segment, period)
        if unit >= t:
            return None, (
                f"the temporal embedding (temp_embed_mode={c.temp_embed_mode}, "
                f"{self.temp_embed.shape[1]} entries) differs at each of the {t} positions of the "
                "clip, so a frame's features depend on where it sits in the window"
            )
        return unit, ""

    @property
    def segment_len_for_reuse(self) -> int | None:
        """The fewest frames U (a divisor of num_frames) such that, for every block of U
        consecutive clip positions starting at a multiple of U, the per-frame features of
        those frames depend only on those frames, not on the rest of the clip nor on where
        the block sits in the clip; None when there is no such U below num_frames.

        U is the least common multiple of the segment frames meet in (1 for per-frame
        attention, `segment_len` for mixing and TSM; the variants whose frames meet across
        the whole clip have none, see `variants.AttentionVariant.clip_wide`) and the period
        of the temporal embedding over the clip (read from its values: the released
        `temp_embed_mode="tile"` layout repeats every `temp_embed_frames`). Two windows that
        overlap by whole such blocks share those frames' features exactly
        (`forward_segment_features`); `why_no_segment_reuse` says why when it is None.
        """
        return self._reuse_unit()[0]

    def why_no_segment_reuse(self) -> str:
        """Why `segment_len_for_reuse` is None, in one clause ("" when it is not)."""
        return self._reuse_unit()[1]

    def forward_segment_features(self, x: torch.Tensor, offset: int) -> torch.Tensor:
        """Per-frame features of the `(B, C, L, H, W)` frames at clip positions
        `offset .. offset+L-1` of a `num_frames` clip: `(B, L, F)`, equal to
        `forward_features(clip)[:, offset:offset+L]`. `offset` and `L` must be multiples of
        `segment_len_for_reuse` (a `ValueError` otherwise, or when there is none)."""
        unit, why = self._reuse_unit()
        t = self.config.num_frames
        if unit is None:
            raise ValueError(f"no segment reuse for this model: {why}")
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, L, H, W) frames, got a tensor of shape {tuple(x.shape)}")
        length = x.shape[2]
        if length < 1 or offset < 0 or offset + length > t or offset % unit or length % unit:
            raise ValueError(
                f"frames {offset}..{offset + length - 1} of a {t}-frame clip: offset and length must "
                f"be multiples of {unit} (segment_len_for_reuse) inside the clip"
            )
        temp = resize_temp_embed(self.temp_embed, t, self.config.temp_embed_mode)
        return self._backbone(self._tokens(x, temp[:, offset : offset + length]))

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """`(B, T, F)` per-frame features -> `(B, num_classes)` logits."""
        return self.head(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def temp_embed_period(temp: torch.Tensor) -> int:
    """The smallest P dividing T with `temp[:, i] == temp[:, i % P]` exactly for every i, for
    a `(1, T, 1, D)` temporal embedding (1 when all entries are equal, T when none repeat)."""
    t = temp.shape[1]
    for period in range(1, t + 1):
        if t % period == 0 and torch.equal(temp, temp[:, :period].repeat(1, t // period, 1, 1)):
            return period
    return t


def layer_kinds(config: VideoViTConfig) -> Sequence[str]:
    """The attention variant of every layer ("spatial", "mixing", ...), as the model builds
    it: `mix_layers` picks the layers of a variant that moves channels in time."""
    if not VARIANTS[config.attention].temporal or config.mix_layers is None:
        return [config.attention] * config.depth
    mix = set(config.mix_layers)
    return [config.attention if i in mix else "spatial" for i in range(config.depth)]


__all__ = ["VideoViT", "VideoViTConfig", "layer_kinds", "temp_embed_period"]
