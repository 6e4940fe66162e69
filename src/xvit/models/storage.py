"""Weight files on disk, below the model classes (nothing here imports them).

* The `save_pretrained` directory: `config.json` (the model config plus `architecture`,
  `xvit_version`, `format_version`), `model.safetensors` and the model card `README.md`
  (`xvit.models.card`), all written atomically;
  `read_config_dict` / `resolve_pretrained_dir` read it back (`xvit.models.hub.load_model`
  rebuilds the model).
* Reading weight files with one clear `CheckpointError` when they are missing, truncated
  or corrupt: `read_safetensors`, `torch_load` (`weights_only=True`).
* Comparing a state dict with a model's: `compare_state_dicts`, `format_key_problems`,
  `load_state_dict_strict`.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import struct
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xvit.models.errors import CheckpointError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ARCHITECTURE = "VideoViT"
FORMAT_VERSION = 1
# Keys `save_pretrained` adds to `config.to_dict()`; they are not config fields.
_META_KEYS = ("architecture", "xvit_version", "format_version")
# Config fields added after files were written without them, with the value that keeps such a
# file's model as it was: the temporal-attention head's CLS entered as the token alone and
# its classifier was the MLP.
_FIELDS_ADDED = {"head_cls": "token", "head_classifier": "mlp"}


def xvit_version() -> str:
    """The installed xvit's version (pyproject.toml), as `save_pretrained` records it."""
    try:
        return importlib.metadata.version("xvit")
    except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path
        return "unknown"


# --------------------------------------------------------------------------------------------
# The save_pretrained directory
# --------------------------------------------------------------------------------------------


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)` on a temporary file next to `path`, then move it into place
    with the permissions of any new file (safetensors itself writes 0600)."""
    tmp = str(path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _unshared_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU, contiguous copies of the state dict with no two tensors sharing storage
    (safetensors refuses both shared and non-contiguous tensors)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu")
        if t.untyped_storage().data_ptr() in seen or not t.is_contiguous():
            t = t.contiguous().clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def save_pretrained(
    model: nn.Module, directory: str | os.PathLike[str], card: bool = True, repo_id: str | None = None
) -> Path:
    """Write `model.safetensors` and `config.json` for `model` (a `VideoViT`) into
    `directory`, and with `card` a model card `README.md` (`xvit.models.card`; with the
    run's `metrics.json` / `config.yaml` when the directory has them; a README.md that xvit
    did not write is left alone).

    Every file is written atomically (temporary file, then rename), so a crash never leaves
    a half-written checkpoint behind. Returns the directory.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()  # type: ignore[attr-defined]
    config.update(architecture=ARCHITECTURE, xvit_version=xvit_version(), format_version=FORMAT_VERSION)
    tensors = _unshared_state_dict(model)
    _atomic_write(
        directory / WEIGHTS_NAME,
        lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}),
    )

    def write_config(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")

    _atomic_write(directory / CONFIG_NAME, write_config)
    if card:
        write_model_card(directory, config, repo_id=repo_id)
    return directory


def write_model_card(
    directory: str | os.PathLike[str], config: dict[str, Any] | None = None, repo_id: str | None = None
) -> Path | None:
    """(Re)write `directory/README.md` from its `config.json` (or `config`) and, in a run
    directory, `metrics.json` / `config.yaml`; a README.md xvit did not write is kept
    (returns None then)."""
    from xvit.models.card import CARD_NAME, card_for_directory, is_xvit_card

    directory = Path(directory)
    path = directory / CARD_NAME
    if path.exists() and not is_xvit_card(path):
        return None
    if config is None:
        config = read_config_dict(directory / CONFIG_NAME)
    text = card_for_directory(directory, config, repo_id=repo_id)

    def write_card(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    _atomic_write(path, write_card)
    return path


def resolve_pretrained_dir(directory_or_file: str | os.PathLike[str]) -> Path:
    """The directory a `save_pretrained` directory or one of its two files names."""
    path = Path(directory_or_file)
    if not path.exists():
        raise FileNotFoundError(f"no such model directory or file: {path}")
    if path.is_file():
        if path.name not in (CONFIG_NAME, WEIGHTS_NAME):
            raise CheckpointError(
                f"{path}: expected a directory written by save_pretrained, or its "
                f"{CONFIG_NAME} / {WEIGHTS_NAME}"
            )
        path = path.parent
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (path / name).is_file():
            raise FileNotFoundError(
                f"{path} has no {name}: not a directory written by save_pretrained "
                f"(expected {CONFIG_NAME} and {WEIGHTS_NAME})"
            )
    return path


def read_config_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The config fields stored in a `config.json` written by `save_pretrained` (the
    architecture and format version checked, the metadata keys removed)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    arch = raw.get("architecture", ARCHITECTURE)
    if arch != ARCHITECTURE:
        raise CheckpointError(f"{path}: architecture {arch!r} is not {ARCHITECTURE!r}")
    version = raw.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {version!r} is newer than this xvit reads "
            f"({FORMAT_VERSION}); upgrade xvit"
        )
    fields = {k: v for k, v in raw.items() if k not in _META_KEYS}
    # save_pretrained writes every field: a file without one predates it, and means what the
    # model did then (_FIELDS_ADDED)
    return {**_FIELDS_ADDED, **fields}


# --------------------------------------------------------------------------------------------
# Reading weight files
# --------------------------------------------------------------------------------------------


def _check_safetensors_file(path: Path) -> None:
    """Raise a clear `CheckpointError` when a safetensors file is truncated or corrupt."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(
                f"{path}: {size} bytes, too short for a safetensors file; it looks truncated"
            )
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            raise CheckpointError(
                f"{path}: the safetensors header says {header_len} bytes but the file has "
                f"{size - 8} after it; it looks truncated or is not a safetensors file"
            )
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: unreadable safetensors header ({e})") from e
    end = max(
        (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
        default=0,
    )
    if 8 + header_len + end > size:
        raise CheckpointError(
            f"{path}: the tensors need {8 + header_len + end} bytes but the file has {size}; "
            "it looks truncated (an interrupted download or copy?)"
        )


def checkpoint_digest(directory: str | os.PathLike[str], extra: str = "") -> str:
    """The hex sha256 of a saved model directory's ``config.json`` and ``model.safetensors``
    (those present), then ``extra``: what ``load_model`` reads, so equal digests load equal
    models."""
    import hashlib

    h = hashlib.sha256()
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        path = Path(directory) / name
        if path.is_file():
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
    h.update(extra.encode())
    return h.hexdigest()


def read_safetensors(path: str | os.PathLike[str], device: str = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file, with a clear error when it is missing, truncated or corrupt."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    _check_safetensors_file(path)
    try:
        return load_file(path, device=device)
    except SafetensorError as e:
        raise CheckpointError(f"{path}: cannot read safetensors file ({e})") from e


def torch_load(path: str | os.PathLike[str]) -> Any:
    """`torch.load(weights_only=True)` on CPU with clear errors for missing/truncated files."""
    import pickle
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (an interrupted download or copy?)")
    with open(path, "rb") as f:
        head = f.read(8)
    # torch.save writes a zip archive (since torch 1.6) or, before, a pickle (protocol byte 0x80)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        what = " (it is a video)" if head[4:8] == b"ftyp" or head[:4] == b"\x1aE\xdf\xa3" else ""
        raise CheckpointError(
            f"{path}: not a weights file{what}: a PyTorch checkpoint (.pt, .pth, .pyth) is a zip "
            f"archive or a pickle, a safetensors file ends in .safetensors"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: refused by the safe loader (torch.load(weights_only=True)); it holds "
            f"objects other than tensors and plain containers ({first})"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(
            f"{path}: cannot read the PyTorch checkpoint; it looks truncated or corrupt ({e})"
        ) from e


# --------------------------------------------------------------------------------------------
# Comparing a state dict with a model's
# --------------------------------------------------------------------------------------------


def compare_state_dicts(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, mismatched) keys of `found` against `expected`, printable."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(found)
        if tuple(found[k].shape) != tuple(expected[k].shape)
    )
    return missing, unexpected, mismatched


def format_key_problems(
    source: object, missing: list[str], unexpected: list[str], mismatched: list[str]
) -> str:
    """One error message listing the missing, unexpected and mismatched keys of `source`."""
    lines = [f"{source}: the weights do not fit the model"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): " + ", ".join(missing))
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): " + ", ".join(unexpected))
    if mismatched:
        lines.append(f"  shape mismatches ({len(mismatched)}): " + "; ".join(mismatched))
    return "\n".join(lines)


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: object) -> None:
    """`model.load_state_dict(state_dict)` that lists every missing, unexpected and
    mismatched key (with shapes) in one `CheckpointError` naming `source`."""
    missing, unexpected, mismatched = compare_state_dicts(model.state_dict(), state_dict)
    if missing or unexpected or mismatched:
        raise CheckpointError(format_key_problems(source, missing, unexpected, mismatched))
    model.load_state_dict(state_dict, strict=True)
