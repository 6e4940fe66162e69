"""Released X-ViT checkpoints (the authors' PySlowFast fork): reading one and describing the
model it holds (`xvit.models.convert_official` turns it into a `save_pretrained` directory).

A released file is a `torch.save` dict with `epoch`, `model_state`, `optimizer_state` and
`cfg` (the run's PySlowFast config as a YAML string; some files lack it). The model reads:

* `base_model.*`: a timm ViT (`cls_token`, `pos_embed`, `temp_embed` with 8 entries repeated
  every 8 frames, `patch_embed.proj`, `blocks.i.*`, `norm`, the in21k `pre_logits.fc` + tanh),
  LayerNorm eps 1e-6, qkv with bias; in the blocks listed in `XVIT.LOCATIONS_LIST` the keys
  and values are shifted on the concatenated-heads channel axis (first C/div channels from
  frame t+1, next C/div from t-1) within segments of `XVIT.NUM_SEGMENTS` frames;
* `consensus.*`: the temporal-attention head (`CONSENSUS_TYPE: vit`): a CLS token, blocks with
  LayerNorm eps 1e-5 and qkv without bias, then `mlp_head` LayerNorm -> Linear -> GELU ->
  Dropout -> Linear (indices 0, 1, 4);
* `new_fc.*`: the classifier of the averaging head (`CONSENSUS_TYPE: avg`), unused with `vit`.

Dimensions come from the weight shapes; frames, segments, div, mixing layers, head sizes,
classes and normalisation come from `cfg` (or a preset). The number of attention heads is
not stored: it follows `XVIT.BASE_MODEL` or the width (192 -> 3, 384 -> 6, 768 -> 12,
1024 -> 16).
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from xvit.models.storage import CheckpointError, torch_load

# The defaults of the released PySlowFast fork (slowfast/config/defaults.py) for the keys the
# model reads: a config that lacks a key behaves as PySlowFast would, with its default.
RELEASED_DEFAULTS: dict[str, Any] = {
    "DATA": {"NUM_FRAMES": 8, "MEAN": [0.45, 0.45, 0.45], "STD": [0.225, 0.225, 0.225]},
    "XVIT": {
        "NUM_SEGMENTS": 8,
        "CONSENSUS_TYPE": "vit",
        "BEFORE_SOFTMAX": True,
        "USE_XVIT": True,
        "SHIFT_DIV": 8,
        "BASE_MODEL": "vit_base_patch16_224_in21k",
        "LOCATIONS_LIST": [9, 10, 11],
        "BACKBONE": {"NORM_LAYER": "LN"},
    },
    "TEMPORAL_HEAD": {"NUM_ATTENTION_HEADS": 12, "NUM_HIDDEN_LAYERS": 1, "MLP_DIM": 768},
    "MODEL": {"NUM_CLASSES": 400, "DROPOUT_RATE": 0.5},
}


def _released_preset(segment_len: int, shift_div: int, num_classes: int) -> dict[str, Any]:
    """The cfg of a released XViT-B/16 (16 frames, in21k ViT-B/16, mixing in every block,
    TA head with 12 heads and MLP_DIM 768, inputs normalised with mean = std = 0.5)."""
    return {
        "DATA": {"NUM_FRAMES": 16, "MEAN": [0.5, 0.5, 0.5], "STD": [0.5, 0.5, 0.5]},
        "XVIT": {
            "NUM_SEGMENTS": segment_len,
            "SHIFT_DIV": shift_div,
            "CONSENSUS_TYPE": "vit",
            "USE_XVIT": True,
            "LOCATIONS_LIST": list(range(15)),  # as released: every block (and past the depth)
            "BASE_MODEL": "vit_base_patch16_224_in21k",
        },
        "TEMPORAL_HEAD": {"NUM_ATTENTION_HEADS": 12, "NUM_HIDDEN_LAYERS": 1, "MLP_DIM": 768},
        "MODEL": {"NUM_CLASSES": num_classes},
    }


PRESETS: dict[str, dict[str, Any]] = {
    "k600": _released_preset(segment_len=8, shift_div=8, num_classes=600),  # Kinetics-600
    "ssv2": _released_preset(segment_len=16, shift_div=4, num_classes=174),  # SSv2
}

_HEADS_BY_SIZE = {"tiny": 3, "small": 6, "base": 12, "large": 16, "huge": 16}
_HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}


def infer_num_heads(base_model: str | None, embed_dim: int) -> int:
    """Backbone attention heads (not stored in the weights): from the timm model name
    (`vit_base_...` -> 12) or else from the width (192 -> 3, 384 -> 6, 768 -> 12, 1024 -> 16)."""
    if base_model:
        m = re.search(r"(?:^|_)(tiny|small|base|large|huge)(?:_|$)", base_model)
        if m and _HEADS_BY_WIDTH.get(embed_dim) == _HEADS_BY_SIZE[m.group(1)]:
            return _HEADS_BY_SIZE[m.group(1)]
    if embed_dim in _HEADS_BY_WIDTH:
        return _HEADS_BY_WIDTH[embed_dim]
    raise CheckpointError(
        f"cannot tell the number of attention heads of a width-{embed_dim} backbone "
        f"(base model {base_model!r}); pass --num-heads"
    )


# --------------------------------------------------------------------------------------------
# Reading the file and its config
# --------------------------------------------------------------------------------------------


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_official_checkpoint(
    path: str | os.PathLike[str],
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """`(model_state, cfg)` of a released checkpoint, read with `torch.load(weights_only=True)`.

    `cfg` is the parsed YAML (`yaml.safe_load`), or None when the file has none. A
    DistributedDataParallel `module.` prefix is removed.
    """
    import yaml

    path = Path(path)
    ckpt = torch_load(path)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path}: expected a dict with 'model_state', got {type(ckpt).__name__}")
    if "model_state" in ckpt:
        state = ckpt["model_state"]
    elif any(str(k).startswith(("base_model.", "module.base_model.")) for k in ckpt):
        state = ckpt  # a bare state dict
    else:
        raise CheckpointError(
            f"{path}: no 'model_state' in the checkpoint (keys: {sorted(map(str, ckpt))[:10]})"
        )
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'model_state' is not a dict of tensors")
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}

    cfg: dict[str, Any] | None = None
    raw = ckpt.get("cfg") if "model_state" in ckpt else None
    if isinstance(raw, (bytes, bytearray)):
        raw = raw.decode("utf-8")
    if isinstance(raw, str) and raw.strip():
        try:
            cfg = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise CheckpointError(f"{path}: the 'cfg' YAML string does not parse ({e})") from e
    elif isinstance(raw, Mapping):
        cfg = dict(raw)
    if cfg is not None and not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: 'cfg' is not a YAML mapping")
    return state, cfg


# --------------------------------------------------------------------------------------------
# What the converted model is: settings from cfg/preset, dimensions from the weights
# --------------------------------------------------------------------------------------------


@dataclass
class OfficialModel:
    """Everything needed to rebuild a released X-ViT."""

    # from the weights
    embed_dim: int
    depth: int
    patch_size: int
    img_size: int
    in_chans: int
    mlp_ratio: float
    qkv_bias: bool
    representation_size: int | None
    temp_embed_len: int
    num_classes: int
    head: str  # "ta" or "avg"
    head_depth: int
    head_mlp_dim: int | None
    head_qkv_bias: bool
    # from cfg / preset / command line
    num_heads: int
    num_frames: int
    segment_len: int
    shift_div: int
    mix_layers: list[int]
    head_num_heads: int
    mean: list[float]
    std: list[float]
    base_model: str | None
    dropout_rate: float
    drop_path_rate: float


def _count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    if found and found != set(range(max(found) + 1)):
        raise CheckpointError(f"{prefix}*: block indices {sorted(found)} are not consecutive")
    return len(found)


def describe_checkpoint(
    state: Mapping[str, torch.Tensor],
    cfg: Mapping[str, Any] | None,
    preset: str | None = None,
    num_classes: int | None = None,
    num_heads: int | None = None,
    head_num_heads: int | None = None,
    source: object = "checkpoint",
) -> OfficialModel:
    """The released model a `model_state` + `cfg` describe (see the module docstring)."""
    if cfg is None and preset is None:
        raise CheckpointError(
            f"{source}: the checkpoint carries no 'cfg'; pass a preset (--preset k600 or ssv2)"
        )
    if preset is not None and preset not in PRESETS:
        raise CheckpointError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    c = _deep_merge(RELEASED_DEFAULTS, PRESETS[preset] if preset else {})
    c = _deep_merge(c, cfg or {})
    xv, th, data, model_cfg = c["XVIT"], c["TEMPORAL_HEAD"], c["DATA"], c["MODEL"]

    required = [
        "base_model.cls_token",
        "base_model.pos_embed",
        "base_model.temp_embed",
        "base_model.patch_embed.proj.weight",
        "base_model.blocks.0.mlp.fc1.weight",
    ]
    absent = [k for k in required if k not in state]
    if absent:
        raise CheckpointError(
            f"{source}: not a released X-ViT checkpoint; missing {absent} (first keys: {sorted(state)[:6]})"
        )
    norm = str(xv.get("BACKBONE", {}).get("NORM_LAYER", "LN"))
    if norm != "LN":
        raise CheckpointError(f"{source}: XVIT.BACKBONE.NORM_LAYER {norm!r} is not supported (LN only)")

    embed_dim = int(state["base_model.cls_token"].shape[-1])
    proj = state["base_model.patch_embed.proj.weight"]
    patch = int(proj.shape[-1])
    grid = math.isqrt(state["base_model.pos_embed"].shape[1] - 1)
    depth = _count(state, "base_model.blocks.")
    pre = state.get("base_model.pre_logits.fc.weight")

    consensus = str(xv["CONSENSUS_TYPE"])
    head_mlp_dim: int | None = None
    head_depth = 0
    if consensus == "vit":
        head = "ta"
        needed = ["consensus.mlp_head.1.weight", "consensus.mlp_head.4.weight"]
        if any(k not in state for k in needed):
            raise CheckpointError(
                f"{source}: CONSENSUS_TYPE 'vit' (the TA head) but the weights lack "
                f"{[k for k in needed if k not in state]}"
            )
        if "base_model.head.weight" in state:
            raise CheckpointError(
                f"{source}: a 'vit' consensus after a backbone classifier (base_model.head, "
                "MODEL.DROPOUT_RATE 0) is not supported"
            )
        classes_in_weights = int(state["consensus.mlp_head.4.weight"].shape[0])
        head_mlp_dim = int(state["consensus.mlp_head.1.weight"].shape[0])
        head_depth = _count(state, "consensus.temporal_encoder.")
        if cfg is not None and head_depth != int(th["NUM_HIDDEN_LAYERS"]):
            raise CheckpointError(
                f"{source}: TEMPORAL_HEAD.NUM_HIDDEN_LAYERS {th['NUM_HIDDEN_LAYERS']} but the "
                f"weights have {head_depth} consensus.temporal_encoder blocks"
            )
        if cfg is not None and head_mlp_dim != int(th["MLP_DIM"]):
            raise CheckpointError(
                f"{source}: TEMPORAL_HEAD.MLP_DIM {th['MLP_DIM']} but consensus.mlp_head.1.weight "
                f"is {tuple(state['consensus.mlp_head.1.weight'].shape)}"
            )
    elif consensus == "avg":
        head = "avg"
        if not xv.get("BEFORE_SOFTMAX", True):
            raise CheckpointError(
                f"{source}: XVIT.BEFORE_SOFTMAX False (softmax before averaging) is not supported"
            )
        fc = "new_fc.weight" if "new_fc.weight" in state else "base_model.head.weight"
        if fc not in state:
            raise CheckpointError(
                f"{source}: CONSENSUS_TYPE 'avg' but no new_fc.weight or base_model.head.weight"
            )
        classes_in_weights = int(state[fc].shape[0])
    else:
        raise CheckpointError(
            f"{source}: XVIT.CONSENSUS_TYPE {consensus!r} is not supported ('vit' or 'avg')"
        )

    classes = int(num_classes if num_classes is not None else model_cfg["NUM_CLASSES"])
    if classes != classes_in_weights:
        raise CheckpointError(
            f"{source}: {classes} classes expected (MODEL.NUM_CLASSES / preset / --num-classes) "
            f"but the classifier has {classes_in_weights}; pass --num-classes {classes_in_weights} "
            "if that is right"
        )

    num_frames = int(data["NUM_FRAMES"])
    segment = int(xv["NUM_SEGMENTS"])
    if segment <= 0 or num_frames % segment:
        raise CheckpointError(
            f"{source}: DATA.NUM_FRAMES {num_frames} is not a multiple of XVIT.NUM_SEGMENTS {segment}"
        )
    temp_len = int(state["base_model.temp_embed"].shape[1])
    if num_frames % temp_len:
        raise CheckpointError(
            f"{source}: base_model.temp_embed has {temp_len} entries, which do not tile "
            f"DATA.NUM_FRAMES {num_frames} frames"
        )
    mix = [int(i) for i in xv["LOCATIONS_LIST"] if 0 <= int(i) < depth] if xv["USE_XVIT"] else []
    base_model = xv.get("BASE_MODEL")
    return OfficialModel(
        embed_dim=embed_dim,
        depth=depth,
        patch_size=patch,
        img_size=grid * patch,
        in_chans=int(proj.shape[1]),
        mlp_ratio=state["base_model.blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
        qkv_bias="base_model.blocks.0.attn.qkv.bias" in state,
        representation_size=int(pre.shape[0]) if pre is not None else None,
        temp_embed_len=temp_len,
        num_classes=classes,
        head=head,
        head_depth=head_depth,
        head_mlp_dim=head_mlp_dim,
        head_qkv_bias="consensus.temporal_encoder.0.attn.qkv.bias" in state,
        num_heads=int(num_heads) if num_heads else infer_num_heads(base_model, embed_dim),
        num_frames=num_frames,
        segment_len=segment,
        shift_div=int(xv["SHIFT_DIV"]),
        mix_layers=sorted(set(mix)),
        head_num_heads=int(head_num_heads or th["NUM_ATTENTION_HEADS"]),
        mean=[float(v) for v in data["MEAN"]],
        std=[float(v) for v in data["STD"]],
        base_model=str(base_model) if base_model else None,
        dropout_rate=float(model_cfg.get("DROPOUT_RATE", 0.0)),
        drop_path_rate=float(xv.get("BACKBONE", {}).get("DROP_PATH_RATE", 0.0)),
    )


__all__ = [
    "PRESETS",
    "RELEASED_DEFAULTS",
    "OfficialModel",
    "describe_checkpoint",
    "infer_num_heads",
    "read_official_checkpoint",
]
