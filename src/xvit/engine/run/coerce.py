"""Setting config values by dotted key (``optim.lr=1e-3``), from YAML mappings and from
``key=value`` text: an unknown or misspelt key is an error naming the closest valid key, a
value is converted to the field's type (``optim.lr=1e-3``, ``data.hflip=false``,
``data.mean=[0.5,0.5,0.5]``, ``model.pretrained=none``) and checked against the field's
choices (:mod:`xvit.engine.run.schema`).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Union

import yaml

from xvit.engine.run.schema import (
    SYNTHETIC_RECIPE,
    Config,
    ConfigError,
    copy_config,
    sections,
    valid_keys,
)

__all__ = [
    "apply_overrides",
    "config_from_dict",
    "default_config",
    "parse_item",
    "set_value",
]


def _closest_key(key: str) -> str | None:
    keys = valid_keys()
    leaf = key.rsplit(".", 1)[-1]
    leaves = {k.rsplit(".", 1)[-1]: k for k in keys}
    # A known name in the wrong place ("lr", "model.epochs"): point at where it lives.
    if leaf in leaves:
        return leaves[leaf]
    if "." not in key:  # a misspelt section
        match = difflib.get_close_matches(key, list(sections()), n=1, cutoff=0.6)
        if match:
            return match[0]
    match = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if match:
        return match[0]
    match = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)
    if match:
        return leaves[match[0]]
    match = difflib.get_close_matches(key, list(sections()), n=1, cutoff=0.6)
    return match[0] if match else None


def _unknown_key(key: str, source: str) -> ConfigError:
    hint = _closest_key(key)
    where = f" in {source}" if source else ""
    msg = f"unknown config key '{key}'{where}"
    if hint:
        msg += f"; did you mean '{hint}'?"
    return ConfigError(msg)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Convert ``value`` (parsed YAML) to the annotated type ``tp`` or raise a ConfigError."""
    where = f" in {source}" if source else ""

    def fail() -> ConfigError:
        return ConfigError(f"config key '{key}'{where}: expected {_type_name(tp)}, got {value!r}")

    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
            if type(None) in args:
                return None
            raise fail()
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except ConfigError:
                pass
        raise fail()
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "off", "0"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise fail()
    if tp in (int, float):
        if isinstance(value, bool):
            raise fail()
        if isinstance(value, int) or (tp is float and isinstance(value, float)):
            return tp(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return tp(value)
            except ValueError:
                raise fail() from None
        raise fail()
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise fail()
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.strip("[]").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise fail()
        return [_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise fail()
        return {str(k): v for k, v in value.items()}
    raise fail()


def _check_choice(cls: type, f: dataclasses.Field, value: Any, key: str, source: str) -> None:
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        where = f" in {source}" if source else ""
        hint = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        msg = f"config key '{key}'{where}: {value!r} is not one of {', '.join(choices)}"
        raise ConfigError(msg + (f"; did you mean '{hint[0]}'?" if hint else ""))


def set_value(cfg: Config, key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    by_name = sections()
    if len(parts) != 2 or parts[0] not in by_name:
        # model.overrides.<name>=value sets one create_model keyword argument.
        if len(parts) == 3 and parts[:2] == ["model", "overrides"]:
            cfg.model.overrides[parts[2]] = value
            return
        raise _unknown_key(key, source)
    section, name = parts
    cls = by_name[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise _unknown_key(key, source)
    tp = typing.get_type_hints(cls)[name]
    value = _coerce(value, tp, key, source)
    _check_choice(cls, fields[name], value, key, source)
    setattr(getattr(cfg, section), name, value)


def config_from_dict(data: dict[str, Any], source: str = "", base: Config | None = None) -> Config:
    """Build a Config from a nested dict (YAML layout), on top of ``base`` (default: defaults)."""
    cfg = copy_config(base) if base is not None else Config()
    if not data:
        return cfg
    if not isinstance(data, dict):
        raise ConfigError(f"{source or 'config'}: expected a mapping of sections, got {type(data).__name__}")
    for section, values in data.items():
        if section not in sections():
            raise _unknown_key(str(section), source)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(
                f"config section '{section}' in {source or 'config'} must be a mapping, got {values!r}"
            )
        for name, value in values.items():
            set_value(cfg, f"{section}.{name}", value, source)
    return cfg


def default_config() -> Config:
    """The configuration of ``xvit train`` without a config file: :data:`SYNTHETIC_RECIPE`."""
    return config_from_dict(SYNTHETIC_RECIPE, source="the built-in synthetic recipe")


def parse_item(item: str) -> tuple[str, Any]:
    """``section.key=value`` -> (key, value parsed as YAML, text kept for text fields)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # Keep the text as written for string-valued fields ("007" must stay "007").
    if isinstance(value, (int, float)) and not isinstance(value, bool) and _field_is_str(key):
        value = raw
    return key, value


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Apply ``section.key=value`` strings (values parsed as YAML, then converted to the field type)."""
    cfg = copy_config(cfg)
    for item in overrides:
        key, value = parse_item(item)
        set_value(cfg, key, value, source=f"override {item!r}")
        if cfg.sources:
            cfg.sources[key] = "override"
    return cfg


def _field_is_str(key: str) -> bool:
    """Whether ``key`` names a field holding text (str or str | None)."""
    section, _, name = key.partition(".")
    cls = sections().get(section)
    if cls is None or name not in {f.name for f in dataclasses.fields(cls)}:
        return False
    tp = typing.get_type_hints(cls)[name]
    return tp is str or set(typing.get_args(tp)) == {str, type(None)}
