"""ImageNet initialisation of a video backbone from image-ViT weights, in the layouts they are
published in: timm state dicts (`.pth` / `.safetensors`), the original JAX `.npz` files, and
Hugging Face `ViTModel` / `ViTForImageClassification` state dicts.

`read_checkpoint` turns any of them into a timm-layout state dict; `checkpoint_filter_fn`
adapts it to a model as timm's does: patch-embedding kernels are resampled to the model's
patch size (FlexiViT pseudo-inverse) and position embeddings to its grid (bicubic, the CLS
position kept; the same resize the model applies at run time); `load_pretrained` does both.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xvit.models.layers import resize_pos_embed
from xvit.models.storage import (
    CheckpointError,
    compare_state_dicts,
    format_key_problems,
    read_safetensors,
    torch_load,
)

_logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Reading image-ViT checkpoints in the layouts they are published in
# --------------------------------------------------------------------------------------------


def _n2p(w: Any, t: bool = True, idx: int | None = None) -> torch.Tensor:
    """A JAX/Flax array as a torch tensor; `t` converts kernel layouts as timm's `_n2p`."""
    import numpy as np

    w = np.asarray(w)
    if idx is not None:
        w = w[idx]
    if w.ndim == 4 and w.shape[0] == w.shape[1] == w.shape[2] == 1:
        w = w.flatten()
    if t:
        if w.ndim == 4:  # conv HWIO -> OIHW
            w = w.transpose([3, 2, 0, 1])
        elif w.ndim == 3:  # attention out (H, hd, D) -> (D, H, hd)
            w = w.transpose([2, 0, 1])
        elif w.ndim == 2:  # dense (in, out) -> (out, in)
            w = w.transpose([1, 0])
    return torch.from_numpy(np.ascontiguousarray(w))


def convert_jax_vit(arrays: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Official JAX/Flax ViT `.npz` arrays -> a timm-layout state dict (as timm `_load_weights`).

    Reads the `google-research/vision_transformer` names (optionally under `opt/target/`),
    big_vision names (under `params/`) and scanned encoders (`Transformer/encoderblock/`).
    """
    keys = set(arrays)
    prefix = ""
    big_vision = False
    if "opt/target/embedding/kernel" in keys:
        prefix = "opt/target/"
    elif "params/embedding/kernel" in keys:
        prefix, big_vision = "params/", True
    elif "params/img/embedding/kernel" in keys:
        prefix, big_vision = "params/img/", True
    if f"{prefix}embedding/kernel" not in keys:
        raise CheckpointError(
            f"not a JAX ViT checkpoint: no 'embedding/kernel' array (first keys: {sorted(keys)[:8]})"
        )
    w = arrays
    sd: dict[str, torch.Tensor] = {
        "patch_embed.proj.weight": _n2p(w[f"{prefix}embedding/kernel"]),
        "patch_embed.proj.bias": _n2p(w[f"{prefix}embedding/bias"]),
    }
    if f"{prefix}cls" in keys:
        sd["cls_token"] = _n2p(w[f"{prefix}cls"], t=False)
    pos_key = (
        f"{prefix}pos_embedding" if big_vision else (f"{prefix}Transformer/posembed_input/pos_embedding")
    )
    sd["pos_embed"] = _n2p(w[pos_key], t=False)
    sd["norm.weight"] = _n2p(w[f"{prefix}Transformer/encoder_norm/scale"])
    sd["norm.bias"] = _n2p(w[f"{prefix}Transformer/encoder_norm/bias"])
    for name in ("pre_logits", "head"):
        dst = "pre_logits.fc" if name == "pre_logits" else "head"
        if f"{prefix}{name}/kernel" in keys:
            sd[f"{dst}.weight"] = _n2p(w[f"{prefix}{name}/kernel"])
            sd[f"{dst}.bias"] = _n2p(w[f"{prefix}{name}/bias"])

    scanned = f"{prefix}Transformer/encoderblock/LayerNorm_0/scale" in keys
    if scanned:
        depth = int(w[f"{prefix}Transformer/encoderblock/LayerNorm_0/scale"].shape[0])
    else:
        pattern = re.compile(re.escape(prefix) + r"Transformer/encoderblock_(\d+)/")
        found = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
        depth = max(found) + 1 if found else 0
    mha_sub, b_sub, ln1_sub = (0, 0, 1) if big_vision else (1, 3, 2)
    for i in range(depth):
        bp = f"{prefix}Transformer/encoderblock/" if scanned else (f"{prefix}Transformer/encoderblock_{i}/")
        idx = i if scanned else None
        mp = f"{bp}MultiHeadDotProductAttention_{mha_sub}/"
        out = f"blocks.{i}."
        sd[out + "norm1.weight"] = _n2p(w[f"{bp}LayerNorm_0/scale"], idx=idx)
        sd[out + "norm1.bias"] = _n2p(w[f"{bp}LayerNorm_0/bias"], idx=idx)
        qkv = ("query", "key", "value")  # kernels (D, heads, head_dim) -> (heads*head_dim, D)
        sd[out + "attn.qkv.weight"] = torch.cat(
            [_n2p(w[f"{mp}{n}/kernel"], t=False, idx=idx).flatten(1).T for n in qkv]
        )
        sd[out + "attn.qkv.bias"] = torch.cat(
            [_n2p(w[f"{mp}{n}/bias"], t=False, idx=idx).reshape(-1) for n in qkv]
        )
        sd[out + "attn.proj.weight"] = _n2p(w[f"{mp}out/kernel"], idx=idx).flatten(1)
        sd[out + "attn.proj.bias"] = _n2p(w[f"{mp}out/bias"], idx=idx)
        sd[out + "norm2.weight"] = _n2p(w[f"{bp}LayerNorm_{ln1_sub}/scale"], idx=idx)
        sd[out + "norm2.bias"] = _n2p(w[f"{bp}LayerNorm_{ln1_sub}/bias"], idx=idx)
        for r in range(2):
            dense = f"{bp}MlpBlock_{b_sub}/Dense_{r}/"
            sd[out + f"mlp.fc{r + 1}.weight"] = _n2p(w[dense + "kernel"], idx=idx)
            sd[out + f"mlp.fc{r + 1}.bias"] = _n2p(w[dense + "bias"], idx=idx)
    return {k: v.contiguous() for k, v in sd.items()}


# Hugging Face ViT names -> timm names. Both the published layout (`encoder.layer.i....`,
# what `save_pretrained` writes) and the module names of transformers >= 5 (`layers.i....`).
_HF_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"^layers\.(\d+)\.attention\.o_proj\.", r"blocks.\1.attn.proj."),
    (r"^layers\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^layers\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^layers\.(\d+)\.mlp\.fc([12])\.", r"blocks.\1.mlp.fc\2."),
    (r"^layernorm\.", "norm."),
    (r"^pooler\.dense\.", "pre_logits.fc."),
    (r"^classifier\.", "head."),
)
_HF_QKV = (
    re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$"),
    re.compile(r"^layers\.(\d+)\.attention\.(q|k|v)_proj\.(weight|bias)$"),
)
_QKV_ORDER = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}


def is_hf_vit_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """True for a Hugging Face `ViTModel` / `ViTForImageClassification` state dict."""
    return any(k.removeprefix("vit.") == "embeddings.patch_embeddings.projection.weight" for k in state_dict)


def convert_hf_vit(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Hugging Face ViT state dict -> timm layout (separate q/k/v merged into `qkv`).

    Keys it does not know are passed through unchanged, so the caller reports them.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[int, torch.Tensor]] = {}
    for key, value in state_dict.items():
        k = key.removeprefix("vit.")
        if k == "embeddings.mask_token":  # masked-image-modelling token: no counterpart
            continue
        m = _HF_QKV[0].match(k) or _HF_QKV[1].match(k)
        if m:
            qkv.setdefault((int(m.group(1)), m.group(3)), {})[_QKV_ORDER[m.group(2)]] = value
            continue
        for pattern, repl in _HF_RENAMES:
            new, n = re.subn(pattern, repl, k)
            if n:
                k = new
                break
        out[k] = value
    for (i, kind), parts in sorted(qkv.items()):
        if sorted(parts) != [0, 1, 2]:
            raise CheckpointError(
                f"Hugging Face ViT layer {i}: query/key/value {kind} incomplete (found {len(parts)} of 3)"
            )
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts[0], parts[1], parts[2]])
    return out


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside a training checkpoint (`model` / `state_dict` / `model_state`)."""
    for _ in range(3):
        if not isinstance(obj, Mapping):
            break
        for wrapper in ("model", "state_dict", "model_state", "module"):
            if wrapper in obj and isinstance(obj[wrapper], Mapping):
                obj = obj[wrapper]
                break
        else:
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: no state dict found (got {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: no tensors found; keys: {sorted(obj)[:10]}")
    if all(k.startswith("module.") for k in tensors):  # DistributedDataParallel
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """An image-ViT checkpoint as a timm-layout state dict.

    `path` is a `.npz` (JAX), `.safetensors`, a `torch.save` file (`.pth`, `.pt`, `.bin`,
    `.ckpt`), or a Hugging Face model directory (`model.safetensors` / `pytorch_model.bin`).
    """
    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                return read_checkpoint(path / name)
        raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin inside")
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    if path.suffix == ".npz":
        import zipfile

        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as arrays:
                return convert_jax_vit({k: arrays[k] for k in arrays.files})
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise CheckpointError(
                f"{path}: cannot read the .npz file; it looks truncated or corrupt ({e})"
            ) from e
        except KeyError as e:
            raise CheckpointError(f"{path}: JAX ViT array {e} is missing") from e
    if path.suffix == ".safetensors":
        state_dict = _unwrap_state_dict(read_safetensors(path), path)
    else:
        state_dict = _unwrap_state_dict(torch_load(path), path)
    if is_hf_vit_state_dict(state_dict):
        state_dict = convert_hf_vit(state_dict)
    return state_dict


# --------------------------------------------------------------------------------------------
# Adapting image-ViT weights to a model (timm's checkpoint_filter_fn)
# --------------------------------------------------------------------------------------------


def resample_patch_embed(
    weight: torch.Tensor,
    new_size: tuple[int, int],
    interpolation: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """Resample a patch-embedding kernel `(D, C, h, w)` to `new_size` (FlexiViT / timm).

    The new kernel is `w @ pinv(R)` where `R` resizes a patch: projecting a resized patch
    with it gives what the old kernel gives on the original patch (exactly when upsampling).
    """
    old_size = tuple(weight.shape[-2:])
    new_size = (int(new_size[0]), int(new_size[1]))
    if old_size == new_size:
        return weight
    n_old = old_size[0] * old_size[1]
    basis = torch.eye(n_old, dtype=torch.float64).reshape(n_old, 1, *old_size)
    resized = F.interpolate(
        basis, size=new_size, mode=interpolation, antialias=antialias, align_corners=False
    )  # (n_old, 1, *new_size): the image of every basis patch
    resize_mat = resized.reshape(n_old, -1).T  # (n_new, n_old)
    pinv = torch.linalg.pinv(resize_mat)  # (n_old, n_new)
    out = weight.to(torch.float64).flatten(2) @ pinv
    return out.reshape(*weight.shape[:2], *new_size).to(weight.dtype)


def _model_grid(model: nn.Module) -> tuple[int, int]:
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is not None:
        return (int(grid[0]), int(grid[1]))
    n = model.state_dict()["pos_embed"].shape[1] - 1
    side = math.isqrt(n)
    return (side, side)


@dataclasses.dataclass
class LoadReport:
    """What `load_pretrained` did: keys loaded, adapted, left initialised, and ignored."""

    loaded: list[str]
    adapted: list[str]
    missing: list[str]
    unexpected: list[str]

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.adapted:
            lines.append("adapted: " + "; ".join(self.adapted))
        if self.missing:
            lines.append(
                f"not in the checkpoint, kept initialised ({len(self.missing)}): " + ", ".join(self.missing)
            )
        if self.unexpected:
            lines.append(
                f"in the checkpoint, not used ({len(self.unexpected)}): " + ", ".join(self.unexpected)
            )
        return "\n".join(lines)


# The parameters of an image ViT backbone; every other model parameter (temporal embedding,
# temporal attention, video head, representation layer) may be absent from an image checkpoint.
_IMAGE_VIT_KEY = re.compile(
    r"^(cls_token|pos_embed|patch_embed\.proj\.(weight|bias)|norm\.(weight|bias)"
    r"|blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias))$"
)


def checkpoint_filter_fn(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Adapt a timm-layout image-ViT state dict to `model`'s backbone.

    Resamples the patch-embedding kernel to the model's patch size and the position
    embedding to its grid (`xvit.models.layers.resize_pos_embed`), drops the image
    classifier (`head.*`), keeps the representation layer (`pre_logits.fc`) only when the
    model has one, and initialises TimeSformer's
    temporal attention and norm from the spatial ones when the model has them. Returns the
    adapted dict, what was adapted, and the checkpoint keys dropped.
    """
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    adapted: list[str] = []
    dropped: list[str] = []
    for k, v in state_dict.items():
        if k.startswith("head.") or k in ("head_dist.weight", "head_dist.bias"):
            dropped.append(k)  # the 1000 / 21843-class image classifier
            continue
        if k.startswith("pre_logits.") and k not in target:
            dropped.append(k)
            continue
        if k == "patch_embed.proj.weight" and k in target:
            want = target[k].shape
            if v.ndim < 4:  # old timm models: manual patchify + linear
                v = v.reshape(want[0], -1, *want[-2:])
            if tuple(v.shape[-2:]) != tuple(want[-2:]):
                adapted.append(f"{k}: patch {tuple(v.shape[-2:])} -> {tuple(want[-2:])}")
                v = resample_patch_embed(v, tuple(want[-2:]))
        elif k == "pos_embed" and k in target and v.shape[1] != target[k].shape[1]:
            side = math.isqrt(v.shape[1] - 1)
            if side * side != v.shape[1] - 1:
                raise CheckpointError(
                    f"pos_embed {tuple(v.shape)}: {v.shape[1] - 1} positions after the CLS "
                    "are not a square grid; cannot resize it"
                )
            new = resize_pos_embed(v, _model_grid(model))
            adapted.append(f"pos_embed: {tuple(v.shape)} -> {tuple(new.shape)}")
            v = new
        out[k] = v

    # TimeSformer (divided space-time): temporal attention starts as a copy of the spatial one.
    for k in target:
        m = re.match(r"^blocks\.(\d+)\.(temporal_attn|temporal_norm1)\.(.+)$", k)
        if m and k not in out:
            spatial = "attn" if m.group(2) == "temporal_attn" else "norm1"
            src = f"blocks.{m.group(1)}.{spatial}.{m.group(3)}"
            if src in out and out[src].shape == target[k].shape:
                out[k] = out[src].clone()
                adapted.append(f"{k} <- {src}")
    return out, adapted, dropped


def load_pretrained(model: nn.Module, path: str | os.PathLike[str], strict: bool = False) -> LoadReport:
    """Initialise `model`'s backbone from image-ViT weights at `path` (timm `.pth` /
    `.safetensors` / JAX `.npz` / Hugging Face ViT), in place.

    Video-only parameters (temporal embedding, temporal attention, the video head) keep
    their initial values. Shapes that cannot be adapted raise `CheckpointError` listing them;
    with `strict=True` so does any other backbone parameter missing from the checkpoint or
    any checkpoint tensor left unused. Returns (and logs) a `LoadReport`.
    """
    path = Path(path)
    state_dict = read_checkpoint(path)
    filtered, adapted, dropped = checkpoint_filter_fn(state_dict, model)
    target = model.state_dict()
    missing, unexpected, mismatched = compare_state_dicts(target, filtered)
    if mismatched:
        raise CheckpointError(format_key_problems(path, [], [], mismatched))
    if not set(filtered) & set(target):
        raise CheckpointError(
            f"{path}: no tensor of the checkpoint fits the model; is it an image ViT? "
            f"(first keys: {sorted(state_dict)[:6]})"
        )
    unused = sorted(set(dropped) | set(unexpected))
    must_have = [k for k in missing if _IMAGE_VIT_KEY.match(k)]
    if strict and (must_have or unexpected):
        raise CheckpointError(format_key_problems(path, must_have, unexpected, []))
    model.load_state_dict({k: v for k, v in filtered.items() if k in target}, strict=False)
    report = LoadReport(
        loaded=sorted(k for k in filtered if k in target),
        adapted=adapted,
        missing=missing,
        unexpected=unused,
    )
    _logger.info("initialised from %s\n%s", path, report.summary())
    if must_have:
        _logger.warning("%s lacks backbone parameters: %s", path, ", ".join(must_have))
    return report
