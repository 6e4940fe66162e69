"""Config schema: YAML loading, misspelt keys, key=value overrides, shipped recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from xvit.engine.run.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_to_dict,
    default_config,
    load_config,
    parse_views,
    save_config,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_without_file():
    cfg = load_config()
    assert cfg == default_config() and cfg != Config()
    assert cfg.data.format == "auto" and cfg.data.train_list is None
    assert cfg.model.name == "xvit_tiny_patch16"
    # the dataclass defaults are the released recipe that YAML files build on
    recipe = Config()
    assert (recipe.optim.name, recipe.optim.base_lr, recipe.optim.base_batch_size) == ("sgd", 0.03, 64)
    assert (
        recipe.optim.momentum == 0.9
        and recipe.optim.warmup_epochs == 5
        and recipe.model.head_drop_rate == 0.5
    )


def test_yaml_values_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  name: sgd\n  weight_decay: 1e-4\ntrain:\n  epochs: 3\n")
    cfg = load_config(
        path,
        [
            "optim.lr=2e-3",
            "data.hflip=false",
            "data.mean=[0.5, 0.5, 0.5]",
            "model.pretrained=none",
            "data.std=0.2,0.3,0.4",
            "model.overrides.depth=6",
            "train.out=007",
        ],
    )
    assert cfg.optim.name == "sgd"
    assert cfg.optim.weight_decay == pytest.approx(1e-4)  # YAML 1.1 reads 1e-4 as a string
    assert cfg.train.epochs == 3
    assert cfg.optim.lr == pytest.approx(2e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.data.hflip is False
    assert cfg.data.mean == [0.5, 0.5, 0.5] and cfg.data.std == [0.2, 0.3, 0.4]
    assert cfg.model.pretrained is None
    assert cfg.model.overrides == {"depth": 6}
    assert cfg.train.out == "007"  # a str field keeps the text as written
    # the defaults object itself is never modified
    assert Config().model.overrides == {}


@pytest.mark.parametrize(
    "yaml_text, bad, hint",
    [
        ("optim:\n  lrr: 0.1\n", "optim.lrr", "optim.lr"),
        ("data:\n  num_frame: 8\n", "data.num_frame", "data.num_frames"),
        ("model:\n  epochs: 3\n", "model.epochs", "train.epochs"),
        ("optimizer:\n  lr: 0.1\n", "optimizer", "optim"),
    ],
)
def test_unknown_yaml_key_names_the_closest(tmp_path, yaml_text, bad, hint):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert f"'{bad}'" in msg and f"did you mean '{hint}'" in msg and str(path) in msg


@pytest.mark.parametrize(
    "override, needle",
    [
        ("optim.wieght_decay=0.1", "did you mean 'optim.weight_decay'"),
        ("lr=0.1", "did you mean 'optim.lr'"),
        ("data.num_frames=eight", "expected int"),
        ("optim.name=adam", "did you mean 'adamw'"),
        ("model.head=mean", "not one of avg, ta, linear"),
        ("train.epochs", "section.key=value"),
        ("data.hflip=maybe", "expected bool"),
    ],
)
def test_bad_overrides(override, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        apply_overrides(Config(), [override])


def test_saved_config_round_trips(tmp_path):
    cfg = apply_overrides(default_config(), ["optim.lr=0.5", "data.mean=[0.1,0.2,0.3]", "eval.views=3x2"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert config_to_dict(again) == config_to_dict(cfg)


def test_shipped_configs_load():
    files = sorted(CONFIGS.glob("*.yaml"))
    names = {p.stem for p in files}
    for needed in (
        "synthetic",
        "kinetics400_xvit_b16_16x16",
        "kinetics600_xvit_b16_16x16",
        "ssv2_xvit_b16_16",
        "epic100_xvit_b16_16",
    ):
        assert needed in names
    for p in files:
        load_config(p)


def test_synthetic_config_is_the_default():
    """`xvit train` with no config runs exactly configs/synthetic.yaml."""
    assert load_config(CONFIGS / "synthetic.yaml") == default_config()


def test_released_recipe_values():
    cfg = load_config(CONFIGS / "ssv2_xvit_b16_16.yaml")
    assert cfg.optim.name == "sgd" and cfg.optim.base_lr == 0.03 and cfg.optim.base_batch_size == 64
    assert cfg.optim.weight_decay == pytest.approx(1e-4)
    assert cfg.data.hflip is False and cfg.data.num_frames == 16 and cfg.train.epochs == 35
    k400 = load_config(CONFIGS / "kinetics400_xvit_b16_16x16.yaml")
    assert k400.optim.mixup == 0.4 and k400.data.sampling_rate == 16 and k400.train.epochs == 30


def test_parse_views():
    assert parse_views("3x2") == (3, 2)
    for bad in ("3", "0x1", "ax2"):
        with pytest.raises(ConfigError):
            parse_views(bad)
