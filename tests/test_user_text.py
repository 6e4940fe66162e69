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


# Paths as people name files: letters of any script, spaces, dots, dashes, commas, even form
# feeds, NEL and U+2028 (line ends only split lines); no CR or LF, no NUL, no leading '#', no
# surrounding spaces, no double quote, no byte-order mark.
path_text = (
    st.text(
        alphabet=st.characters(
            blacklist_categories=("Cs",),
            blacklist_characters='"#\ufeff\r\n\x00',
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


# Class names as Kinetics writes them ("playing guitar"): words of a few letters.
spaced_name = st.lists(st.text(alphabet="abcdefg", min_size=1, max_size=5), min_size=1, max_size=3).map(
    " ".join
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.lists(spaced_name, min_size=1, max_size=6, unique=True),
    rows=st.lists(
        st.tuples(path_text.filter(lambda p: "," not in p), st.integers(0, 5)), min_size=1, max_size=6
    ),
    sep=st.sampled_from([" ", "\t", "   "]),
)
def test_property_class_names_with_spaces_in_a_path_label_list(tmp_path, names, rows, sep):
    """``path class name`` lines whose class names have spaces are read exactly; a line whose
    words end in two class names ('moving left' and 'left') is refused with its line, never
    read as another path and label."""
    rows = [(p, k % len(names)) for p, k in rows]
    path = tmp_path / "named.txt"
    path.write_text("\n".join(f"{p}{sep}{names[k]}" for p, k in rows) + "\n", encoding="utf-8")

    def tails(p: str, name: str) -> int:  # class names the line's last words spell
        words = f"{p} {name}".split()
        return sum(" ".join(words[-k:]) in names for k in range(1, len(words)))

    try:
        got = read_list_file(path, class_names=names)
    except AnnotationError as e:
        line = int(re.search(r"named\.txt:(\d+): ", str(e)).group(1))
        assert "\n" not in str(e) and tails(*rows[line - 1][:1], names[rows[line - 1][1]]) > 1
        return
    assert [(s.path, s.label) for s in got.samples] == rows


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


def test_line_breaks_are_line_ends_only_and_class_name_comments_are_skipped(tmp_path):
    """Form feeds, NEL and U+2028 inside a file name do not split its line (str.splitlines
    would); a '#' line in a class-name file is a comment, as in list files."""
    path = tmp_path / "list.txt"
    path.write_text("clip\x0cone.mp4 0\nclip\u2028two.mp4 1\nclip\x85three.mp4 0\n")
    got = read_list_file(path, root="/r")
    assert [(s.path, s.label) for s in got.samples] == [
        ("/r/clip\x0cone.mp4", 0),
        ("/r/clip\u2028two.mp4", 1),
        ("/r/clip\x85three.mp4", 0),
    ]
    names = tmp_path / "classnames.txt"
    names.write_bytes(codecs.BOM_UTF8 + b"# classes of my set\r\nmoving up\r\n\r\n# more\r\nmoving down\r\n")
    assert read_class_names(names) == ["moving up", "moving down"]
    # a label outside the list names the class list it was read against
    path.write_text("a.mp4 walking\n")
    with pytest.raises(
        AnnotationError, match=r"list.txt:1: label 'walking' is not in the class list \(2 classes"
    ):
        read_list_file(path, class_names=names)


def test_a_yaml_config_with_a_key_twice_or_a_tab_is_refused_with_its_line(tmp_path, capsys):
    """PyYAML keeps the last of two equal keys without a word (a second `optim:` section
    drops the first); a tab indent is a YAML error: both refused naming the file and line."""
    config = tmp_path / "my.yaml"
    config.write_bytes(b"optim:\r\n  lr: 0.1\r\ntrain:\r\n  epochs: 3\r\noptim:\r\n  weight_decay: 0.01\r\n")
    with pytest.raises(
        ConfigError, match=r"my.yaml:5: 'optim' is set twice in one section \(first on line 1\)"
    ):
        load_config(config)
    config.write_text("train:\n  epochs: 3\n  epochs: 4\n")
    with pytest.raises(ConfigError, match=r"my.yaml:3: 'epochs' is set twice"):
        load_config(config)
    config.write_text("train:\n\tepochs: 3\n")
    assert main(["train", str(config), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "my.yaml:2: not valid YAML" in err and "not tabs" in err
    # a merge key overridden in its own section is not a repeat
    from xvit.engine.run.config import read_config_yaml

    config.write_text("base: &b {epochs: 2, seed: 1}\ntrain:\n  <<: *b\n  epochs: 3\n")
    assert read_config_yaml(config) == {"base": {"epochs": 2, "seed": 1}, "train": {"epochs": 3, "seed": 1}}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_convert_official_reads_a_class_name_file_from_any_editor(tmp_path, encoding):
    from xvit.cli.convert import _read_class_names

    path = tmp_path / "k600.txt"
    path.write_bytes(ENCODINGS[encoding]("# Kinetics-600\r\nabseiling\r\nair drumming\r\n\r\n"))
    assert _read_class_names(path) == ["abseiling", "air drumming"]
    path = tmp_path / "k600.json"
    path.write_bytes(ENCODINGS[encoding]('{"air drumming": 1, "abseiling": 0}'))
    assert _read_class_names(path) == ["abseiling", "air drumming"]
    path.write_bytes(b'{"a": 0,\n "b": }')
    with pytest.raises(ValueError, match=r"k600.json:2: invalid JSON"):
        _read_class_names(path)


# ------------------------------------------------------------------ more readers, by property

# Class names as people write them: any script, inner spaces, punctuation, even commas and
# quotes; not starting with '#' (a comment), no line ends.
name_text = (
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00\ufeff"),
        min_size=1,
        max_size=15,
    )
    .map(str.strip)
    .filter(lambda n: n and not n.startswith("#"))
)


@settings(max_examples=150, deadline=None)
@given(
    names=st.lists(name_text, min_size=1, max_size=8, unique=True),
    encoding=st.sampled_from(list(ENCODINGS)),
    ending=st.sampled_from(ENDINGS),
    blanks=st.lists(st.booleans(), min_size=8, max_size=8),
    comment=st.booleans(),
)
def test_property_a_class_name_file_is_read_exactly(
    tmp_path_factory, names, encoding, ending, blanks, comment
):
    """Line i (blank and '#' lines skipped) is class i, whatever the editor saved."""
    lines = ["# my classes"] if comment else []
    for name, blank in zip(names, blanks):
        lines += [name, ""] if blank else [name]
    path = tmp_path_factory.mktemp("names") / "classnames.txt"
    path.write_bytes(ENCODINGS[encoding](ending.join(lines) + ending))
    assert read_class_names(path) == names


# File names for the video-list property: as path_text, but one path component.
file_text = path_text.filter(lambda p: "/" not in p and p not in (".", "..") and len(p.encode()) < 200)
label_name = st.text(alphabet="abcdefgh ", min_size=1, max_size=8).map(str.strip).filter(bool)


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            file_text,
            st.one_of(
                st.none(),
                st.integers(0, 99).map(lambda i: (str(i),)),
                st.lists(st.integers(0, 99).map(str), min_size=2, max_size=3).map(tuple),
                label_name.map(lambda n: (n,)),
            ),
        ),
        min_size=1,
        max_size=5,
        unique_by=lambda r: r[0],
    ),
    encoding=st.sampled_from(list(ENCODINGS)),
    ending=st.sampled_from(ENDINGS),
    sep=st.sampled_from([" ", "\t", "  ", ","]),
)
def test_property_a_video_list_gives_its_files_and_labels_exactly(
    tmp_path_factory, rows, encoding, ending, sep
):
    """`xvit predict --list` / `xvit extract --list`: every line's existing file and labels
    exactly (paths with spaces, commas, any script), or a one-line error naming the list and
    line (only where two parts of a line both name files)."""
    from xvit.engine.infer.video_list import read_listed_videos

    root = tmp_path_factory.mktemp("videos")
    lines = []
    for name, labels in rows:
        (root / name).write_bytes(b"x")
        if labels is None:
            lines.append(name)
        elif sep == ",":
            if len(labels) > 1:  # multi-label lines are `path label1,label2`
                lines.append(f"{name} {','.join(labels)}")
            else:
                lines.append(f'"{name}",{labels[0]}' if "," in name else f"{name},{labels[0]}")
        else:
            lines.append(f"{name}{sep}{','.join(labels)}")
    path = root / "l.txt"
    path.write_bytes(ENCODINGS[encoding](ending.join(lines) + ending))
    try:
        got = read_listed_videos(path)
    except ValueError as e:
        assert re.search(r"l\.txt:\d+: ambiguous", str(e)) and "\n" not in str(e), e
        assert len(rows) > 1  # two files, one named inside the other's line
        return
    assert [(v.path, v.labels) for v in got] == [(str(root / n), labels or ()) for n, labels in rows]


CONFIG_VALUES = {
    "train.epochs": st.integers(1, 500),
    "train.seed": st.integers(0, 2**31),
    "optim.lr": st.floats(1e-6, 10.0),
    "optim.weight_decay": st.floats(0.0, 1.0),
    "data.hflip": st.booleans(),
    "data.num_frames": st.integers(1, 64),
}


@settings(max_examples=60, deadline=None)
@given(
    values=st.fixed_dictionaries({}, optional=CONFIG_VALUES),
    encoding=st.sampled_from(list(ENCODINGS)),
    ending=st.sampled_from(ENDINGS),
    repeat=st.one_of(st.none(), st.sampled_from(sorted(CONFIG_VALUES))),
)
def test_property_a_yaml_config_is_read_exactly_or_refused_with_its_line(
    tmp_path_factory, values, encoding, ending, repeat
):
    """Any values a YAML config sets, saved by any editor, are the config's values; a key
    written twice in one section is refused naming the file and the line."""
    import yaml

    nested: dict = {}
    for key, value in values.items():
        section, name = key.split(".")
        nested.setdefault(section, {})[name] = value
    text = yaml.safe_dump(nested, sort_keys=False) if nested else ""
    if repeat is not None:
        section, name = repeat.split(".")
        text += f"{section}:\n  {name}: 1\n" if section not in nested else ""
        text += f"{section}:\n  {name}: 2\n"
    path = tmp_path_factory.mktemp("cfg") / "my.yaml"
    path.write_bytes(ENCODINGS[encoding](text.replace("\n", ending)))
    try:
        cfg = load_config(path)
    except ConfigError as e:
        assert repeat is not None and re.search(r"my\.yaml:\d+: '\w+' is set twice", str(e)), e
        assert "\n" not in str(e)
        return
    assert repeat is None
    for key, value in values.items():
        section, name = key.split(".")
        assert getattr(getattr(cfg, section), name) == value, key


kinetics_label = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00\ufeff"),
    min_size=1,
    max_size=12,
).filter(lambda n: n == n.strip() and n)


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.tuples(kinetics_label, st.integers(0, 300)), min_size=1, max_size=6),
    encoding=st.sampled_from(list(ENCODINGS)),
    ending=st.sampled_from(["\n", "\r\n"]),
)
def test_property_a_kinetics_csv_from_a_spreadsheet_is_read_exactly(tmp_path_factory, rows, encoding, ending):
    """Kinetics CSVs as a spreadsheet writes them (quoted labels with commas or quotes, any
    encoding): each row's label and clip exactly."""
    import csv
    import io

    from xvit.data.annotation_formats import read_kinetics_csv

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=ending)
    writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
    for i, (label, start) in enumerate(rows):
        writer.writerow([label, f"id{i}", start, start + 10, "train"])
    path = tmp_path_factory.mktemp("k") / "train.csv"
    path.write_bytes(ENCODINGS[encoding](buf.getvalue()))
    got = read_kinetics_csv(path, "/r", check_exists=False)
    names = sorted({label for label, _ in rows})
    assert got.class_names == names
    assert [(s.label, s.id) for s in got.samples] == [
        (names.index(label), f"id{i}_{start:06d}_{start + 10:06d}") for i, (label, start) in enumerate(rows)
    ]


ssv2_template = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="[]\x00"),
    min_size=1,
    max_size=16,
)


@settings(max_examples=100, deadline=None)
@given(
    templates=st.lists(ssv2_template, min_size=1, max_size=5, unique=True),
    picks=st.lists(st.integers(0, 4), min_size=1, max_size=6),
    as_text=st.booleans(),
    encoding=st.sampled_from(list(ENCODINGS)),
    clash=st.booleans(),
)
def test_property_ssv2_json_is_read_exactly_or_refused(
    tmp_path_factory, templates, picks, as_text, encoding, clash
):
    """Something-Something-v2 labels.json (ids as numbers or strings) and a split file, saved
    by any editor: every entry's class exactly; two templates with one id refused (json.loads
    alone would keep one and lose the other)."""
    from xvit.data.annotation_formats import read_ssv2

    ids = {t: (str(i) if as_text else i) for i, t in enumerate(templates)}
    if clash and len(templates) > 1:
        ids[templates[-1]] = ids[templates[0]]
    entries = [
        {"id": str(n), "template": "[" + templates[p % len(templates)] + "]", "placeholders": []}
        for n, p in enumerate(picks)
    ]
    folder = tmp_path_factory.mktemp("ssv2")
    (folder / "labels.json").write_bytes(ENCODINGS[encoding](json.dumps(ids)))
    (folder / "train.json").write_bytes(ENCODINGS[encoding](json.dumps(entries)))
    try:
        got = read_ssv2(folder / "labels.json", folder / "train.json", root="/r")
    except AnnotationError as e:
        assert clash and len(templates) > 1 and "labels.json" in str(e) and "\n" not in str(e), e
        return
    assert not (clash and len(templates) > 1)
    assert got.class_names == templates
    assert [s.label for s in got.samples] == [p % len(templates) for p in picks]


def test_ssv2_ids_that_are_not_whole_numbers_are_refused(tmp_path):
    from xvit.data.annotation_formats import read_ssv2

    (tmp_path / "train.json").write_text("[]")
    for ids in ('{"a": 0, "b": 1.5}', '{"a": 0, "b": true}', '{"a": 0, "b": null}'):
        (tmp_path / "labels.json").write_text(ids)
        with pytest.raises(AnnotationError, match=r"labels.json: id .* of 'b' is not an integer"):
            read_ssv2(tmp_path / "labels.json", tmp_path / "train.json", root=tmp_path)


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["P01", "P02", "P10"]),
            st.integers(1, 500),
            st.integers(0, 200),
            st.integers(0, 96),
            st.integers(0, 299),
        ),
        min_size=1,
        max_size=5,
    ),
    encoding=st.sampled_from(list(ENCODINGS)),
    ending=st.sampled_from(["\n", "\r\n"]),
    space=st.sampled_from(["", " "]),
)
def test_property_an_epic_kitchens_csv_is_read_exactly(tmp_path_factory, rows, encoding, ending, space):
    """EPIC-KITCHENS-100 CSVs, saved by any editor, a space after each comma or not: every
    segment's frame folder, 0-based frame range and verb / noun / action exactly."""
    from xvit.data.annotation_formats import read_epic_kitchens

    header = "narration_id,participant_id,video_id,narration,start_frame,stop_frame,verb_class,noun_class"
    lines = [header.replace(",", "," + space)]
    for i, (pid, start, length, verb, noun) in enumerate(rows):
        fields = [f"{pid}_01_{i}", pid, f"{pid}_01", '"open, then close"', start, start + length, verb, noun]
        lines.append(("," + space).join(str(f) for f in fields))
    path = tmp_path_factory.mktemp("epic") / "train.csv"
    path.write_bytes(ENCODINGS[encoding](ending.join(lines) + ending))
    got = read_epic_kitchens(path, root="/epic")
    pairs = sorted({(v, n) for *_, v, n in rows})
    assert [(s.path, s.id, s.start_frame, s.end_frame, s.label) for s in got.samples] == [
        (
            f"/epic/{pid}/rgb_frames/{pid}_01",
            f"{pid}_01_{i}",
            start - 1,
            start + length,
            {"verb": verb, "noun": noun, "action": pairs.index((verb, noun))},
        )
        for i, (pid, start, length, verb, noun) in enumerate(rows)
    ]


def test_name_labels_without_class_names_say_how_to_give_them(tmp_path):
    """`clip.mp4 bikes` with no class list: the one line says where the names go (a
    classnames.txt beside the list); with one there, the same list reads by name."""
    lst = tmp_path / "train.txt"
    lst.write_text("a.mp4 bikes\nb.mp4 bunny\n")
    with pytest.raises(
        AnnotationError, match=r"train.txt:1: label 'bikes' is not an integer: .*classnames.txt beside"
    ):
        read_annotations(lst)
    (tmp_path / "classnames.txt").write_text("bunny\nbikes\n")
    assert [s.label for s in read_annotations(lst).samples] == [1, 0]


@pytest.mark.parametrize("container", ["mp4", "mkv", "avi"])
def test_a_video_given_as_a_list_is_named_as_one(tmp_path, capsys, container):
    """A real encoded video where a list is expected: one line saying it is a video, not a
    UTF-8 complaint about a byte in it."""
    from _video_fixtures import write_video

    video = tmp_path / f"clip.{container}"
    write_video(video, num_frames=4, height=32, width=32, fps=8, gop=4)
    with pytest.raises(AnnotationError, match=r"clip\.\w+:1: a video file, not a text file"):
        read_user_text(video)
    assert main(["train", "--train-list", str(video), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a video file, not a text file" in err[0]
