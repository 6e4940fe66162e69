"""A run's configuration: resolved from its layers (defaults, a recipe or a YAML file,
``key=value`` overrides, command-line flags), each value's source recorded, checked, and
written back as YAML with the sources as comments.

This module is also the configuration's public face: :class:`Config`, :class:`ConfigError`,
:func:`apply_overrides`, :func:`check_config`, :func:`model_options` and the other names in
``__all__`` are importable from here; they are defined in :mod:`xvit.engine.run.schema` (the
schema, with the section dataclasses), :mod:`xvit.engine.run.coerce` (setting values by key),
:mod:`xvit.engine.run.checks` and :mod:`xvit.engine.run.model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from xvit.data.text import read_user_text
from xvit.engine.run.checks import check_config
from xvit.engine.run.coerce import apply_overrides, config_from_dict, default_config, parse_item, set_value
from xvit.engine.run.model import model_options
from xvit.engine.run.schema import (
    SCRATCH_RECIPE,
    SYNTHETIC_RECIPE,
    Config,
    ConfigError,
    config_to_dict,
    derived_train_scale,
    parse_views,
    valid_keys,
)
from xvit.models.heads import HEAD_LR_SCALE

__all__ = [
    "SCRATCH_RECIPE",
    "SYNTHETIC_RECIPE",
    "Config",
    "ConfigError",
    "apply_overrides",
    "check_config",
    "config_from_dict",
    "config_text",
    "config_to_dict",
    "default_config",
    "derived_train_scale",
    "load_config",
    "model_options",
    "parse_views",
    "recipe_lines",
    "save_config",
]


def _dict_keys(data: dict[str, Any]) -> list[str]:
    """The dotted keys a YAML mapping sets (``model.overrides`` entries one by one)."""
    keys = []
    for section, values in (data or {}).items():
        for name, value in (values or {}).items() if isinstance(values, dict) else ():
            if section == "model" and name == "overrides" and isinstance(value, dict):
                keys += [f"model.overrides.{k}" for k in value]
            else:
                keys.append(f"{section}.{name}")
    return keys


# The source label of the values the from-scratch recipe sets (config.yaml's comments).
SCRATCH_LABEL = "from-scratch recipe (model.pretrained is null)"


def _pretrained(user_values: dict[str, Any], data: dict[str, Any]) -> Any:
    """The ``model.pretrained`` a run will have: the user's last word, else the file's."""
    if "model.pretrained" in user_values:
        value = user_values["model.pretrained"]
    else:
        model = data.get("model") if isinstance(data, dict) else None
        value = model.get("pretrained") if isinstance(model, dict) else None
    if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
        return None
    return value


def _scratch_layer(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """:data:`SCRATCH_RECIPE` as the layer under a config file: whole, except that a file
    naming its own optimiser (``optim.name``) keeps that optimiser's settings to itself."""
    layer = {section: dict(values) for section, values in SCRATCH_RECIPE.items()}
    optim = data.get("optim") if isinstance(data, dict) else None
    if isinstance(optim, dict) and "name" in optim:
        layer.pop("optim")
    return layer


class _StrictLoader(yaml.SafeLoader):
    """YAML as ``yaml.safe_load`` reads it, except that a key given twice in one mapping is an
    error (``safe_load`` keeps the last value and drops the first without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:  # the keys written here (a merge's `<<` may be overridden)
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{key_node.start_mark.name}:{line}: {key!r} is set twice in one section "
                    f"(first on line {seen[key]}); keep one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_config_yaml(path: str | Path) -> Any:
    """A hand-written YAML config: read as any editor saves it (:mod:`xvit.data.text`), a key
    given twice in one section refused, a YAML error named with its file and line."""
    text = read_user_text(path, ConfigError)
    loader = _StrictLoader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        hint = " (YAML indents with spaces, not tabs)" if "\\t" in problem or "\t" in problem else ""
        raise ConfigError(f"{where}: not valid YAML: {problem}{hint}") from None
    finally:
        loader.dispose()


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    flags: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
) -> Config:
    """Resolve a run's configuration from its layers and check it.

    Layers, each on top of the one before: the schema's defaults (the released fine-tuning
    recipe); where the model starts from random weights (``model.pretrained`` null after
    every layer), :data:`SCRATCH_RECIPE` (a file that names its own ``optim.name`` keeps its
    optimiser); then either the config file at ``path`` or, when there is no file and no
    annotation list is given, :data:`SYNTHETIC_RECIPE` (itself a from-scratch recipe); then the ``key=value`` ``overrides``; then ``flags``
    (``(flag, "key=value")`` pairs, e.g. ``("--img-size", "data.img_size=64")``). A flag and
    an override that set one key to different values are an error. The recipe's model
    options (``model.overrides``) apply only to the recipe's own model: a run that names
    another model gets that model as registered. Training and test scales that a lower layer
    set for another ``img_size`` are scaled to the final one. ``cfg.sources`` records where
    every value came from; :func:`check_config` runs last.
    """
    user: list[tuple[str, Any, str, str]] = []  # key, value, label, text
    for item in overrides:
        key, value = parse_item(item)
        user.append((key, value, "override", item))
    for flag, item in flags:
        key, value = parse_item(item)
        user.append((key, value, f"flag {flag}", item))
    seen: dict[str, tuple[Any, str]] = {}
    for key, value, label, item in user:
        if (
            key in seen
            and seen[key][0] != value
            and label.startswith("flag") != seen[key][1].startswith("flag")
        ):
            raise ConfigError(
                f"'{key}' is set twice with different values: {seen[key][1]} and {label} ({item})"
            )
        seen[key] = (value, label)
    user_keys = {key for key, *_ in user}

    cfg = Config()
    sources = dict.fromkeys(valid_keys(), "default")
    img_when_set = dict.fromkeys(sources, cfg.data.img_size)

    def mark(keys: list[str], label: str) -> None:
        for key in keys:
            sources[key] = label
            img_when_set[key] = cfg.data.img_size

    user_values = {k: v for k, v, *_ in user}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        data = read_config_yaml(path)
        data = data or {}
        pretrained = _pretrained(user_values, data)
        base = None
        if pretrained is None:
            scratch = _scratch_layer(data)
            base = config_from_dict(scratch, source="the from-scratch recipe")
            cfg = base
            mark(_dict_keys(scratch), SCRATCH_LABEL)
        cfg = config_from_dict(data, source=str(path), base=base)
        mark(_dict_keys(data), f"file {path}")
        cfg.recipe = "scratch" if pretrained is None else "fine-tune"
    elif not user_keys & {"data.train_list", "data.val_list"} and user_values.get("data.format", "auto") in (
        "auto",
        "synth",
    ):
        recipe = {section: dict(values) for section, values in SYNTHETIC_RECIPE.items()}
        if "model.name" in user_keys:
            # the recipe's width, depth and patch size belong to its own model: a named model
            # is built as registered
            recipe["model"] = {k: v for k, v in recipe["model"].items() if k != "overrides"}
        cfg = config_from_dict(recipe, source="the built-in synthetic recipe")
        mark(_dict_keys(recipe), "recipe")
        cfg.recipe = "synthetic"
    elif _pretrained(user_values, {}) is None:
        cfg = config_from_dict(SCRATCH_RECIPE, source="the from-scratch recipe")
        mark(_dict_keys(SCRATCH_RECIPE), SCRATCH_LABEL)
        cfg.recipe = "scratch"
    else:
        cfg.recipe = "fine-tune"
    for key, value, label, item in user:
        set_value(cfg, key, value, source=f"{label} '{item}'" if label == "override" else f"{label} ({item})")
        mark([key], label)

    # Scales set for another crop size follow the crop size; unset ones are derived from it.
    d = cfg.data
    user_set = ("override", "flag")
    if d.train_scale is None:
        d.train_scale = derived_train_scale(d.img_size)
        sources["data.train_scale"] = "derived from data.img_size (released 256-320 per 224)"
    elif (
        not sources["data.train_scale"].startswith(user_set)
        and img_when_set["data.train_scale"] != d.img_size
    ):
        ratio = d.img_size / img_when_set["data.train_scale"]
        d.train_scale = [round(v * ratio) for v in d.train_scale]
        sources["data.train_scale"] += f", scaled to data.img_size={d.img_size}"
    if (
        d.test_scale is not None
        and not sources["data.test_scale"].startswith(user_set)
        and img_when_set["data.test_scale"] != d.img_size
    ):
        d.test_scale = round(d.test_scale * d.img_size / img_when_set["data.test_scale"])
        sources["data.test_scale"] += f", scaled to data.img_size={d.img_size}"
    cfg.sources = sources
    check_config(cfg)
    return cfg


_RECIPE_NAMES = {
    "scratch": "from scratch (model.pretrained is null)",
    "fine-tune": "fine-tuning model.pretrained",
    "synthetic": "the built-in synthetic recipe, from scratch",
}


def recipe_lines(cfg: Config, lr: float | None = None, total_batch: int | None = None) -> list[str]:
    """What a run's optimiser recipe is and why, as the run's first lines say it: the recipe
    its initialisation chose, the optimiser and its figures, and a warning where the two do
    not fit (the released fine-tuning recipe on a model from random weights, or the
    from-scratch one on pretrained weights)."""
    o = cfg.optim
    if lr is None:
        how = f"lr {o.lr:g}" if o.lr is not None else f"lr {o.base_lr:g} per {o.base_batch_size} clips"
    else:
        how = f"lr {lr:.3g}" + (
            f" ({o.base_lr:g} per {o.base_batch_size} clips x batch {total_batch})"
            if o.lr is None and total_batch
            else ""
        )
    warm = f"{o.warmup_epochs:g} warm-up epoch{'s' if o.warmup_epochs != 1 else ''} then cosine"
    clip = f", gradient clipping {o.clip_grad:g}" if o.clip_grad else ""
    head_scale = o.head_lr_scale if o.head_lr_scale is not None else HEAD_LR_SCALE.get(cfg.model.head, 1.0)
    if head_scale != 1.0:
        clip += f", the {cfg.model.head} head at {head_scale:g}x the rate"
    if o.layer_decay != 1.0:
        clip += f", layer-wise decay {o.layer_decay:g}"
    name = _RECIPE_NAMES.get(cfg.recipe, "as configured")
    if cfg.recipe == "fine-tune":
        name = f"fine-tuning {cfg.model.pretrained}"
    lines = [
        f"recipe: {name}: {o.name}, {how}, weight decay {o.weight_decay:g}, {warm}{clip}, "
        f"head dropout {cfg.model.head_drop_rate:g}, flips {'on' if cfg.data.hflip else 'off'}"
    ]
    scratch = cfg.model.pretrained is None
    if scratch and o.name == "sgd" and (lr if lr is not None else (o.lr or o.base_lr)) >= 0.01:
        lines.append(
            f"warning: optim.name=sgd at lr {lr if lr is not None else o.lr or o.base_lr:.3g} is a "
            "recipe for fine-tuning pretrained weights, and model.pretrained is null: from random "
            "weights it may stay at chance. Add --pretrained (e.g. in21k), or let the from-scratch "
            "recipe choose the optimiser (no optim.name in the config)"
        )
    return lines


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable with :func:`load_config`), atomically; each
    value carries a comment saying where it came from (``cfg.sources``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(config_text(cfg))
    tmp.replace(path)


def config_text(cfg: Config) -> str:
    """The config as YAML text, each value followed by a comment naming its source (and the
    recipe, as a comment at the top, when load_config chose one)."""
    lines = [f"# {line}" for line in recipe_lines(cfg)] if cfg.recipe else []
    for section, values in config_to_dict(cfg).items():
        lines.append(f"{section}:")
        for name, value in values.items():
            key = f"{section}.{name}"
            if key == "model.overrides" and value:
                lines.append("  overrides:")
                for k, v in value.items():
                    src = cfg.sources.get(f"model.overrides.{k}")
                    lines.append(f"    {k}: {_yaml_value(v)}" + (f"  # {src}" if src else ""))
                continue
            src = cfg.sources.get(key)
            lines.append(f"  {name}: {_yaml_value(value)}" + (f"  # {src}" if src else ""))
    return "\n".join(lines) + "\n"


def _yaml_value(value: Any) -> str:
    """One value in YAML flow style on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip()
    return text.removesuffix("\n...")
