"""How `xvit train` resolves flags, config files and overrides: the built-in recipe never leaks
into a run on the user's data, every flag means what it says, every bad value is a one-line
error naming its key, and the run records where each value came from."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from test_engine_utils import TINY_MODEL, make_dataset, one_thread  # noqa: F401

import xvit
from xvit.cli.main import main
from xvit.engine.run.config import SYNTHETIC_RECIPE, ConfigError, load_config, model_options
from xvit.engine.run.saved import load_run
from xvit.models.registry import model_config

pytestmark = pytest.mark.usefixtures("one_thread")


def flags(*pairs: str) -> list[tuple[str, str]]:
    """("--img-size", "data.img_size=64", ...) -> [(flag, item), ...]."""
    return list(zip(pairs[::2], pairs[1::2]))


def test_lists_get_the_registered_model_and_a_derived_scale():
    cfg = load_config(
        None,
        [],
        flags(
            "--model",
            "model.name=xvit_tiny_patch16",
            "--train-list",
            "data.train_list=train.csv",
            "--img-size",
            "data.img_size=64",
            "--num-frames",
            "data.num_frames=8",
        ),
    )
    assert cfg.model.overrides == {} and cfg.model.head == "ta"  # the general recipe, not the synthetic one
    mc = model_config(cfg.model.name, num_classes=4, **model_options(cfg))
    registered = model_config("xvit_tiny_patch16")
    assert (mc.embed_dim, mc.depth, mc.patch_size) == (registered.embed_dim, registered.depth, 16)
    assert cfg.data.train_scale == [73, 91]  # 256-320 per 224, in proportion
    assert cfg.sources["data.train_scale"].startswith("derived")
    cfg = load_config(
        None,
        [],
        flags(
            "--model",
            "model.name=vit_small_patch16",
            "--train-list",
            "data.train_list=t.txt",
            "--img-size",
            "data.img_size=224",
        ),
    )
    assert cfg.data.train_scale == [256, 320] and cfg.model.overrides == {}


def test_recipe_applies_whole_only_without_lists_and_config():
    cfg = load_config()
    assert cfg.model.overrides == SYNTHETIC_RECIPE["model"]["overrides"]
    assert cfg.sources["model.name"] == "recipe" and cfg.sources["train.seed"] == "default"
    # a named model is built as registered, even on the synthetic data
    cfg = load_config(None, ["model.name=vit_tiny_patch16"])
    assert cfg.model.overrides == {} and cfg.data.img_size == 32
    # the recipe's 8-pixel patches accept 40-pixel crops; its scale follows the crop size
    cfg = load_config(None, [], flags("--img-size", "data.img_size=40"))
    assert cfg.data.train_scale == [40, 45] and cfg.model.overrides["patch_size"] == 8
    # a config file's scale set for 224 follows a smaller crop
    cfg = load_config("configs/kinetics400_xvit_b16_16x16.yaml", [], flags("--img-size", "data.img_size=112"))
    assert cfg.data.train_scale == [128, 160] and cfg.data.test_scale == 112
    # a scale the user sets is used as given
    cfg = load_config(None, ["data.train_scale=[50,60]"], flags("--img-size", "data.img_size=40"))
    assert cfg.data.train_scale == [50, 60]


def test_flag_and_override_disagreeing_is_an_error():
    with pytest.raises(ConfigError, match="data.img_size.*set twice"):
        load_config(None, ["data.img_size=48"], flags("--img-size", "data.img_size=64"))
    assert (
        load_config(None, ["data.img_size=48"], flags("--img-size", "data.img_size=48")).data.img_size == 48
    )


@pytest.mark.parametrize(
    "args, key",
    [
        (["--batch-size", "0"], "data.batch_size"),
        (["--batch-size", "-3"], "data.batch_size"),
        (["--num-frames", "0"], "data.num_frames"),
        (["--img-size", "0"], "data.img_size"),
        (["--img-size", "33"], "not divisible by patch_size 8"),
        (["--model", "vit_tiny_patch16", "--img-size", "40"], "not divisible by patch_size 16"),
        (["--lr", "-1"], "optim.lr"),
        (["--lr", "nan"], "optim.lr"),
        (["--epochs", "0"], "train.epochs"),
        (["--epochs", "-1"], "train.epochs"),
        (["--val-split", "1.5"], "data.val_split"),
        (["--workers", "-1"], "data.workers"),
        (["data.train_scale=[20,30]"], "data.train_scale"),
        (["data.std=[0.5,0,0.5]"], "data.std"),
        (["data.mean=[0.5,0.5]"], "data.mean"),
        (["model.overrides.mean=[0.1,0.1,0.1]", "data.mean=[0.2,0.2,0.2]"], "disagree"),
        (["model.overrides.no_such_option=1"], "no_such_option"),
        (["eval.views=0x3"], "eval.views"),
        (["optim.ema_decay=1.5"], "optim.ema_decay"),
    ],
)
def test_bad_values_are_one_line_errors_before_any_work(tmp_path, capsys, args, key):
    out = tmp_path / "run"
    assert main(["train", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xvit train: error:") and key in err and err.count("\n") == 1
    assert "Traceback" not in err and not out.exists()


def test_config_yaml_records_sources_and_round_trips(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("optim:\n  weight_decay: 0.01\n")
    cfg = load_config(path, ["optim.lr=0.002"], flags("--epochs", "train.epochs=3"))
    from xvit.engine.run.config import config_to_dict, save_config

    save_config(cfg, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert f"weight_decay: 0.01  # file {path}" in text
    assert "lr: 0.002  # override" in text and "epochs: 3  # flag --epochs" in text
    assert "seed: 0  # default" in text and "train_scale: [256, 320]  # derived" in text
    assert yaml.safe_load(text)["optim"]["lr"] == 0.002
    assert config_to_dict(load_config(tmp_path / "config.yaml")) == config_to_dict(cfg)


def test_user_list_trains_the_registered_model_at_the_asked_size(tmp_path, capsys):
    lists = make_dataset(tmp_path / "data", n_train=4, n_val=2, size=32)
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--model",
            "vit_tiny_patch16",
            "--train-list",
            str(lists["train"]),
            "--val-list",
            str(lists["val"]),
            "--num-frames",
            "2",
            "--img-size",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--workers",
            "0",
            "--out",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text())
    registered = model_config("vit_tiny_patch16")
    assert (saved["embed_dim"], saved["depth"], saved["patch_size"]) == (
        registered.embed_dim,
        registered.depth,
        registered.patch_size,
    )
    assert (saved["img_size"], saved["num_frames"]) == (32, 2)
    assert "img_size: 32  # flag --img-size" in (out / "config.yaml").read_text()


def test_normalisation_has_one_owner(tmp_path, capsys):
    """Training, evaluation and prediction normalise with the model config's values."""
    lists = make_dataset(tmp_path / "data", n_train=4, n_val=2)
    for extra, want in (
        (["data.mean=[0.3,0.4,0.45]", "data.std=[0.2,0.25,0.3]"], ([0.3, 0.4, 0.45], [0.2, 0.25, 0.3])),
        (["model.overrides.mean=[0.1,0.2,0.3]"], ([0.1, 0.2, 0.3], [0.5, 0.5, 0.5])),
    ):
        out = tmp_path / f"run{len(extra)}"
        rc = main(
            [
                "train",
                *TINY_MODEL,
                *extra,
                "--train-list",
                str(lists["train"]),
                "--val-list",
                str(lists["val"]),
                "--epochs",
                "1",
                "--batch-size",
                "2",
                "--workers",
                "0",
                "--out",
                str(out),
            ]
        )
        assert rc == 0, capsys.readouterr().err
        model = xvit.load_model(out)
        assert [list(model.config.mean), list(model.config.std)] == [pytest.approx(v) for v in want]
        from xvit.engine.run.data import build_eval_dataset, build_train_dataset

        run_cfg = load_config(out / "config.yaml")
        _, eval_cfg = load_run(out)
        for ds in (build_train_dataset(run_cfg, []), build_eval_dataset(eval_cfg, [], (1, 1))):
            t = ds.transform
            assert list(t.mean) == pytest.approx(want[0]) and list(t.std) == pytest.approx(want[1])


def test_class_folders_with_a_held_out_split(tmp_path, capsys):
    lists = make_dataset(tmp_path / "data", n_train=9, n_val=0)
    tree = tmp_path / "tree"
    for line in lists["train"].read_text().split("\n"):
        if line:
            name, label = line.split()
            (tree / f"class_{label}").mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / "data" / name, tree / f"class_{label}" / name)
    (tree / "class_2" / "broken.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "run"
    common = [*TINY_MODEL, "--epochs", "1", "--batch-size", "2", "--workers", "0"]
    rc = main(
        ["train", *common, "--train-list", str(tree), "--val-split", "0.34", "--dry-run", "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert rc == 0 and not out.exists()
    assert "3 classes (class_0, class_1, class_2)" in printed and "train: 7 videos" in printed
    assert (
        "validation: 3 videos, held out" in printed and "1 unreadable" in printed and "broken.mp4" in printed
    )
    rc = main(["train", *common, "--train-list", str(tree), "--val-split", "0.34", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0 and "validation: 3 of the 10 training videos held out" in printed
    assert xvit.load_model(out).config.class_names == ["class_0", "class_1", "class_2"]
    assert "val_split: 0.34  # flag --val-split" in (out / "config.yaml").read_text()
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(out),
                "--list",
                str(tree),
                "--workers",
                "0",
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 1
    )  # the broken file counts as a failure
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["num_videos"] == 10 and metrics["num_failed"] == 1


def test_empty_and_unreadable_lists(tmp_path, capsys):
    lists = make_dataset(tmp_path / "data", n_train=4, n_val=2)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    common = [*TINY_MODEL, "--epochs", "1", "--batch-size", "2", "--workers", "0"]
    rc = main(
        [
            "train",
            *common,
            "--train-list",
            str(empty),
            "--val-list",
            str(lists["val"]),
            "--out",
            str(tmp_path / "a"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "train" in err and str(empty) in err and err.count("\n") == 1
    rc = main(
        [
            "train",
            *common,
            "--train-list",
            str(lists["train"]),
            "--val-list",
            str(empty),
            "--out",
            str(tmp_path / "b"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "val" in err and str(empty) in err and err.count("\n") == 1
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(4):
        (broken / f"{i}.mp4").write_bytes(b"garbage")
    (tmp_path / "bad.txt").write_text("".join(f"{broken}/{i}.mp4 {i % 2}\n" for i in range(4)))
    rc = main(["train", *common, "--train-list", str(tmp_path / "bad.txt"), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert (
        rc == 1 and err.strip().splitlines()[-1].startswith("xvit train: error:") and "Traceback" not in err
    )
    assert not (tmp_path / "c" / "model.safetensors").exists()


def test_dry_run_on_the_built_in_data_names_the_recipe(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XVIT_CACHE", str(tmp_path / "cache"))
    assert main(["train", "--dry-run", "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    assert "built-in synthetic dataset, generated on first use" in printed
    assert "embed_dim: 96  # recipe" in printed and "width 96, depth 4" in printed
    assert not (tmp_path / "cache").exists() and not (tmp_path / "r").exists()
    assert torch.get_num_threads() == 1


def test_dry_run_on_a_run_directory_says_what_the_run_will_say(tmp_path, capsys):
    """`--dry-run` on an `--out` that holds a run: it resumes (with the settings that change
    named), or it is refused with the very line the run itself prints; `--fresh` starts over."""
    lists = make_dataset(tmp_path / "data", n_train=6, n_val=3, frames=8, size=32)
    out = tmp_path / "run"
    common = [*TINY_MODEL, "--train-list", str(lists["train"]), "--batch-size", "3", "--out", str(out)]
    assert main(["train", *common, "--val-list", str(lists["val"]), "--epochs", "1"]) == 0
    capsys.readouterr()
    files = sorted(p.name for p in out.rglob("*"))

    assert main(["train", *common, "--val-list", str(lists["val"]), "--epochs", "2", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"output: {out}: the run resumes from step_" in printed and "(epoch 1 of 2)" in printed
    assert "changed on resume: train.epochs 1 -> 2" in printed

    # a setting that defines the run: the dry run refuses as the run does, in the same words
    assert main(["train", *common, "--epochs", "2", "--dry-run"]) == 2
    dry = capsys.readouterr().err.strip()
    assert main(["train", *common, "--epochs", "2"]) == 2
    real = capsys.readouterr().err.strip()
    assert dry == real and dry.startswith("xvit train: error: cannot resume") and "data.val_list" in dry

    assert main(["train", *common, "--epochs", "2", "--dry-run", "--fresh"]) == 0
    assert "the run starts afresh" in capsys.readouterr().out
    assert sorted(p.name for p in out.rglob("*")) == files  # the dry runs wrote nothing
