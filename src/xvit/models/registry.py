"""Named model definitions (timm-style) and `create_model` / `list_models`.

Every registered function returns the `VideoViTConfig` of one model; `create_model` fills in
classes, frames, image size, head and any field override, then builds the `VideoViT`.
Names: `{family}_{size}_patch16` for the families below and sizes tiny/small/base/large.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import os
from collections.abc import Callable
from typing import Any

from xvit.models.video_vit import VideoViT, VideoViTConfig

_MODELS: dict[str, Callable[[], VideoViTConfig]] = {}
_ALLOWED_HEADS: dict[str, tuple[str, ...]] = {}

ModelFn = Callable[[], VideoViTConfig]


def register_model(
    fn: ModelFn | None = None, *, heads: tuple[str, ...] = ("avg", "linear", "ta")
) -> Any:
    """Decorator registering a config function under its own name; `heads` are the heads
    the model may be built with."""

    def wrap(f: ModelFn) -> ModelFn:
        if f.__name__ in _MODELS:
            raise ValueError(f"model {f.__name__!r} is registered twice")
        _MODELS[f.__name__] = f
        _ALLOWED_HEADS[f.__name__] = heads
        return f

    return wrap(fn) if fn is not None else wrap


# ViT sizes: (embed_dim, depth, num_heads)
_SIZES = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}


def _vit(size: str, **kw: Any) -> VideoViTConfig:
    dim, depth, heads = _SIZES[size]
    return VideoViTConfig(embed_dim=dim, depth=depth, num_heads=heads, patch_size=16, **kw)


_SPATIAL = dict(attention="spatial", head="avg")
# X-ViT: mixing in every layer, the released split with div 8 (Kinetics), temporal-attention
# head (released layout: one block, qkv without bias, LayerNorm eps 1e-5, mlp_dim = D).
_XVIT = dict(attention="mixing", mix_split="released", shift_div=8, head="ta")
_XVIT_ST = dict(attention="summary", mix_split="released", shift_div=8, head="ta")
_TSM = dict(attention="tsm", shift_div=8, head="avg")
# TimeSformer: one CLS per clip, temporal embedding on the patch tokens only.
_TIMESFORMER = dict(attention="divided", temp_embed_cls=False, head="linear")
_JOINT = dict(attention="joint", temp_embed_cls=False, head="linear")
# ViViT factorised encoder: a spatial ViT, then a 4-layer temporal transformer with its own
# position embedding and a LayerNorm + Linear classifier.
_VIVIT_FE = dict(
    attention="spatial",
    head="ta",
    head_depth=4,
    head_pos_embed=True,
    head_qkv_bias=True,
    head_norm_eps=1e-6,
    head_classifier="linear",
)


@register_model
def vit_tiny_patch16() -> VideoViTConfig:
    return _vit("tiny", **_SPATIAL)


@register_model
def vit_small_patch16() -> VideoViTConfig:
    return _vit("small", **_SPATIAL)


@register_model
def vit_base_patch16() -> VideoViTConfig:
    return _vit("base", **_SPATIAL)


@register_model
def vit_large_patch16() -> VideoViTConfig:
    return _vit("large", **_SPATIAL)


@register_model
def xvit_tiny_patch16() -> VideoViTConfig:
    return _vit("tiny", **_XVIT)


@register_model
def xvit_small_patch16() -> VideoViTConfig:
    return _vit("small", **_XVIT)


@register_model
def xvit_base_patch16() -> VideoViTConfig:
    return _vit("base", **_XVIT)


@register_model
def xvit_large_patch16() -> VideoViTConfig:
    return _vit("large", **_XVIT)


@register_model
def xvit_st_tiny_patch16() -> VideoViTConfig:
    return _vit("tiny", **_XVIT_ST)


@register_model
def xvit_st_small_patch16() -> VideoViTConfig:
    return _vit("small", **_XVIT_ST)


@register_model
def xvit_st_base_patch16() -> VideoViTConfig:
    return _vit("base", **_XVIT_ST)


@register_model
def xvit_st_large_patch16() -> VideoViTConfig:
    return _vit("large", **_XVIT_ST)


@register_model
def tsm_vit_tiny_patch16() -> VideoViTConfig:
    return _vit("tiny", **_TSM)


@register_model
def tsm_vit_small_patch16() -> VideoViTConfig:
    return _vit("small", **_TSM)


@register_model
def tsm_vit_base_patch16() -> VideoViTConfig:
    return _vit("base", **_TSM)


@register_model
def tsm_vit_large_patch16() -> VideoViTConfig:
    return _vit("large", **_TSM)


@register_model
def timesformer_tiny_patch16() -> VideoViTConfig:
    return _vit("tiny", **_TIMESFORMER)


@register_model
def timesformer_small_patch16() -> VideoViTConfig:
    return _vit("small", **_TIMESFORMER)


@register_model
def timesformer_base_patch16() -> VideoViTConfig:
    return _vit("base", **_TIMESFORMER)


@register_model
def timesformer_large_patch16() -> VideoViTConfig:
    return _vit("large", **_TIMESFORMER)


@register_model
def joint_vit_tiny_patch16() -> VideoViTConfig:
    return _vit("tiny", **_JOINT)


@register_model
def joint_vit_small_patch16() -> VideoViTConfig:
    return _vit("small", **_JOINT)


@register_model
def joint_vit_base_patch16() -> VideoViTConfig:
    return _vit("base", **_JOINT)


@register_model
def joint_vit_large_patch16() -> VideoViTConfig:
    return _vit("large", **_JOINT)


@register_model(heads=("ta",))
def vivit_fe_tiny_patch16() -> VideoViTConfig:
    return _vit("tiny", **_VIVIT_FE)


@register_model(heads=("ta",))
def vivit_fe_small_patch16() -> VideoViTConfig:
    return _vit("small", **_VIVIT_FE)


@register_model(heads=("ta",))
def vivit_fe_base_patch16() -> VideoViTConfig:
    return _vit("base", **_VIVIT_FE)


@register_model(heads=("ta",))
def vivit_fe_large_patch16() -> VideoViTConfig:
    return _vit("large", **_VIVIT_FE)


# --------------------------------------------------------------------------------------------


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered models, filtered by a glob `pattern` (e.g. "xvit_*")."""
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def _close(word: str, choices: list[str]) -> str:
    matches = difflib.get_close_matches(word, choices, n=5, cutoff=0.5)
    return f"; did you mean {', '.join(matches)}?" if matches else ""


def model_config(
    name: str,
    num_classes: int = 400,
    num_frames: int = 8,
    img_size: int = 224,
    head: str | None = None,
    **overrides: Any,
) -> VideoViTConfig:
    """The `VideoViTConfig` `create_model` builds (same arguments, no weights)."""
    if name not in _MODELS:
        hint = _close(name, list(_MODELS))
        raise ValueError(f"unknown model {name!r}{hint} (see xvit.list_models())")
    fields = [f.name for f in dataclasses.fields(VideoViTConfig)]
    unknown = [k for k in overrides if k not in fields]
    if unknown:
        hints = "; ".join(f"{k!r}{_close(k, fields)}" for k in unknown)
        raise TypeError(f"unknown model option(s) for {name}: {hints}")
    allowed = _ALLOWED_HEADS[name]
    if head is not None and head not in allowed:
        raise ValueError(f"{name} supports head {' / '.join(map(repr, allowed))}, not {head!r}")
    base = _MODELS[name]()
    values = dataclasses.asdict(base)
    values.update(name=name, num_classes=num_classes, num_frames=num_frames, img_size=img_size)
    if head is not None:
        values["head"] = head
    values.update(overrides)
    return VideoViTConfig(**values)


def create_model(
    name: str,
    num_classes: int = 400,
    num_frames: int = 8,
    img_size: int = 224,
    head: str | None = None,
    pretrained: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> VideoViT:
    """Build the registered model `name`.

    `head` replaces the model's default head ("avg", "linear" or "ta"); `overrides` set any
    other `VideoViTConfig` field (e.g. `mix_split="even"`, `drop_path_rate=0.1`).
    `pretrained` is an image-ViT checkpoint (timm / HF / JAX npz) to initialise the
    backbone from (`xvit.models.hub.load_pretrained`). Unknown names raise `ValueError`,
    unknown options `TypeError`, both listing close matches.
    """
    config = model_config(name, num_classes, num_frames, img_size, head, **overrides)
    model = VideoViT(config)
    if pretrained is not None:
        from xvit.models.hub import load_pretrained

        load_pretrained(model, pretrained)
    return model
