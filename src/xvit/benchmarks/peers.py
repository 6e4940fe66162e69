"""Video transformers a user would pick instead of X-ViT, from Hugging Face transformers.

The peers are built from their configs with random weights (no download): speed does not
depend on the weights. Each is wrapped so that it takes the clip in its own layout,
``(B, T, 3, H, W)``, and returns the encoder's last hidden state. transformers is an
optional dependency (the ``bench`` extra); without it :func:`build_peer` raises a clear
error and :func:`peers_available` is ``False``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "PATCH_SIZE",
    "PEERS",
    "PEER_SIZES",
    "PeerInfo",
    "PeerModel",
    "build_peer",
    "check_peer_frames",
    "peer_attention_backend",
    "peers_available",
]

# The patch side (and tubelet side) the peers are built with unless told otherwise.
PATCH_SIZE = 16
# (hidden size, layers, heads) per size name, matching the ViT widths of our models.
PEER_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}


@dataclass(frozen=True)
class PeerInfo:
    """A peer architecture: its transformers class names and standard clip."""

    name: str
    config_class: str
    model_class: str
    standard_frames: int
    tubelet: int  # frames per temporal token (1 = per-frame patches)
    supports_sdpa: bool
    description: str


PEERS: dict[str, PeerInfo] = {
    "hf_timesformer": PeerInfo(
        "hf_timesformer",
        "TimesformerConfig",
        "TimesformerModel",
        8,
        1,
        False,
        "TimeSformer, divided space-time attention (transformers has no SDPA path: eager)",
    ),
    "hf_vivit": PeerInfo(
        "hf_vivit",
        "VivitConfig",
        "VivitModel",
        32,
        2,
        True,
        "ViViT model 1, joint space-time attention over 2x16x16 tubelets (SDPA)",
    ),
    "hf_videomae": PeerInfo(
        "hf_videomae",
        "VideoMAEConfig",
        "VideoMAEModel",
        16,
        2,
        True,
        "VideoMAE encoder, joint space-time attention over 2x16x16 tubelets (SDPA)",
    ),
}


def peers_available() -> bool:
    """Whether Hugging Face transformers can be imported (the ``bench`` extra)."""
    return importlib.util.find_spec("transformers") is not None


def peer_attention_backend(name: str) -> str:
    """The attention implementation the peer is built with: ``"sdpa"`` or ``"eager"``."""
    return "sdpa" if _info(name).supports_sdpa else "eager"


class PeerModel(nn.Module):
    """A transformers video encoder taking ``(B, T, 3, H, W)`` and returning its tokens."""

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        self.model = model
        self.peer_name = name

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).last_hidden_state


def _info(name: str) -> PeerInfo:
    if name not in PEERS:
        raise ValueError(f"unknown peer model {name!r}; known peers: {', '.join(PEERS)}")
    return PEERS[name]


def check_peer_frames(name: str, num_frames: int) -> None:
    """ValueError unless peer ``name`` can take clips of ``num_frames`` (a whole number of its
    temporal tokens)."""
    info = _info(name)
    if num_frames % info.tubelet:
        raise ValueError(
            f"peer {name} groups {info.tubelet} frames per token; {num_frames} frames is not divisible by it"
        )


def build_peer(
    name: str,
    num_frames: int | None = None,
    img_size: int = 224,
    size: str = "base",
    patch_size: int = PATCH_SIZE,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    num_heads: int | None = None,
) -> PeerModel:
    """Build peer ``name`` with random weights at ``num_frames`` x ``img_size``.

    ``size`` picks width/depth/heads from :data:`PEER_SIZES`; ``hidden_size``,
    ``num_layers`` and ``num_heads`` override it (small models for tests).
    ``num_frames=None`` uses the peer's standard clip length.
    """
    info = _info(name)
    if not peers_available():
        raise ImportError(
            f"peer model {name!r} needs Hugging Face transformers, which is not installed; "
            "install the benchmark extra: pip install -e '.[bench]'"
        )
    if size not in PEER_SIZES:
        raise ValueError(f"unknown size {size!r} for peer {name!r}; known: {', '.join(PEER_SIZES)}")
    frames = info.standard_frames if num_frames is None else int(num_frames)
    check_peer_frames(name, frames)
    width, depth, heads = PEER_SIZES[size]
    width = hidden_size or width
    depth = num_layers or depth
    heads = num_heads or heads

    import transformers

    config_cls = getattr(transformers, info.config_class)
    model_cls = getattr(transformers, info.model_class)
    common = dict(
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=4 * width,
        image_size=img_size,
        num_frames=frames,
        attn_implementation=peer_attention_backend(name),
    )
    if name == "hf_vivit":
        config = config_cls(tubelet_size=[info.tubelet, patch_size, patch_size], **common)
    elif name == "hf_videomae":
        config = config_cls(tubelet_size=info.tubelet, patch_size=patch_size, **common)
    else:
        config = config_cls(patch_size=patch_size, **common)
    model = model_cls(config)
    return PeerModel(model.eval(), name)
