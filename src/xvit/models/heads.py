"""Temporal aggregation heads: `(B, T, F)` per-frame features -> `(B, num_classes)` logits.

* `AvgHead` ("avg"): dropout, a linear classifier on every frame, mean of the per-frame
  logits (TSM-style "ViT + averaging").
* `LinearHead` ("linear"): mean of the frame features, dropout, linear classifier.
* `TemporalAttentionHead` ("ta"): a new CLS token and transformer block(s) over the T frame
  features, then a classifier on the output CLS. The CLS enters as the learned token plus
  the mean of the frame features (`cls="mean"`, the default), or as the token alone
  (`"token"`, as released: converted checkpoints and ViViT). The released X-ViT layout is
  `head.cls_token`, `head.blocks.j.*` (qkv without bias, LayerNorm eps 1e-5) and
  `head.mlp_head` = LayerNorm, Linear(D, mlp_dim), GELU, Dropout, Linear (indices 0, 1, 4);
  the ViViT factorised encoder uses `head.pos_embed` and `head.norm` + `head.fc`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from xvit.models.blocks import Block


class HeadConfig(Protocol):
    """The fields of a `VideoViTConfig` that choose and size the head."""

    head: str
    num_classes: int
    num_frames: int
    num_heads: int
    mlp_ratio: float
    head_drop_rate: float
    head_depth: int
    head_num_heads: int | None
    head_mlp_dim: int | None
    head_qkv_bias: bool
    head_norm_eps: float
    head_pos_embed: bool
    head_classifier: str
    head_cls: str


def trunc_normal_linear(m: nn.Linear, std: float = 0.02) -> None:
    """timm's ViT initialisation of a linear layer: truncated normal weight, zero bias."""
    nn.init.trunc_normal_(m.weight, std=std)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


class _LinearClassifier(nn.Module):
    """`drop` and `fc` of the heads with one linear classifier."""

    def __init__(self, dim: int, num_classes: int, drop: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(dim, num_classes)

    def init_weights(self) -> None:
        """timm's: `fc` truncated normal (std 0.02), zero bias."""
        trunc_normal_linear(self.fc)


class AvgHead(_LinearClassifier):
    """Dropout, `fc` on every frame, mean of the per-frame logits."""

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(feats)).mean(dim=1)


class LinearHead(_LinearClassifier):
    """Mean of the frame features, dropout, `fc`."""

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(feats.mean(dim=1)))


class TemporalAttentionHead(nn.Module):
    """A CLS token plus `depth` pre-norm transformer blocks over the T frame features, then
    a classifier on the output CLS.

    `pos_frames` > 0 adds a learnable temporal position embedding `pos_embed (1, Tp, D)` to
    the frame features (linearly resized when T differs); the CLS gets none.
    `classifier="linear"` (the default): `norm`, Dropout(drop), `fc`; `"mlp"`: `mlp_head` =
    LayerNorm, Linear(D, mlp_dim), GELU, Dropout(drop), Linear(mlp_dim, classes) (released
    X-ViT). Trained from random weights at an AdamW recipe's rate, the MLP learned more
    slowly than averaging and on a harder task stayed at chance on one seed of two, where
    the linear classifier learns as fast as averaging (docs/results.md, "The classifier
    after the block").

    `cls="mean"` adds the mean of the T frame features to the learned CLS token before the
    blocks (no parameters added): the CLS then carries the video from the first step, as
    averaging's input does, and its self-attention cannot turn into a video-independent
    output. With the token alone (`"token"`, released), a zero token whose LayerNorm jumps to
    full scale at the first update attends mostly to itself at the peak rate of an AdamW
    recipe, the output stops depending on the video and the backbone's features converge
    to one (docs/results.md, "The temporal-attention head at the recipe's rate").
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        depth: int = 1,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        mlp_dim: int | None = None,
        qkv_bias: bool = False,
        norm_eps: float = 1e-5,
        drop: float = 0.0,
        pos_frames: int = 0,
        classifier: str = "linear",
        cls: str = "mean",
    ) -> None:
        super().__init__()
        if cls not in HEAD_CLS_INPUTS:
            raise ValueError(f"unknown head CLS input {cls!r}; expected one of {HEAD_CLS_INPUTS}")
        self.cls_mean = cls == "mean"
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_frames, dim)) if pos_frames else None
        # a "frame" of 1 + T tokens: the blocks' per-frame attention is attention over time
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio, qkv_bias, norm_eps) for _ in range(depth)
        )
        self.classifier = classifier
        if classifier == "mlp":
            hidden = mlp_dim or dim
            self.mlp_head = nn.Sequential(
                nn.LayerNorm(dim, eps=norm_eps),
                nn.Linear(dim, hidden),
                nn.GELU(),
                nn.Dropout(drop),
                nn.Linear(hidden, num_classes),
            )
        elif classifier == "linear":
            self.norm = nn.LayerNorm(dim, eps=norm_eps)
            self.drop = nn.Dropout(drop)
            self.fc = nn.Linear(dim, num_classes)
        else:
            raise ValueError(f"unknown head classifier {classifier!r}; expected one of {HEAD_CLASSIFIERS}")

    def init_weights(self) -> None:
        """As the released X-ViT builds its head (`VitHead`, constructed apart from the timm
        backbone and never re-initialised): PyTorch's default initialisation for every
        linear layer (uniform, bound 1/sqrt(fan_in)), LayerNorms at one and zero, a zero
        CLS token; the optional `pos_embed` truncated normal (std 0.02).

        Not timm's std-0.02 linears: at width 768 the two are nearly the same scale
        (1/sqrt(3 * 768) = 0.021), but at narrower widths 0.02 makes each of the head's
        linear maps shrink its input (gain 0.02 * sqrt(D), 0.2 at D = 96), and end to end
        the backbone then never learns (docs/results.md, "Why temporal attention did not
        train").
        """
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.LayerNorm):
                m.reset_parameters()
        nn.init.zeros_(self.cls_token)
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        b, t, _ = feats.shape
        cls = self.cls_token.expand(b, -1, -1)
        if self.cls_mean:
            cls = cls + feats.mean(dim=1, keepdim=True)
        if self.pos_embed is not None:
            pos = self.pos_embed
            if pos.shape[1] != t:
                pos = F.interpolate(pos.transpose(1, 2), size=t, mode="linear", align_corners=False)
                pos = pos.transpose(1, 2)
            feats = feats + pos
        x = torch.cat([cls, feats], dim=1)
        x = x.unsqueeze(1)  # (B, 1, 1+T, D)
        for blk in self.blocks:
            x = blk(x)
        cls = x[:, 0, 0]
        if self.classifier == "mlp":
            return self.mlp_head(cls)
        return self.fc(self.drop(self.norm(cls)))


def _avg(config: HeadConfig, dim: int) -> nn.Module:
    return AvgHead(dim, config.num_classes, config.head_drop_rate)


def _linear(config: HeadConfig, dim: int) -> nn.Module:
    return LinearHead(dim, config.num_classes, config.head_drop_rate)


def _temporal_attention(config: HeadConfig, dim: int) -> nn.Module:
    num_heads = config.head_num_heads or config.num_heads
    if dim % num_heads:
        raise ValueError(f"head: feature width {dim} is not divisible by head_num_heads {num_heads}")
    return TemporalAttentionHead(
        dim,
        config.num_classes,
        depth=config.head_depth,
        num_heads=num_heads,
        mlp_ratio=config.mlp_ratio,
        mlp_dim=config.head_mlp_dim,
        qkv_bias=config.head_qkv_bias,
        norm_eps=config.head_norm_eps,
        drop=config.head_drop_rate,
        pos_frames=config.num_frames if config.head_pos_embed else 0,
        classifier=config.head_classifier,
        cls=config.head_cls,
    )


# The heads by name (`config.head`): the one list of head names (in the order the CLI and
# the training config list them).
HEADS: dict[str, Callable[[HeadConfig, int], nn.Module]] = {
    "avg": _avg,
    "ta": _temporal_attention,
    "linear": _linear,
}
HEAD_TYPES = tuple(HEADS)
# Each head's learning rate as a multiple of the backbone's, when training does not set one
# (optim.head_lr_scale). The temporal-attention head is a transformer block with its own
# classifier MLP, freshly initialised; under AdamW each of its parameters moves by about the
# rate per step, and at the backbone's full rate it fits the class prior before the
# backbone's features separate the videos. With the CLS started from the frames' mean
# (head_cls="mean") and a linear classifier after the block, a tenth of the rate trains
# faster than averaging on the tasks measured; with the token alone 0.1x still collapsed one
# seed in three, 0.03x none but slowly (docs/results.md, "The temporal-attention head at the
# recipe's rate"). The linear heads train at the full rate.
HEAD_LR_SCALE: dict[str, float] = {"ta": 0.1, "avg": 1.0, "linear": 1.0}
# The classifiers of the temporal-attention head (`config.head_classifier`).
HEAD_CLASSIFIERS = ("mlp", "linear")
# What the temporal-attention head's CLS enters its blocks as (`config.head_cls`).
HEAD_CLS_INPUTS = ("mean", "token")


def build_head(config: HeadConfig, dim: int) -> nn.Module:
    """The head named by `config.head`, on `dim`-wide frame features."""
    if config.head not in HEADS:
        raise ValueError(f"unknown head {config.head!r}; expected one of {HEAD_TYPES}")
    return HEADS[config.head](config, dim)


__all__ = [
    "HEADS",
    "HEAD_CLASSIFIERS",
    "HEAD_CLS_INPUTS",
    "HEAD_LR_SCALE",
    "HEAD_TYPES",
    "AvgHead",
    "HeadConfig",
    "LinearHead",
    "TemporalAttentionHead",
    "build_head",
    "trunc_normal_linear",
]
