"""Models on disk: `save_pretrained` writes a Hub-style directory (`config.json` +
`model.safetensors`, see `xvit.models.storage`) and `load_model` rebuilds the `VideoViT`
from it, offline.

ImageNet initialisation from image-ViT weights (timm, JAX, Hugging Face) is
`xvit.models.imagenet.load_pretrained`, also importable from here.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from xvit.models.imagenet import load_pretrained
from xvit.models.storage import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    load_state_dict_strict,
    read_config_dict,
    read_safetensors,
    resolve_pretrained_dir,
    save_pretrained,
)
from xvit.models.video_vit import VideoViT, VideoViTConfig


def read_config(path: str | os.PathLike[str]) -> VideoViTConfig:
    """The `VideoViTConfig` stored in a `config.json` written by `save_pretrained`."""
    fields = read_config_dict(path)
    try:
        return VideoViTConfig.from_dict(fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{Path(path)}: invalid model config: {e}") from e


def load_model(
    directory_or_file: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> VideoViT:
    """Rebuild the model saved by `save_pretrained` (offline), in eval mode on `map_location`."""
    directory = resolve_pretrained_dir(directory_or_file)
    config = read_config(directory / CONFIG_NAME)
    state_dict = read_safetensors(directory / WEIGHTS_NAME)
    model = VideoViT(config)
    load_state_dict_strict(model, state_dict, directory / WEIGHTS_NAME)
    return model.to(map_location).eval()


__all__ = [
    "CheckpointError",
    "load_model",
    "load_pretrained",
    "read_config",
    "save_pretrained",
]
