"""Wherever a model meets a list, the two label spaces are compared before any work: `xvit
predict --list` and `xvit extract --list` with labelled lines, `xvit eval` (and a run's
validation list) with a list that carries its own classnames.txt, fine-tuning from a saved
model. A label the model cannot produce is refused in one line naming both sides (exit 2,
nothing written); a legitimate difference (a subset, another order of the same names, a new
classifier for new classes) is stated. The label checks themselves are in
``xvit.engine.run.labels``."""

from __future__ import annotations

import json

import pytest
import torch
from _model_helpers import randomise
from _video_fixtures import write_video
from safetensors import safe_open
from test_engine_utils import TINY_MODEL

import xvit
from xvit.cli.main import main
from xvit.data.samples import Sample
from xvit.engine.infer.video_list import read_listed_videos
from xvit.engine.run.labels import check_listed_labels, label_space, own_class_map
from xvit.engine.run.schema import ConfigError
from xvit.models.storage import save_pretrained

CLASSES = ["up", "down", "left"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Three tiny videos and a saved 3-class model (up, down, left) that reads 4 x 32 x 32
    (TINY_MODEL's layout)."""
    root = tmp_path_factory.mktemp("labels")
    for name in ("v0.mp4", "v1.mp4", "my clip é.mp4"):
        write_video(root / name, num_frames=8, height=32, width=32, fps=8, gop=4)
    model = xvit.create_model(
        "xvit_tiny_patch16",
        num_classes=3,
        num_frames=4,
        img_size=32,
        embed_dim=64,
        depth=2,
        num_heads=2,
        head="avg",
    )
    randomise(model, seed=3)
    model.config.class_names = list(CLASSES)
    save_pretrained(model, root / "ckpt")
    return root


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.mark.parametrize("command", ["predict", "extract"])
def test_a_video_list_with_labels_the_model_cannot_produce_is_refused(setup, tmp_path, capsys, command):
    root = setup
    ckpt = str(root / "ckpt")

    def run(lines: str, out):
        (root / "lst.txt").write_text(lines)
        args = [command, "--list", str(root / "lst.txt"), "--checkpoint", ckpt, "--out", str(out)]
        return main([*args, "--workers", "0"] + (["--no-progress"] if command == "extract" else []))

    out = tmp_path / ("p.csv" if command == "predict" else "feats")
    # an index past the model's classes
    assert run("v0.mp4 0\nmy clip é.mp4 7\n", out) == 2
    _one_line_error(capsys, "lst.txt:2: label 7", "my clip é.mp4", "has 3 (0-2): up, down, left")
    assert not out.exists()
    # a name the model does not have (line 2 named), names with spaces allowed
    assert run("v0.mp4 up\nv1.mp4 walking\n", out) == 2
    _one_line_error(capsys, "lst.txt:2:", "'walking'", "3 classes: up, down, left")
    assert not out.exists()
    # the model's names, indices and multi-label lines in range: answered
    assert run('v0.mp4 up\n"my clip é.mp4",2\nv1.mp4 0,1\n', out) == 0
    assert out.exists()


def test_listed_labels_follow_the_lists_own_class_names(setup, tmp_path):
    root = tmp_path
    (root / "a.mp4").write_bytes(b"x")
    listed_file = root / "l.txt"
    listed_file.write_text("a.mp4 0\n")
    listed = read_listed_videos(listed_file)
    # its own classnames.txt: index 0 is "left", the model's class 2
    (root / "classnames.txt").write_text("left\nup\n")
    space = check_listed_labels(listed, 3, CLASSES, listed_file, "ckpt")
    assert space == {"model_classes": 3, "list_classes": 1, "subset": True}
    # its own names are not the model's: refused naming both
    (root / "classnames.txt").write_text("walking\nup\n")
    with pytest.raises(ConfigError, match=r"'walking'.*2 classes: walking, up, ckpt has 3 classes: up"):
        check_listed_labels(listed, 3, CLASSES, listed_file, "ckpt")
    # an index past its own file
    (root / "classnames.txt").write_text("left\n")
    listed_file.write_text("a.mp4 1\n")
    with pytest.raises(ConfigError, match=r"l.txt:1: label 1 .*outside its class-name file"):
        check_listed_labels(read_listed_videos(listed_file), 3, CLASSES, listed_file, "ckpt")
    # no labels on any line: nothing to check
    listed_file.write_text("a.mp4\n")
    assert check_listed_labels(read_listed_videos(listed_file), 3, CLASSES, listed_file, "ckpt") is None


def test_a_video_list_is_read_as_written(tmp_path):
    """Paths with spaces, commas (quoted) and non-ASCII letters, tabs, CSV, multi-label and
    mmaction2 lines, a BOM and CRLF: each line's path and labels exactly."""
    for name in ("my clip.mp4", "c, take 2.mp4", "a.mp4", "é ü.mp4"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "frames").mkdir()
    lines = [
        "# videos",
        "my clip.mp4 0",
        '"c, take 2.mp4",1',
        "a.mp4\t2",
        "é ü.mp4   moving left",
        "a.mp4 1,2",
        "frames 30 1",
        "gone away.mp4 3",
        "gone.mp4,4",
        "a.mp4",
        "form\x0cfeed.mp4",
        "",
        "",
    ]
    (tmp_path / "l.txt").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode())
    got = [(v.path, v.labels, v.line) for v in read_listed_videos(tmp_path / "l.txt")]
    r = str(tmp_path)
    assert got == [
        (f"{r}/my clip.mp4", ("0",), 2),
        (f"{r}/c, take 2.mp4", ("1",), 3),
        (f"{r}/a.mp4", ("2",), 4),
        (f"{r}/é ü.mp4", ("moving left",), 5),
        (f"{r}/a.mp4", ("1", "2"), 6),
        (f"{r}/frames", ("1",), 7),
        (f"{r}/gone away.mp4", ("3",), 8),
        (f"{r}/gone.mp4", ("4",), 9),
        (f"{r}/a.mp4", (), 10),
        (f"{r}/form\x0cfeed.mp4", (), 11),
    ]


def test_eval_maps_a_lists_own_class_names_by_name_or_refuses(setup, tmp_path, capsys):
    """A list beside its own classnames.txt: its indices mean those names. Another order or a
    subset of the model's names is mapped by name and stated (report and metrics.json); a
    name the model lacks is refused naming both sides."""
    root = setup
    data = tmp_path / "data"
    data.mkdir()
    for name in ("v0.mp4", "v1.mp4"):
        (data / name).symlink_to(root / name)
    (data / "classnames.txt").write_text("left\nup\n")  # 0 = left (model 2), 1 = up (model 0)
    (data / "val.txt").write_text("v0.mp4 0\nv1.mp4 1\n")
    out = tmp_path / "eval"
    args = ["eval", "--checkpoint", str(root / "ckpt"), "--list", str(data / "val.txt"), "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "classnames.txt names 2 of" in printed and "mapped to" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["label"] for r in metrics["predictions"]] == ["left", "up"]
    assert metrics["label_space"]["subset"] is True and "mapped" in metrics["label_space"]["notes"][0]
    (data / "classnames.txt").write_text("left\nwalking\n")
    assert main(args) == 2
    _one_line_error(capsys, "'walking'", "2 classes: left, walking", "3 classes: up, down, left")


def test_fine_tuning_from_a_saved_model_states_what_becomes_of_its_classifier(setup, tmp_path, capsys):
    """--pretrained DIR (a save_pretrained model) with a list of other classes: legitimate (a
    new head), stated with both class lists; the head is indeed not loaded, the backbone is."""
    root = setup
    data = tmp_path / "data"
    data.mkdir()
    for name in ("v0.mp4", "v1.mp4"):
        (data / name).symlink_to(root / name)
    (data / "train.txt").write_text("v0.mp4 0\nv1.mp4 1\n")
    (data / "classnames.txt").write_text("jump\nsit\n")
    args = ["train", "--pretrained", str(root / "ckpt"), "--train-list", str(data / "train.txt")]
    args += ["--out", str(tmp_path / "run"), "--dry-run", *TINY_MODEL]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "was trained on 3 classes: up, down, left; the list has 2 classes: jump, sit" in out
    assert "its head (temporal head and classifier) is not" in out

    from xvit.engine.run.config import load_config
    from xvit.engine.run.model import build_model

    cfg = load_config(None, [f"model.pretrained={root / 'ckpt'}", *TINY_MODEL])
    torch.manual_seed(0)
    model = build_model(cfg, 3, list(CLASSES))
    with safe_open(str(root / "ckpt" / "model.safetensors"), "pt") as saved:
        assert torch.equal(model.state_dict()["pos_embed"], saved.get_tensor("pos_embed"))
        assert not torch.equal(model.state_dict()["head.fc.weight"], saved.get_tensor("head.fc.weight"))


def test_own_class_map_and_label_space_name_both_sides(tmp_path):
    lst = tmp_path / "val.txt"
    assert own_class_map(lst, CLASSES, "m") is None  # no classnames.txt
    (tmp_path / "classnames.txt").write_text("# the classes\nup\ndown\nleft\n")
    assert own_class_map(lst, CLASSES, "m") is None  # the same, a comment line skipped
    (tmp_path / "classnames.txt").write_text("left\ndown\nup\n")
    names, mapping, note = own_class_map(lst, CLASSES, "m")
    assert names == ["left", "down", "up"]
    assert mapping == {0: 2, 1: 1, 2: 0} and "orders m's 3 classes otherwise" in note
    samples = [Sample(path="v.mp4", label=5)]
    with pytest.raises(ConfigError, match=r"val.txt: label 5 \(video v.mp4\).*m has 3 classes"):
        label_space(samples, 3, lst, "m")


@pytest.mark.parametrize("command", ["serve", "predict", "eval"])
def test_a_saved_model_whose_class_names_miscount_its_classes_is_refused(setup, tmp_path, capsys, command):
    """config.json edited by hand: two class names for three classes. Serving (whose
    answers name the classes), predicting or evaluating with it is refused in one line naming
    both counts, before any work."""
    pytest.importorskip("fastapi")
    root = setup
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "model.safetensors").symlink_to(root / "ckpt" / "model.safetensors")
    config = json.loads((root / "ckpt" / "config.json").read_text())
    config["class_names"] = ["up", "down"]
    (edited / "config.json").write_text(json.dumps(config))
    args = {
        "serve": ["serve", "--checkpoint", str(edited), "--port", "0"],
        "predict": ["predict", str(root / "v0.mp4"), "--checkpoint", str(edited)],
        "eval": ["eval", "--checkpoint", str(edited), "--list", str(tmp_path / "l.txt")],
    }[command]
    (tmp_path / "l.txt").write_text(f"{root / 'v0.mp4'} 0\n")
    assert main(args) == 2
    _one_line_error(capsys, "class_names has 2 names for num_classes=3")
