"""Model cards: the `README.md` that `save_pretrained` writes next to the weights.

The card starts with Hugging Face metadata (YAML between `---` lines: `library_name: xvit`,
`pipeline_tag`, `tags`, `datasets`, `metrics`, `model-index` with the results), then says
what the model is, how it was trained (the command, from the run's `metrics.json`), how
well it did (the run's figures), its classes, its preprocessing, how to load it, and its
intended use and limitations. Everything comes from the model's `config.json` fields and,
in a training run directory, its `metrics.json` and `config.yaml`; nothing is invented.

A `README.md` that xvit did not write (no `library_name: xvit` in its metadata) is never
overwritten (`is_xvit_card`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CARD_NAME = "README.md"
_MAX_CLASSES_LISTED = 100
# metrics.json key -> (model-index metric type, display name)
_FIGURES = {
    "top1": ("accuracy", "top-1 accuracy"),
    "top5": ("top_5_accuracy", "top-5 accuracy"),
    "mean_class_accuracy": ("mean_class_accuracy", "mean class accuracy"),
    "mAP": ("map", "mAP"),
}


def is_xvit_card(path: str | os.PathLike[str]) -> bool:
    """True when `path` is a README.md written by xvit (its metadata says library_name: xvit)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    meta = read_card_metadata(text)
    return meta is not None and meta.get("library_name") == "xvit"


def read_card_metadata(text: str) -> dict[str, Any] | None:
    """The YAML metadata block at the top of a card, or None when there is none."""
    import yaml

    if not text.startswith("---\n"):
        return None
    end = text.find("\n---\n", 4)
    if end < 0:
        return None
    try:
        meta = yaml.safe_load(text[4:end])
    except yaml.YAMLError:
        return None
    return meta if isinstance(meta, dict) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_yaml(path: Path) -> dict[str, Any] | None:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _dataset_name(run_config: Mapping[str, Any] | None) -> str | None:
    """A name for the training data: synthetic, or the folder holding the train list."""
    data = (run_config or {}).get("data") or {}
    if data.get("format") == "synth" or (not data.get("train_list") and data.get("synth_dir")):
        return "xvit-synth"
    train_list = data.get("train_list")
    if train_list:
        parent = Path(str(train_list)).parent.name
        return parent or Path(str(train_list)).stem
    return None


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def render_model_card(
    config: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    run_config: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
    datasets: list[str] | None = None,
    license: str | None = None,
) -> str:
    """The card text for a model whose `config.json` fields are `config`; `metrics` is a
    run's `metrics.json`, `run_config` its `config.yaml`; `repo_id` the Hub repo the card
    goes to (for the loading example)."""
    import yaml

    name = str(config.get("name") or "VideoViT")
    classes = config.get("class_names")
    num_classes = int(config.get("num_classes") or (len(classes) if classes else 0))
    if datasets is None:
        found = _dataset_name(run_config)
        datasets = [found] if found else []
    figures = {k: metrics[k] for k in _FIGURES if metrics and isinstance(metrics.get(k), (int, float))}

    meta: dict[str, Any] = {"library_name": "xvit", "pipeline_tag": "video-classification"}
    if license:
        meta["license"] = license
    meta["tags"] = sorted(
        {"xvit", "video-classification", "pytorch", f"attention-{config.get('attention', 'spatial')}", name}
    )
    if datasets:
        meta["datasets"] = list(datasets)
    if figures:
        meta["metrics"] = [_FIGURES[k][0] for k in figures]
        views = metrics.get("views") if metrics else None
        meta["model-index"] = [
            {
                "name": repo_id.split("/")[-1] if repo_id else name,
                "results": [
                    {
                        "task": {"type": "video-classification", "name": "Video Classification"},
                        "dataset": {
                            "type": datasets[0] if datasets else "custom",
                            "name": datasets[0] if datasets else "custom",
                        },
                        "metrics": [
                            {
                                "type": _FIGURES[k][0],
                                "name": _FIGURES[k][1] + (f" ({views} views)" if views else ""),
                                "value": float(v),
                            }
                            for k, v in figures.items()
                        ],
                    }
                ],
            }
        ]

    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "", f"# {repo_id or name}", ""]
    frames, size = config.get("num_frames"), config.get("img_size")
    lines += [
        f"A video classifier built with xvit: `{name}` "
        f"({config.get('attention')} attention, `{config.get('head')}` temporal head), width "
        f"{config.get('embed_dim')}, depth {config.get('depth')}, {config.get('num_heads')} heads, patch "
        f"{config.get('patch_size')}; input {frames} frames of {size}x{size}; {num_classes} classes"
        + (" (multi-label: one sigmoid per class)" if config.get("multi_label") else "")
        + ".",
        "",
    ]
    if metrics:
        lines += ["## Results", ""]
        if figures:
            lines += ["| metric | value |", "|---|---|"]
            lines += [f"| {_FIGURES[k][1]} | {_fmt(v)} |" for k, v in figures.items()]
            lines.append("")
        details = [
            f"{k.replace('_', ' ')}: {metrics[k]}"
            for k in ("views", "num_videos", "num_failed")
            if k in metrics
        ]
        if details:
            lines += ["On the run's validation/test list; " + ", ".join(details) + ".", ""]
    if metrics and (metrics.get("command") or metrics.get("epochs")):
        lines += ["## Training", ""]
        if metrics.get("command"):
            lines += ["```bash", str(metrics["command"]), "```", ""]
        facts = [
            f"{k.replace('_', ' ')}: {metrics[k]}"
            for k in ("epochs", "global_step", "world_size")
            if k in metrics
        ]
        if run_config and (run_config.get("model") or {}).get("pretrained"):
            facts.append(f"initial weights: {run_config['model']['pretrained']}")
        if facts:
            lines += [", ".join(facts) + ".", ""]
    if classes:
        shown = ", ".join(f"`{c}`" for c in classes[:_MAX_CLASSES_LISTED])
        more = (
            f" (and {len(classes) - _MAX_CLASSES_LISTED} more)" if len(classes) > _MAX_CLASSES_LISTED else ""
        )
        lines += ["## Classes", "", f"{len(classes)} classes, in output order: {shown}{more}.", ""]
    data = (run_config or {}).get("data") or {}
    prep = [
        f"RGB frames scaled to [0, 1], normalised with mean {list(config.get('mean', []))} and std "
        f"{list(config.get('std', []))}",
        f"{frames} frames per clip, {size}x{size} crops",
    ]
    if data.get("sampling"):
        prep.append(f"frame sampling `{data['sampling']}` (rate {data.get('sampling_rate')})")
    if data.get("test_scale"):
        prep.append(f"short side resized to {data['test_scale']} at test time")
    lines += ["## Preprocessing", "", "; ".join(prep) + ".", ""]
    where = f"hf-hub:{repo_id}" if repo_id else "PATH_TO_THIS_DIRECTORY"
    lines += [
        "## How to use",
        "",
        "```python",
        "import xvit",
        f'model = xvit.load_model("{where}")  # eval mode; model.config holds the preprocessing',
        "logits = model(clips)  # clips: (B, 3, T, H, W), normalised as above",
        "```",
        "",
        "## Intended use and limitations",
        "",
        "For classifying short video clips into the classes above, on videos like those it was "
        "trained on. The figures above are measured on the run's own evaluation list and do not "
        "carry over to other data; check accuracy on your own videos before relying on it. The "
        "model inherits the biases of its training data and of any pretrained weights it started "
        "from; it is not meant for decisions about people.",
        "",
    ]
    return "\n".join(lines)


def card_for_directory(
    directory: str | os.PathLike[str],
    config: Mapping[str, Any],
    repo_id: str | None = None,
    datasets: list[str] | None = None,
    license: str | None = None,
) -> str:
    """The card for a `save_pretrained` directory, with the run's `metrics.json` and
    `config.yaml` when the directory is a training run."""
    directory = Path(directory)
    return render_model_card(
        config,
        metrics=_read_json(directory / "metrics.json"),
        run_config=_read_yaml(directory / "config.yaml"),
        repo_id=repo_id,
        datasets=datasets,
        license=license,
    )


__all__ = ["CARD_NAME", "card_for_directory", "is_xvit_card", "read_card_metadata", "render_model_card"]
