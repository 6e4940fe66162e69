"""Models on disk and on the Hub: `save_pretrained` writes a Hub-style directory
(`config.json` + `model.safetensors` + the model card `README.md`, see
`xvit.models.storage`); `load_model` rebuilds the `VideoViT` from it (offline), from a
released-model registry name (`"xvit-b16-k600"`) or from `"hf-hub:ORG/NAME"`;
`push_to_hub` uploads a model or a run directory.

ImageNet initialisation from image-ViT weights (timm, JAX, Hugging Face) is
`xvit.models.imagenet.load_pretrained`, also importable from here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from xvit.models.card import CARD_NAME, card_for_directory, is_xvit_card
from xvit.models.download import upload_folder
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
from xvit.models.weights import HF_HUB_PREFIX, WEIGHTS, fetch_hub_repo, fetch_weights, get_weights


def read_config(path: str | os.PathLike[str]) -> VideoViTConfig:
    """The `VideoViTConfig` stored in a `config.json` written by `save_pretrained`."""
    fields = read_config_dict(path)
    try:
        return VideoViTConfig.from_dict(fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{Path(path)}: invalid model config: {e}") from e


def model_directory(reference: str | os.PathLike[str]) -> Path:
    """The `save_pretrained` directory `reference` names: a directory (or one of its files),
    a released-model registry name (`"xvit-b16-k600"`: downloaded and converted on first
    use) or `"hf-hub:ORG/NAME[@REVISION]"` (its `config.json` and `model.safetensors`
    through the Hugging Face cache)."""
    text = str(reference)
    if text.startswith(HF_HUB_PREFIX):
        return fetch_hub_repo(text, (CONFIG_NAME, WEIGHTS_NAME))
    if not Path(text).exists() and text in WEIGHTS:
        entry = get_weights(text)
        if not entry.is_video_model:
            raise ValueError(
                f"{text!r} are {entry.arch} image backbone weights, not a video model: use "
                f"xvit.create_model(MODEL, pretrained={text!r})"
            )
        return fetch_weights(text)
    return resolve_pretrained_dir(reference)


def load_model(
    directory_or_file: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> VideoViT:
    """Rebuild a saved model in eval mode on `map_location`: a `save_pretrained` directory
    (offline), a released-model registry name or `"hf-hub:ORG/NAME"` (`model_directory`)."""
    directory = model_directory(directory_or_file)
    config = read_config(directory / CONFIG_NAME)
    state_dict = read_safetensors(directory / WEIGHTS_NAME)
    model = VideoViT(config)
    load_state_dict_strict(model, state_dict, directory / WEIGHTS_NAME)
    from xvit.models.quantization import apply_quantization, read_quantization

    recipe = read_quantization(directory)  # an int8 directory (`xvit quantize`): re-quantised here
    if recipe is not None:
        if torch.device(map_location).type != "cpu":
            raise CheckpointError(f"{directory}: an int8 quantised model runs on the CPU only")
        return apply_quantization(model.eval(), recipe)  # type: ignore[return-value]
    return model.to(map_location).eval()


def push_to_hub(
    source: VideoViT | str | os.PathLike[str],
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload xvit model",
) -> str:
    """Upload a model, or a `save_pretrained` / training-run directory, to the Hugging Face
    Hub repo `repo_id`; returns the commit URL.

    From a directory, `config.json` and `model.safetensors` are uploaded with a model card
    rendered for `repo_id` from the directory (a run's `metrics.json` and `config.yaml`
    included); a README.md that xvit did not write is uploaded as it is. The run's other
    files (per-video predictions, logs, checkpoints) stay local.
    """
    if isinstance(source, VideoViT):
        return source.push_to_hub(
            repo_id, token=token, private=private, revision=revision, commit_message=commit_message
        )
    directory = resolve_pretrained_dir(source)
    with tempfile.TemporaryDirectory(prefix="xvit-push-") as tmp:
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            shutil.copyfile(directory / name, Path(tmp) / name)
        card = directory / CARD_NAME
        if card.is_file() and not is_xvit_card(card):
            shutil.copyfile(card, Path(tmp) / CARD_NAME)
        else:
            text = card_for_directory(directory, read_config_dict(directory / CONFIG_NAME), repo_id=repo_id)
            (Path(tmp) / CARD_NAME).write_text(text, encoding="utf-8")
        return upload_folder(
            tmp, repo_id, token=token, private=private, revision=revision, commit_message=commit_message
        )


__all__ = [
    "CheckpointError",
    "load_model",
    "load_pretrained",
    "model_directory",
    "push_to_hub",
    "read_config",
    "save_pretrained",
]
