"""Named model definitions (timm-style) and `create_model` / `list_models`.

Every registered function returns the `VideoViTConfig` of one model; `create_model` fills in
classes, frames, image size, head and any field override, then builds the `VideoViT`.
Names: `{family}_{size}_patch16` for the families below and sizes tiny/small/base/large.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xvit.models.heads import HEAD_TYPES
from xvit.models.imagenet import load_pretrained
from xvit.models.video_vit import VideoViT, VideoViTConfig
from xvit.models.weights import HF_HUB_PREFIX, fetch_hub_weights, fetch_weights, resolve_pretrained

_MODELS: dict[str, Callable[[], VideoViTConfig]] = {}
_ALLOWED_HEADS: dict[str, tuple[str, ...]] = {}

ModelFn = Callable[[], VideoViTConfig]


def _add(name: str, fn: ModelFn, heads: tuple[str, ...]) -> None:
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    unknown = [h for h in heads if h not in HEAD_TYPES]
    if unknown:
        raise ValueError(f"model {name!r}: unknown head(s) {unknown}; expected {HEAD_TYPES}")
    _MODELS[name] = fn
    _ALLOWED_HEADS[name] = tuple(heads)


def register_model(fn: ModelFn | None = None, *, heads: tuple[str, ...] = HEAD_TYPES) -> Any:
    """Decorator registering a config function under its own name; `heads` are the heads
    the model may be built with (default: all of `xvit.models.heads.HEAD_TYPES`)."""

    def wrap(f: ModelFn) -> ModelFn:
        _add(f.__name__, f, heads)
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
    head_cls="token",  # ViViT's encoder: a learned CLS token alone
)


# family -> (its config fields, the heads it may be built with); every family in every size
_FAMILIES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "vit": (_SPATIAL, HEAD_TYPES),
    "xvit": (_XVIT, HEAD_TYPES),
    "xvit_st": (_XVIT_ST, HEAD_TYPES),
    "tsm_vit": (_TSM, HEAD_TYPES),
    "timesformer": (_TIMESFORMER, HEAD_TYPES),
    "joint_vit": (_JOINT, HEAD_TYPES),
    "vivit_fe": (_VIVIT_FE, ("ta",)),
}
for _family, (_fields, _heads) in _FAMILIES.items():
    for _size in _SIZES:
        _add(f"{_family}_{_size}_patch16", functools.partial(_vit, _size, **_fields), _heads)


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

    `head` replaces the model's default head (one of `HEAD_TYPES`); `overrides` set any
    other `VideoViTConfig` field (e.g. `mix_split="even"`, `drop_path_rate=0.1`).
    `pretrained` initialises the backbone (`xvit.models.imagenet.load_pretrained`) from an
    image-ViT checkpoint file (timm / HF / JAX npz), a registry name (`"vit-b16-in21k"`,
    `"xvit-b16-k600"`; `xvit models --weights`), a tag resolved for this model's width and
    depth (`"in21k"`, `"in1k"`, `"augreg_in21k"`, ...) or `"hf-hub:ORG/NAME"`; named weights
    are downloaded and converted on first use (`xvit.models.weights`). Unknown names raise
    `ValueError`, unknown options `TypeError`, both listing close matches.
    """
    config = model_config(name, num_classes, num_frames, img_size, head, **overrides)
    source = None if pretrained is None else pretrained_source(pretrained, config)
    model = VideoViT(config)
    if source is not None:
        load_pretrained(model, source() if callable(source) else source)
    return model


def pretrained_source(
    pretrained: str | os.PathLike[str], config: VideoViTConfig
) -> str | os.PathLike[str] | Callable[[], os.PathLike[str]]:
    """What `create_model(pretrained=...)` loads: the path itself, or (for a registry name, a
    tag or `hf-hub:`) a function that downloads and converts it. Names are checked against
    the model here, before anything is built or downloaded (`ValueError`)."""
    text = str(pretrained)
    if text.startswith(HF_HUB_PREFIX):
        return functools.partial(fetch_hub_weights, text)
    if Path(text).exists() or "/" in text or os.sep in text or "." in text:
        return pretrained  # a file or directory (a missing one is reported by load_pretrained)
    entry = resolve_pretrained(text, config.embed_dim, config.depth, config.name or "the model")
    return functools.partial(fetch_weights, entry.name)
