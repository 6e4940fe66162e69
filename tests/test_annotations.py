"""Annotation formats: list files, Kinetics CSV, SSv2 JSON, Epic-Kitchens-100 CSV."""

from __future__ import annotations

import json
import logging

import pytest

from xvit.data.annotations import (
    AnnotationError,
    read_annotations,
    read_epic_kitchens,
    read_kinetics_csv,
    read_list_file,
    read_ssv2,
)

# ----------------------------------------------------------------------------- list files


def test_list_file_space_comma_root_and_names(tmp_path):
    (tmp_path / "classes.txt").write_text("abseiling\nair drumming\n\nzumba\n")
    (tmp_path / "list.txt").write_text(
        "# a comment\n"
        "a/v1.mp4 0\n"
        "\n"
        "b/v2.mp4,2\n"
        "my videos/v 3.mp4 1\n"  # path with spaces
        "frames/v4 120 2\n"  # mmaction2 rawframes: dir num_frames label
        "/abs/v5.mp4, air drumming\n"  # a class name (with a space: comma-separated)
    )
    ann = read_list_file(tmp_path / "list.txt", root="/data", class_names=tmp_path / "classes.txt")
    assert [s.path for s in ann.samples] == [
        "/data/a/v1.mp4",
        "/data/b/v2.mp4",
        "/data/my videos/v 3.mp4",
        "/data/frames/v4",
        "/abs/v5.mp4",
    ]
    assert [s.label for s in ann.samples] == [0, 2, 1, 2, 1]
    assert ann.class_names == ["abseiling", "air drumming", "zumba"]
    assert ann.num_classes == 3 and len(ann) == 5


@pytest.mark.parametrize(
    "line, message",
    [
        ("v.mp4 3", ":2: label 3 is outside the class list [0, 3)"),
        ("v.mp4 -1", ":2: label -1 is outside"),
        ("v.mp4 dancing", ":2: label 'dancing' is not in the class list"),
        ("justapath", ":2: expected 'path label'"),
        ("a,b,c,d", ":2: expected 'path label'"),
    ],
)
def test_list_file_errors_name_file_and_line(tmp_path, line, message):
    (tmp_path / "list.txt").write_text(f"ok.mp4 0\n{line}\n")
    with pytest.raises(AnnotationError) as err:
        read_list_file(tmp_path / "list.txt", class_names=["a", "b", "c"])
    assert str(err.value).startswith(str(tmp_path / "list.txt"))
    assert message in str(err.value)


def test_list_file_check_exists_counts_missing(tmp_path, caplog):
    (tmp_path / "here.mp4").write_bytes(b"x")
    (tmp_path / "list.txt").write_text("here.mp4 0\ngone.mp4 1\n")
    with caplog.at_level(logging.WARNING):
        ann = read_list_file(tmp_path / "list.txt", root=tmp_path, check_exists=True)
    assert [s.label for s in ann.samples] == [0]
    assert ann.num_missing == 1 and ann.missing == [str(tmp_path / "gone.mp4")]
    assert "1 of 2 videos are missing" in caplog.text


def test_read_annotations_picks_up_classnames_next_to_list(tmp_path):
    (tmp_path / "classnames.txt").write_text("left\nright\n")
    (tmp_path / "train.txt").write_text("x.mp4 right\n")
    ann = read_annotations(tmp_path / "train.txt")
    assert ann.samples[0].label == 1 and ann.samples[0].path == str(tmp_path / "x.mp4")


# ----------------------------------------------------------------------------- Kinetics

KINETICS_CSV = """label,youtube_id,time_start,time_end,split
air drumming,abc123,10,20,train
abseiling,def456,0,10,train
air drumming,ghi789,5,15,train
zumba,missing1,1,11,train
"""


def test_kinetics_csv_flat_and_per_label_layouts(tmp_path, caplog):
    root = tmp_path / "videos"
    (root / "air drumming").mkdir(parents=True)
    (root / "abseiling").mkdir()
    (root / "abc123_000010_000020.mp4").write_bytes(b"x")  # flat
    (root / "abseiling" / "def456_000000_000010.mp4").write_bytes(b"x")  # per label
    (root / "air drumming" / "ghi789_000005_000015.mp4").write_bytes(b"x")
    (tmp_path / "train.csv").write_text(KINETICS_CSV)
    with caplog.at_level(logging.WARNING):
        ann = read_kinetics_csv(tmp_path / "train.csv", root)
    assert ann.class_names == ["abseiling", "air drumming", "zumba"]  # sorted label names
    assert [(s.id, s.label) for s in ann.samples] == [
        ("abc123_000010_000020", 1),
        ("def456_000000_000010", 0),
        ("ghi789_000005_000015", 1),
    ]
    assert ann.samples[1].path == str(root / "abseiling" / "def456_000000_000010.mp4")
    assert ann.num_missing == 1 and "missing1_000001_000011.mp4" in ann.missing[0]
    assert "1 of 4 videos are missing" in caplog.text  # reported once, at load time


def test_kinetics_validation_uses_training_classes(tmp_path):
    (tmp_path / "val.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,a,0,10,val\nskydiving,b,0,10,val\n"
    )
    with pytest.raises(AnnotationError, match=r"val\.csv:3: label 'skydiving' is not in the class list"):
        read_kinetics_csv(
            tmp_path / "val.csv", tmp_path, class_names=["abseiling", "zumba"], check_exists=False
        )


def test_kinetics_bad_header_and_bad_row(tmp_path):
    (tmp_path / "a.csv").write_text("label,id,time_start,time_end\n")
    with pytest.raises(AnnotationError, match=r"a\.csv:1: missing column 'youtube_id'"):
        read_kinetics_csv(tmp_path / "a.csv", tmp_path)
    (tmp_path / "b.csv").write_text("label,youtube_id,time_start,time_end,split\nx,y,zero,10,train\n")
    with pytest.raises(AnnotationError, match=r"b\.csv:2: time_start/time_end are not numbers"):
        read_kinetics_csv(tmp_path / "b.csv", tmp_path)


# ----------------------------------------------------------------------------- SSv2


def _ssv2_files(tmp_path, entries):
    labels = {
        "Approaching something with your camera": "0",
        "Putting something on a surface": "1",
        "Pushing something from left to right": "2",
    }
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "train.json").write_text(json.dumps(entries))
    return tmp_path / "labels.json", tmp_path / "train.json"


def test_ssv2_templates_stripped_of_brackets(tmp_path):
    entries = [
        {
            "id": "78687",
            "label": "putting a cup on a table",
            "template": "Putting [something] on a surface",
            "placeholders": ["a cup"],
        },
        {
            "id": "42326",
            "label": "pushing a box from left to right",
            "template": "Pushing [something] from left to right",
            "placeholders": ["a box"],
        },
    ]
    labels, split = _ssv2_files(tmp_path, entries)
    ann = read_ssv2(labels, split, root="/ssv2")
    assert [(s.path, s.label, s.id) for s in ann.samples] == [
        ("/ssv2/78687.webm", 1, "78687"),
        ("/ssv2/42326.webm", 2, "42326"),
    ]
    assert ann.class_names[0] == "Approaching something with your camera"


def test_ssv2_unknown_template_names_entry(tmp_path):
    entries = [
        {"id": "1", "template": "Putting [something] on a surface"},
        {"id": "2", "template": "Spinning [something]"},
    ]
    labels, split = _ssv2_files(tmp_path, entries)
    with pytest.raises(
        AnnotationError, match=r"train\.json: entry 2 \(id 2\): template 'Spinning something'"
    ):
        read_ssv2(labels, split, root=tmp_path)


def test_ssv2_invalid_json_names_line(tmp_path):
    (tmp_path / "labels.json").write_text('{"a": "0"}')
    (tmp_path / "train.json").write_text('[\n{"id": "1",\n "template": }\n]')
    with pytest.raises(AnnotationError, match=r"train\.json:3: invalid JSON"):
        read_ssv2(tmp_path / "labels.json", tmp_path / "train.json", tmp_path)


# ----------------------------------------------------------------------------- Epic-Kitchens-100

EPIC_HEADER = (
    "narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,"
    "start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes\n"
)


def _epic_row(nid, pid, vid, start, stop, verb, noun):
    return f"{nid},{pid},{vid},00:00:01.00,00:00:01.00,00:00:02.00,{start},{stop},x,v,{verb},n,{noun},['n'],[{noun}]\n"


def test_epic_kitchens_labels_actions_and_frame_ranges(tmp_path):
    (tmp_path / "train.csv").write_text(
        EPIC_HEADER
        + _epic_row("P01_01_0", "P01", "P01_01", 8, 202, 3, 10)
        + _epic_row("P01_01_1", "P01", "P01_01", 300, 420, 0, 1)
        + _epic_row("P02_03_0", "P02", "P02_03", 1, 60, 3, 10)
    )
    ann = read_epic_kitchens(tmp_path / "train.csv", root="/epic")
    s = ann.samples[0]
    assert s.path == "/epic/P01/rgb_frames/P01_01" and s.id == "P01_01_0"
    # EPIC frames are numbered from 1 and stop_frame is inclusive: frames 8..202 are
    # files frame_0000000008.jpg .. frame_0000000202.jpg = reader indices 7..201.
    assert (s.start_frame, s.end_frame) == (7, 202)
    # Actions: sorted unique (verb, noun) pairs of the training file: (0,1) -> 0, (3,10) -> 1.
    assert [x.label for x in ann.samples] == [
        {"verb": 3, "noun": 10, "action": 1},
        {"verb": 0, "noun": 1, "action": 0},
        {"verb": 3, "noun": 10, "action": 1},
    ]
    assert ann.num_classes == {"verb": 97, "noun": 300, "action": 2}

    (tmp_path / "val.csv").write_text(
        EPIC_HEADER
        + _epic_row("P03_01_0", "P03", "P03_01", 5, 9, 0, 1)
        + _epic_row("P03_01_1", "P03", "P03_01", 5, 9, 7, 7)
    )
    val = read_epic_kitchens(tmp_path / "val.csv", root="/epic", actions=[(0, 1), (3, 10)])
    assert [x.label["action"] for x in val.samples] == [0, -1]  # unseen pair: no action id


@pytest.mark.parametrize(
    "row, message",
    [
        (("a", "P01", "P01_01", 10, 5, 1, 1), ":2: bad frame range"),
        (("a", "P01", "P01_01", 1, 5, 97, 1), ":2: verb_class 97 is outside the class list [0, 97)"),
        (("a", "P01", "P01_01", 1, 5, 1, 300), ":2: noun_class 300 is outside"),
        (
            ("a", "P01", "P01_01", "x", 5, 1, 1),
            ":2: start_frame, stop_frame, verb_class and noun_class must be integers",
        ),
    ],
)
def test_epic_kitchens_errors(tmp_path, row, message):
    (tmp_path / "train.csv").write_text(EPIC_HEADER + _epic_row(*row))
    with pytest.raises(
        AnnotationError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        read_epic_kitchens(tmp_path / "train.csv", root=tmp_path)
