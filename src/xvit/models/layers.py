"""Building blocks shared by the backbone and the heads: stochastic depth, the MLP, the patch
embedding, and resizing the position and temporal embeddings (timm's ViT names: `fc1`,
`fc2`, `proj`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# How a temporal embedding of Tp entries meets a clip of another length (`resize_temp_embed`).
TEMP_EMBED_MODES = ("interpolate", "tile")


def drop_path(x: torch.Tensor, prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples (dim 0) with probability `prob`, rescale others."""
    if prob == 0.0 or not training:
        return x
    keep = 1.0 - prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


class DropPath(nn.Module):
    """Stochastic depth per sample (timm's DropPath)."""

    def __init__(self, prob: float = 0.0) -> None:
        super().__init__()
        self.prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.prob, self.training)

    def extra_repr(self) -> str:
        return f"prob={self.prob}"


class Mlp(nn.Module):
    """Linear, GELU, Dropout, Linear, Dropout (timm names `fc1`, `fc2`)."""

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, out_dim or dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class PatchEmbed(nn.Module):
    """Per-frame patch embedding: `(B*T, C, H, W) -> (B*T, S, D)` with a strided Conv2d."""

    def __init__(
        self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768
    ) -> None:
        super().__init__()
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], num_prefix: int = 1) -> torch.Tensor:
    """Resize `(1, prefix + h*w, D)` position embeddings to `grid`: bicubic without
    antialiasing, exactly as HF's `ViTEmbeddings.interpolate_pos_encoding` (timm's
    `resample_abs_pos_embed` antialiases by default, which gives slightly different values)."""
    n_old = pos_embed.shape[1] - num_prefix
    side = math.isqrt(n_old)
    if (side, side) == tuple(grid):
        return pos_embed
    prefix, pos = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    dim = pos_embed.shape[-1]
    pos = pos.reshape(1, side, side, dim).permute(0, 3, 1, 2).float()
    pos = F.interpolate(pos, size=tuple(grid), mode="bicubic", align_corners=False)
    pos = pos.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], dim).to(pos_embed.dtype)
    return torch.cat([prefix, pos], dim=1)


def resize_temp_embed(temp_embed: torch.Tensor, num_frames: int, mode: str = "interpolate") -> torch.Tensor:
    """Fit a `(1, Tp, 1, D)` temporal embedding to `num_frames`: linear interpolation, or
    repeating it every Tp frames ("tile"; T must then be a multiple of Tp)."""
    tp = temp_embed.shape[1]
    if tp == num_frames:
        return temp_embed
    if mode == "tile":
        if num_frames % tp:
            raise ValueError(
                f"temp_embed_mode='tile': {num_frames} frames is not a multiple of the "
                f"{tp} temporal embedding entries"
            )
        return temp_embed.repeat(1, num_frames // tp, 1, 1)
    te = temp_embed[:, :, 0].transpose(1, 2)  # (1, D, Tp)
    te = F.interpolate(te.float(), size=num_frames, mode="linear", align_corners=False)
    return te.transpose(1, 2).unsqueeze(2).to(temp_embed.dtype)


__all__ = [
    "TEMP_EMBED_MODES",
    "DropPath",
    "Mlp",
    "PatchEmbed",
    "drop_path",
    "resize_pos_embed",
    "resize_temp_embed",
]
