"""Files a user writes by hand are read as they meant them, or refused with the file and
line: byte-order marks, UTF-16, CRLF and CR line ends, tabs and runs of spaces, quoted CSV
fields, paths with spaces and non-ASCII names, comments and blank lines (list files,
class-name files, Kinetics CSVs, YAML configs); and a model meeting a list whose labels it
cannot produce is refused. Property-based (Hypothesis) over the list reader."""

from __future__ import annotations

import codecs
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine_utils import TINY_MODEL, make_dataset, one_thread  # noqa: F401

from xvit.cli.main import main
from xvit.data.annotations import read_annotations, read_list_file
from xvit.data.errors import AnnotationError
from xvit.data.samples import read_class_names
from xvit.data.text import read_user_text, split_fields
from xvit.engine.run.config import ConfigError, load_config

ENCODINGS = {
    "utf-8": lambda t: t.encode("utf-8"),
    "utf-8-bom": lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),  # Notepad, Excel "CSV UTF-8"
    "utf-16-le-bom": lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"),  # Excel "Unicode text"
    "utf-16-be-bom": lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"),
}
ENDINGS = ["\n", "\r\n", "\r"]


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("ending", ENDINGS)
def test_a_list_saved_by_any_editor_reads_the_same(tmp_path, encoding, ending):
    lines = [
        "# my videos",
        "a.mp4 0",
        "clips/my video.mp4\t1",
        "  b.mp4    2  ",
        '"c, take 2.mp4",1',
        "é ü/ß.mp4 0",
        "",
        "",
    ]
    path = tmp_path / "list.txt"
    path.write_bytes(ENCODINGS[encoding](ending.join(lines)))
    got = read_list_file(path, root="/r")
    assert [(s.path, s.label) for s in got.samples] == [
        ("/r/a.mp4", 0),
        ("/r/clips/my video.mp4", 1),
        ("/r/b.mp4", 2),
        ("/r/c, take 2.mp4", 1),
        ("/r/é ü/ß.mp4", 0),
    ]


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_class_names_kinetics_csv_and_yaml_from_windows(tmp_path, encoding):
    enc = ENCODINGS[encoding]
    names = tmp_path / "classnames.txt"
    names.write_bytes(enc("moving right\r\nmoving left\r\n\r\n"))
    assert read_class_names(names) == ["moving right", "moving left"]
    csv_path = tmp_path / "train.csv"
    csv_path.write_bytes(enc("label,youtube_id,time_start,time_end,split\r\nabseiling,abc,0,10,train\r\n"))
    (tmp_path / "abc_000000_000010.mp4").write_bytes(b"")
    got = read_annotations(csv_path, root=tmp_path)
    assert got.class_names == ["abseiling"] and [s.label for s in got.samples] == [0]
    config = tmp_path / "my.yaml"
    config.write_bytes(enc("optim:\r\n  weight_decay: 0.01\r\ntrain:\r\n  epochs: 3\r\n"))
    cfg = load_config(config)
    assert cfg.optim.weight_decay == 0.01 and cfg.train.epochs == 3


def test_bytes_that_are_not_text_are_refused_with_file_and_line(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"a.mp4 0\nb\xe9.mp4 1\n")  # Latin-1, not UTF-8
    with pytest.raises(AnnotationError, match=r"list.txt:2: not UTF-8 text \(byte 0xe9 at column 2\)"):
        read_list_file(path)
    path.write_bytes("a.mp4 0\n".encode("utf-16-le"))  # UTF-16 without its byte-order mark
    with pytest.raises(AnnotationError, match="list.txt:1: a NUL character"):
        read_list_file(path)
    config = tmp_path / "bad.yaml"
    config.write_bytes(b"train:\n  epochs: 3\xff\n")
    with pytest.raises(ConfigError, match="bad.yaml:2: not UTF-8"):
        load_config(config)
    path.write_text('"a.mp4,0\n')
    with pytest.raises(AnnotationError, match="list.txt:1: unbalanced double quote"):
        read_list_file(path)


def test_cli_refuses_undecodable_list_in_one_line(tmp_path, capsys):
    path = tmp_path / "train.txt"
    path.write_bytes(b"caf\xe9.mp4 0\n")
    assert main(["train", "--train-list", str(path), "--out", str(tmp_path / "run"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.txt:1: not UTF-8 text" in err and "Traceback" not in err


# Paths as people name files: letters of any script, spaces, dots, dashes, commas; no line
# breaks, no leading '#', no surrounding spaces, no double quote.
path_text = (
    st.text(
        alphabet=st.characters(
            blacklist_categories=("Cs", "Cc", "Zl", "Zp"),
            blacklist_characters='"#\u0085\ufeff\x0b\x0c\x1c\x1d\x1e',
        ),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(lambda p: p and not p[-1].isdigit() and not p.isdigit())
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.tuples(path_text, st.integers(0, 999)), min_size=1, max_size=8),
    encoding=st.sampled_from(list(ENCODINGS)),
    ending=st.sampled_from(ENDINGS),
    sep=st.sampled_from([" ", "\t", "   ", ","]),
)
def test_property_the_list_reader_reads_exactly_or_refuses(tmp_path, rows, encoding, ending, sep):
    """Every (path, label) written as a spreadsheet or editor would write it is read back
    exactly, or the reader refuses with an AnnotationError naming the file and line."""
    lines = []
    for p, label in rows:
        field = p
        if sep == "," and "," in p:
            field = f'"{p}"'
        elif sep != "," and ("," in p):
            field = p  # a comma in the line switches the reader to comma fields
        lines.append(f"{field}{sep}{label}")
    path = tmp_path / "prop.txt"
    path.write_bytes(ENCODINGS[encoding](ending.join(lines) + ending))
    try:
        got = read_list_file(path)
    except AnnotationError as e:
        assert re.search(r"prop\.txt:\d+: ", str(e)) and "\n" not in str(e)
        return
    expected = [(p, label) for p, label in rows]
    if sep != "," and any("," in p for p, _ in rows):
        return  # read as comma fields: not the author's layout, but refused or read, never a traceback
    assert [(s.path, s.label) for s in got.samples] == expected


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_property_any_bytes_read_or_refused_in_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "x.txt"
    path.write_bytes(data)
    try:
        text = read_user_text(path)
    except AnnotationError as e:
        assert re.search(r"x\.txt:\d+: ", str(e)) and "\n" not in str(e)
        return
    assert "\r" not in text
    for line in text.split("\n"):
        try:
            split_fields(line)
        except AnnotationError as e:
            assert "\n" not in str(e)


def test_eval_refuses_labels_the_model_cannot_produce(tmp_path, capsys):
    lists = make_dataset(tmp_path / "data", n_train=4, n_val=2, classes=3)
    lists["classnames"].unlink()  # a model without class names: labels are indices only
    run = tmp_path / "run"
    args = ["train", "--train-list", str(lists["train"]), "--val-list", str(lists["val"]), "--out", str(run)]
    assert main([*args, "--epochs", "1", "--batch-size", "2", "--workers", "0", *TINY_MODEL]) == 0
    capsys.readouterr()
    # a list with a fourth class: its videos cannot be scored against a 3-class model
    wide = tmp_path / "data" / "wide.txt"
    rows = (tmp_path / "data" / "val.txt").read_text().splitlines()
    wide.write_text("\n".join([*rows, rows[0].rsplit(None, 1)[0] + " 3"]) + "\n")
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(run), "--list", str(wide), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "label 3" in err and ("has 3 classes" in err or "[0, 3)" in err)
    assert not out.exists() or not (out / "metrics.json").exists()
    # a subset of the classes is legitimate and stated
    sub = tmp_path / "data" / "sub.txt"
    sub.write_text("\n".join(r for r in rows if r.endswith(" 0")) + "\n")
    assert main(["eval", "--checkpoint", str(run), "--list", str(sub), "--out", str(out)]) == 0
    assert "uses 1 of the model's 3 classes" in capsys.readouterr().out
    space = json.loads((out / "metrics.json").read_text())["label_space"]
    assert space == {"model_classes": 3, "list_classes": 1, "subset": True}


def test_label_space_names_both_sides():
    from xvit.data.samples import Sample
    from xvit.engine.run.data import label_space

    samples = [Sample(path=f"v{i}.mp4", label=i % 2) for i in range(4)]
    assert label_space(samples, 3, "val.txt", "run") == {
        "model_classes": 3,
        "list_classes": 2,
        "subset": True,
    }
    assert label_space(samples, 2, "val.txt", "run")["subset"] is False
    with pytest.raises(ConfigError, match=r"val.txt: label 1 \(video v1.mp4\).*run has 1 classes"):
        label_space(samples, 1, "val.txt", "run")


def test_resume_refuses_a_list_whose_classes_changed(tmp_path, capsys):
    """An edited class-name file under a run that resumes: refused in one line naming both
    sides, the checkpoint kept; with the file as it was, the run resumes."""
    lists = make_dataset(tmp_path / "data", n_train=4, n_val=2, classes=3)
    run = tmp_path / "run"
    args = ["train", "--train-list", str(lists["train"]), "--val-list", str(lists["val"]), "--out", str(run)]
    args += ["--batch-size", "2", "--workers", "0", *TINY_MODEL]
    assert main([*args, "--epochs", "1"]) == 0
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    original = lists["classnames"].read_text()
    lists["classnames"].write_text(original.replace("class_2", "class_two"))
    capsys.readouterr()
    assert main([*args, "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot resume" in err, err
    assert "lacks class_2" in err and "adds class_two" in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    lists["classnames"].write_text(original)
    assert main([*args, "--epochs", "2"]) == 0
    assert "resuming from" in capsys.readouterr().out
