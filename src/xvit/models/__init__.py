"""The model library: one video-ViT backbone with every attention variant, temporal heads,
named model definitions, FLOP and parameter counting, and weights on disk."""

from __future__ import annotations

from xvit.models.attention import attention_kernel, get_attention_kernel, set_attention_kernel
from xvit.models.flops import count_flops, count_params
from xvit.models.hub import load_model
from xvit.models.registry import create_model, list_models, model_config, register_model
from xvit.models.video_vit import VideoViT, VideoViTConfig

__all__ = [
    "VideoViT",
    "VideoViTConfig",
    "attention_kernel",
    "count_flops",
    "count_params",
    "create_model",
    "get_attention_kernel",
    "list_models",
    "load_model",
    "model_config",
    "register_model",
    "set_attention_kernel",
]
