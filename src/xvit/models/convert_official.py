"""Released X-ViT checkpoints (the authors' PySlowFast fork) -> `save_pretrained` directories.

`xvit.models.released` reads the file and describes the model; here its keys are renamed to
xvit's (`base_model.*` -> the backbone, `consensus.*` -> `head.*`, `new_fc.*` -> `head.fc`
of the averaging head), the `VideoViTConfig` is built, every key is accounted for, and the
model is written with `save_pretrained`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from xvit.models.released import OfficialModel, describe_checkpoint, read_official_checkpoint
from xvit.models.storage import (
    CheckpointError,
    compare_state_dicts,
    format_key_problems,
    save_pretrained,
)
from xvit.models.video_vit import VideoViT, VideoViTConfig

_logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Key mapping
# --------------------------------------------------------------------------------------------


def map_released_keys(
    state: Mapping[str, torch.Tensor], head: str
) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str], list[str]]:
    """Rename released keys to xvit's. Returns `(mapped, new_name -> released_name,
    released keys deliberately unused, released keys that have no place)`."""
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unused: list[str] = []
    unknown: list[str] = []
    for key, value in state.items():
        new: str | None = None
        if key.startswith("base_model.head."):
            new = "head.fc." + key.removeprefix("base_model.head.") if head == "avg" else None
        elif key.startswith("base_model."):
            new = key.removeprefix("base_model.")
        elif key == "consensus.cls_token":
            new = "head.cls_token"
        elif m := re.match(r"^consensus\.temporal_encoder\.(\d+)\.(.+)$", key):
            new = f"head.blocks.{m.group(1)}.{m.group(2)}"
        elif m := re.match(r"^consensus\.mlp_head\.([014])\.(weight|bias)$", key):
            new = f"head.mlp_head.{m.group(1)}.{m.group(2)}"
        elif key.startswith("new_fc."):
            if head == "avg":
                new = "head.fc." + key.removeprefix("new_fc.")
            else:
                unused.append(key)
                continue
        if new is None:
            unknown.append(key)
            continue
        mapped[new] = value
        origin[new] = key
    return mapped, origin, unused, unknown


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


def build_config(desc: OfficialModel, class_names: Sequence[str] | None = None) -> VideoViTConfig:
    """The `VideoViTConfig` of the released model `desc` describes."""
    size = {192: "tiny", 384: "small", 768: "base", 1024: "large"}.get(desc.embed_dim)
    return VideoViTConfig(
        name=f"xvit_{size}_patch{desc.patch_size}" if size else "xvit_custom",
        img_size=desc.img_size,
        patch_size=desc.patch_size,
        in_chans=desc.in_chans,
        num_frames=desc.num_frames,
        num_classes=desc.num_classes,
        embed_dim=desc.embed_dim,
        depth=desc.depth,
        num_heads=desc.num_heads,
        mlp_ratio=desc.mlp_ratio,
        qkv_bias=desc.qkv_bias,
        norm_eps=1e-6,
        drop_path_rate=desc.drop_path_rate,
        representation_size=desc.representation_size,
        # the released shift: on k and v, concatenated-heads axis, first C/div channels
        # from t+1, the next C/div from t-1, within segments of NUM_SEGMENTS frames
        attention="mixing" if desc.mix_layers else "spatial",
        mix_layers=desc.mix_layers or None,
        mix_window=1,
        mix_split="released",
        shift_div=desc.shift_div,
        mix_queries=False,
        segment_len=desc.segment_len,
        # 8 entries repeated every 8 frames, added to every token (CLS included)
        temp_embed_frames=desc.temp_embed_len,
        temp_embed_mode="tile",
        temp_embed_cls=True,
        head=desc.head,
        head_drop_rate=desc.dropout_rate,  # MODEL.DROPOUT_RATE: the head's Dropout
        head_depth=max(desc.head_depth, 1),
        head_num_heads=desc.head_num_heads,
        head_mlp_dim=desc.head_mlp_dim,
        head_qkv_bias=desc.head_qkv_bias,
        head_norm_eps=1e-5,  # nn.LayerNorm's default in the released head
        head_pos_embed=False,
        head_classifier="mlp",
        head_cls="token",  # the released head's CLS: the learned token alone
        mean=tuple(desc.mean),
        std=tuple(desc.std),
        class_names=list(class_names) if class_names is not None else None,
    )


def convert_official(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    preset: str | None = None,
    num_classes: int | None = None,
    num_heads: int | None = None,
    head_num_heads: int | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Convert a released X-ViT checkpoint into a `save_pretrained` directory at `out_dir`.

    Every key of `model_state` must be accounted for (`new_fc.*` is unused with the TA
    head); missing, unexpected or mis-shaped keys raise `CheckpointError` listing them.
    """
    checkpoint = Path(checkpoint)
    state, cfg = read_official_checkpoint(checkpoint)
    desc = describe_checkpoint(state, cfg, preset, num_classes, num_heads, head_num_heads, source=checkpoint)
    if class_names is not None and len(class_names) != desc.num_classes:
        raise CheckpointError(f"{len(class_names)} class names given for a {desc.num_classes}-class model")
    mapped, origin, unused, unknown = map_released_keys(state, desc.head)
    model = VideoViT(build_config(desc, class_names))
    target = model.state_dict()
    missing, unexpected, mismatched = compare_state_dicts(target, mapped)
    unexpected = sorted(unknown + [origin[k] for k in unexpected])
    missing = [f"{_released_name(k)} (xvit {k})" for k in missing]
    mismatched = [re.sub(r"^(\S+):", lambda m: f"{origin[m.group(1)]}:", line) for line in mismatched]
    if missing or unexpected or mismatched:
        raise CheckpointError(format_key_problems(checkpoint, missing, unexpected, mismatched))
    model.load_state_dict(mapped, strict=True)
    if unused:
        _logger.info("%s: %s unused, as in the released model (TA head)", checkpoint, ", ".join(unused))
    out = save_pretrained(model, out_dir)
    _logger.info(
        "converted %s -> %s: %d frames, segments of %d, div %d, mixing in blocks %s, head %s",
        checkpoint,
        out,
        desc.num_frames,
        desc.segment_len,
        desc.shift_div,
        desc.mix_layers,
        desc.head,
    )
    return out


def _released_name(key: str) -> str:
    """The released `model_state` name of an xvit parameter (for error messages)."""
    if key.startswith("head.cls_token"):
        return "consensus.cls_token"
    if key.startswith("head.blocks."):
        return "consensus.temporal_encoder." + key.removeprefix("head.blocks.")
    if key.startswith("head.mlp_head."):
        return "consensus." + key.removeprefix("head.")
    if key.startswith("head.fc."):
        return "new_fc." + key.removeprefix("head.fc.")
    return "base_model." + key


__all__ = ["build_config", "convert_official", "map_released_keys"]
