"""Pretrained weights by name: the registry (`WEIGHTS`), lookup, and the converted files.

Each entry names the weights, the backbone they fit (width, depth, patch), where they come
from (a Hugging Face Hub repo and file, or a URL), their licence, their provenance (paper,
training data), the accuracy the source publishes (only where it does) and the
preprocessing they expect, and how they are converted:

* `image-vit`: an image ViT (timm or transformers layout) -> a timm-layout
  `model.safetensors` (`xvit.models.imagenet.read_checkpoint`), used to initialise a video
  backbone (`create_model(..., pretrained=...)`);
* `released-xvit`: a released X-ViT checkpoint -> a `save_pretrained` directory
  (`xvit.models.convert_official.convert_official`), loaded whole by `load_model(name)`.

`fetch_weights(name)` downloads (`xvit.models.download`) and converts on first use; the
converted files live in `$XVIT_CACHE/weights/NAME/` and are used from then on without
any request. `pretrained=` also takes a short tag (`"in21k"`, `"in1k"`, `"augreg_in21k"`,
...) resolved for the model's width and depth, and `"hf-hub:ORG/NAME"`.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xvit.models.download import (
    WeightsUnavailableError,
    download_url,
    hub_download,
    hub_url,
    is_offline,
    weights_cache,
)

HF_HUB_PREFIX = "hf-hub:"
CONVERTERS = ("image-vit", "released-xvit")


@dataclass(frozen=True)
class HubSource:
    """A file in a Hugging Face Hub repo (the first of `filenames` the repo has)."""

    repo_id: str
    filenames: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
    revision: str = "main"

    def describe(self) -> str:
        return f"https://huggingface.co/{self.repo_id}"


@dataclass(frozen=True)
class UrlSource:
    """A file at a plain URL; `size` (bytes) and `sha256` are verified when given."""

    url: str
    filename: str
    size: int | None = None
    sha256: str | None = None
    homepage: str | None = None  # where the link is published

    def describe(self) -> str:
        return self.url


@dataclass(frozen=True)
class Weights:
    """One registry entry."""

    name: str
    source: HubSource | UrlSource
    converter: str  # one of CONVERTERS
    arch: str  # what the weights are, e.g. "ViT-B/16"
    embed_dim: int
    depth: int
    patch_size: int
    license: str
    paper: str
    dataset: str
    tags: tuple[str, ...] = ()  # short names answering for this width/depth ("in21k", ...)
    model: str | None = None  # the xvit model a released checkpoint is (released-xvit)
    preset: str | None = None  # convert-official preset for a file without cfg
    num_classes: int | None = None
    top1: float | None = None  # as published by the source, with `accuracy_note`
    top5: float | None = None
    accuracy_note: str = ""
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.converter not in CONVERTERS:
            raise ValueError(f"weights {self.name!r}: converter {self.converter!r} not in {CONVERTERS}")

    @property
    def is_video_model(self) -> bool:
        return self.converter == "released-xvit"

    def fits(self, embed_dim: int, depth: int) -> bool:
        return (self.embed_dim, self.depth) == (embed_dim, depth)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["source"] = {"kind": "hub" if isinstance(self.source, HubSource) else "url", **d["source"]}
        return d


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------

_VIT_PAPER = "Dosovitskiy et al., An Image is Worth 16x16 Words, ICLR 2021 (arXiv 2010.11929)"
_AUGREG_PAPER = "Steiner et al., How to train your ViT?, TMLR 2022 (arXiv 2106.10270)"
_XVIT_PAPER = (
    "Bulat et al., Space-time Mixing Attention for Video Transformer, NeurIPS 2021 (arXiv 2106.05968)"
)
_XVIT_REPO = "https://github.com/1adrianb/video-transformers"
# transformers' ViTImageProcessor for google/vit-*: resize to 224 (bilinear), mean = std = 0.5
_HF_PREP = {"img_size": 224, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear"}
# timm's default_cfg for the augreg ViTs: 224 crops, crop_pct 0.9, bicubic, mean = std = 0.5
_TIMM_PREP = {
    "img_size": 224,
    "crop_pct": 0.9,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
}
# The released X-ViT models: RGB in [0, 1], mean = std = 0.5, 16 frames, 224 crops of a
# short side resized to 224 at test time (the authors' configs).
_XVIT_PREP = {"num_frames": 16, "img_size": 224, "test_short_side": 224, "mean": [0.5] * 3, "std": [0.5] * 3}
_SIZES = {"t": ("ViT-Ti/16", 192, 12), "s": ("ViT-S/16", 384, 12), "b": ("ViT-B/16", 768, 12)}
_SIZES["l"] = ("ViT-L/16", 1024, 24)
_TIMM_SIZE = {"t": "tiny", "s": "small", "b": "base", "l": "large"}


def _image_vit(
    size: str, name: str, repo: str, paper: str, prep: dict, tags: tuple[str, ...], dataset: str
) -> Weights:
    arch, dim, depth = _SIZES[size]
    return Weights(
        name=f"vit-{size}16-{name}",
        source=HubSource(repo),
        converter="image-vit",
        arch=arch,
        embed_dim=dim,
        depth=depth,
        patch_size=16,
        license="apache-2.0",
        paper=paper,
        dataset=dataset,
        tags=tags,
        preprocessing=dict(prep),
    )


def _google(size: str, repo: str, tags: tuple[str, ...], dataset: str) -> Weights:
    """transformers' google/vit-* repo `repo`, named vit-{size}16-{its first tag}."""
    return _image_vit(size, tags[0], f"google/{repo}", _VIT_PAPER, _HF_PREP, tags, dataset)


def _augreg(size: str, tag: str, extra_tags: tuple[str, ...], dataset: str) -> Weights:
    """timm's AugReg repo timm/vit_{size}_patch16_224.{tag}."""
    repo = f"timm/vit_{_TIMM_SIZE[size]}_patch16_224.{tag}"
    name = tag.replace("_", "-")
    return _image_vit(size, name, repo, _AUGREG_PAPER, _TIMM_PREP, (tag, *extra_tags), dataset)


def _released(name: str, filename: str, preset: str, dataset: str, classes: int, **acc: Any) -> Weights:
    return Weights(
        name=name,
        source=UrlSource(
            url=f"https://www.adrianbulat.com/downloads/NeurIPS2021/models/{filename}",
            filename=filename,
            homepage=_XVIT_REPO,
        ),
        converter="released-xvit",
        arch="XViT-B/16",
        embed_dim=768,
        depth=12,
        patch_size=16,
        license="apache-2.0 (the authors' repository licence; no separate licence for the weights)",
        paper=_XVIT_PAPER,
        dataset=dataset,
        model="xvit_base_patch16",
        preset=preset,
        num_classes=classes,
        preprocessing=dict(_XVIT_PREP),
        **acc,
    )


_IN21K = "ImageNet-21k"
_IN21K_1K = "ImageNet-21k, fine-tuned on ImageNet-1k"
_BUILTIN: list[Weights] = [
    # transformers' google/vit-* (the original JAX weights converted by Hugging Face)
    _google("b", "vit-base-patch16-224-in21k", ("in21k",), _IN21K),
    _google("l", "vit-large-patch16-224-in21k", ("in21k",), _IN21K),
    _google("b", "vit-base-patch16-224", ("in1k",), _IN21K_1K),
    _google("l", "vit-large-patch16-224", ("in1k",), _IN21K_1K),
    # timm's Hub repos: the AugReg weights; tiny and small have no google/vit-* repo, so
    # "in21k" / "in1k" answer with these there
    _augreg("t", "augreg_in21k", ("in21k",), _IN21K),
    _augreg("s", "augreg_in21k", ("in21k",), _IN21K),
    _augreg("b", "augreg_in21k", (), _IN21K),
    _augreg("l", "augreg_in21k", (), _IN21K),
    _augreg("t", "augreg_in21k_ft_in1k", ("in1k",), _IN21K_1K),
    _augreg("s", "augreg_in21k_ft_in1k", ("in1k",), _IN21K_1K),
    _augreg("b", "augreg_in21k_ft_in1k", (), _IN21K_1K),
    _augreg("l", "augreg_in21k_ft_in1k", (), _IN21K_1K),
    _augreg("s", "augreg_in1k", (), "ImageNet-1k"),
    _augreg("b", "augreg_in1k", (), "ImageNet-1k"),
    # the two released X-ViT models (links from the authors' repository README)
    _released(
        "xvit-b16-k600",
        "xvit_b16_16_k600.pth",
        "k600",
        "Kinetics-600",
        600,
        top1=84.51,
        top5=96.26,
        accuracy_note="Kinetics-600 val, 16 frames, 3x1 views (3x2 views: 84.71 / 96.39), as the authors list",
    ),
    _released(
        "xvit-b16-ssv2",
        "xvit_b16_16_ss2.pth",
        "ssv2",
        "Something-Something-v2",
        174,
        top1=67.19,
        top5=91.00,
        accuracy_note="SSv2 val, 16 frames, 32x2 views as the authors list",
    ),
]

WEIGHTS: dict[str, Weights] = {}


def register_weights(weights: Weights, replace: bool = False) -> Weights:
    """Add an entry (or, with `replace`, change one). A tag may name one entry per width and
    depth."""
    if weights.name in WEIGHTS and not replace:
        raise ValueError(f"weights {weights.name!r} are registered already")
    for other in WEIGHTS.values():
        if other.name == weights.name or not other.fits(weights.embed_dim, weights.depth):
            continue
        clash = set(other.tags) & set(weights.tags)
        if clash:
            raise ValueError(
                f"weights {weights.name!r}: tag(s) {sorted(clash)} already name {other.name!r} for "
                f"width {weights.embed_dim}, depth {weights.depth}"
            )
    WEIGHTS[weights.name] = weights
    return weights


def unregister_weights(name: str) -> None:
    """Remove an entry (tests, or a user's own registration)."""
    WEIGHTS.pop(name, None)


for _w in _BUILTIN:
    register_weights(_w)


def list_weights(pattern: str | None = None) -> list[str]:
    """Sorted registry names, filtered by a glob `pattern` (e.g. "xvit-*")."""
    names = sorted(WEIGHTS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def _hint(word: str, choices: list[str]) -> str:
    matches = difflib.get_close_matches(word, choices, n=4, cutoff=0.5)
    return f"; did you mean {', '.join(matches)}?" if matches else ""


def get_weights(name: str) -> Weights:
    """The entry `name`; `ValueError` listing close names when there is none."""
    if name not in WEIGHTS:
        raise ValueError(
            f"unknown weights {name!r}{_hint(name, list(WEIGHTS))} (see `xvit models --weights`)"
        )
    return WEIGHTS[name]


def all_tags() -> set[str]:
    return {t for w in WEIGHTS.values() for t in w.tags}


def looks_like_weights_name(value: str | os.PathLike[str]) -> bool:
    """True when `value` is meant as a registry name, tag or `hf-hub:` reference rather
    than a path (a registry name or tag wins over a same-named file only when no such file
    exists)."""
    text = str(value)
    if text.startswith(HF_HUB_PREFIX):
        return True
    if Path(text).exists():
        return False
    return text in WEIGHTS or text in all_tags()


def resolve_pretrained(value: str, embed_dim: int, depth: int, model_name: str = "the model") -> Weights:
    """The entry `value` (a registry name or a tag) means for a backbone of `embed_dim` and
    `depth`; `ValueError` when it names nothing or does not fit."""
    if value in WEIGHTS:
        w = WEIGHTS[value]
        if not w.fits(embed_dim, depth):
            raise ValueError(
                f"weights {value!r} are {w.arch} (width {w.embed_dim}, depth {w.depth}) and do not fit "
                f"{model_name} (width {embed_dim}, depth {depth})"
            )
        return w
    matches = [w for w in WEIGHTS.values() if value in w.tags and w.fits(embed_dim, depth)]
    if matches:
        return matches[0]
    if value in all_tags():
        have = sorted(w.name for w in WEIGHTS.values() if w.fits(embed_dim, depth))
        raise ValueError(
            f"no {value!r} weights for {model_name} (width {embed_dim}, depth {depth})"
            + (f"; weights that fit: {', '.join(have)}" if have else "; no registered weights fit it")
        )
    raise ValueError(
        f"pretrained={value!r} is not a file, a registry name or a tag"
        f"{_hint(value, sorted(set(WEIGHTS) | all_tags()))} (see `xvit models --weights`)"
    )


# --------------------------------------------------------------------------------------------
# Files: download and convert once
# --------------------------------------------------------------------------------------------


def download_dir(weights: Weights) -> Path:
    """Where the downloaded file goes (and where to put it by hand)."""
    return weights_cache() / "downloads" / weights.name


def converted_path(weights: Weights) -> Path:
    """The converted weights: `NAME/model.safetensors` (image-vit) or the `NAME/`
    `save_pretrained` directory (released-xvit)."""
    base = weights_cache() / weights.name
    return base if weights.is_video_model else base / "model.safetensors"


def _manual_file(weights: Weights) -> Path | None:
    """A file the user put in `download_dir` by hand (the one the offline error names)."""
    names = weights.source.filenames if isinstance(weights.source, HubSource) else (weights.source.filename,)
    for name in names:
        path = download_dir(weights) / name
        if path.is_file():
            return path
    return None


def _unavailable(weights: Weights, why: str) -> WeightsUnavailableError:
    src = weights.source
    if isinstance(src, HubSource):
        what = hub_url(src.repo_id, src.filenames[0], src.revision)
        alt = f" (or `huggingface-cli download {src.repo_id} {src.filenames[0]}` to fill the Hub cache)"
        target = download_dir(weights) / src.filenames[0]
    else:
        what, alt, target = src.url, "", download_dir(weights) / src.filename
        if src.homepage:
            alt = f" (published at {src.homepage})"
    return WeightsUnavailableError(
        f"weights {weights.name!r} are not in the cache and {why}: download {what}{alt} and put it at {target}"
    )


def download_weights(weights: Weights, progress: bool = True) -> Path:
    """The source file of `weights`, from the cache, a file put in `download_dir` by hand,
    or downloaded now."""
    manual = _manual_file(weights)
    if manual is not None:
        return manual
    src = weights.source
    try:
        if isinstance(src, HubSource):
            return hub_download(src.repo_id, src.filenames, src.revision)
        if is_offline():
            raise _unavailable(weights, "HF_HUB_OFFLINE is set")
        return download_url(
            src.url, download_dir(weights) / src.filename, src.size, src.sha256, progress=progress
        )
    except WeightsUnavailableError as e:
        if str(e).startswith(f"weights {weights.name!r}"):
            raise
        why = "HF_HUB_OFFLINE is set" if is_offline() else "the source cannot be reached"
        raise _unavailable(weights, why) from e


def _convert(weights: Weights, source: Path, target: Path) -> None:
    """Write the converted form of `source` at `target` (file or directory), atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        if weights.converter == "released-xvit":
            from xvit.models.convert_official import convert_official

            convert_official(source, tmp, preset=weights.preset)
        else:
            from safetensors.torch import save_file

            from xvit.models.imagenet import read_checkpoint

            tensors = {k: v.contiguous() for k, v in read_checkpoint(source).items()}
            save_file(tensors, str(tmp), metadata={"format": "pt", "xvit_weights": weights.name})
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def fetch_weights(name: str, progress: bool = True) -> Path:
    """The converted weights of registry entry `name` (see `converted_path`), downloaded and
    converted on first use; later calls make no request."""
    weights = get_weights(name)
    target = converted_path(weights)
    done = target / "model.safetensors" if weights.is_video_model else target
    if done.is_file():
        return target
    if weights.is_video_model and target.exists():  # an unfinished directory from elsewhere
        shutil.rmtree(target)
    _convert(weights, download_weights(weights, progress), target)
    return target


def parse_hub_reference(reference: str) -> tuple[str, str]:
    """`(repo_id, revision)` of `hf-hub:ORG/NAME[@REVISION]` (revision default "main")."""
    repo, _, revision = reference.removeprefix(HF_HUB_PREFIX).partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"{reference!r}: expected hf-hub:ORG/NAME (optionally @REVISION)")
    return repo, revision or "main"


def fetch_hub_repo(reference: str, filenames: tuple[str, ...]) -> Path:
    """Download `filenames` of `hf-hub:ORG/NAME[@REVISION]` (all must exist); returns the
    snapshot directory they are in."""
    repo, revision = parse_hub_reference(reference)
    paths = [hub_download(repo, (f,), revision) for f in filenames]
    return paths[0].parent


def fetch_hub_weights(reference: str) -> Path:
    """The weights file of `hf-hub:ORG/NAME[@REVISION]` (`model.safetensors`, else
    `pytorch_model.bin`)."""
    repo, revision = parse_hub_reference(reference)
    return hub_download(repo, ("model.safetensors", "pytorch_model.bin"), revision)


__all__ = [
    "HF_HUB_PREFIX",
    "WEIGHTS",
    "HubSource",
    "UrlSource",
    "Weights",
    "converted_path",
    "download_dir",
    "download_weights",
    "fetch_hub_repo",
    "fetch_hub_weights",
    "fetch_weights",
    "get_weights",
    "list_weights",
    "looks_like_weights_name",
    "parse_hub_reference",
    "register_weights",
    "resolve_pretrained",
    "unregister_weights",
]
