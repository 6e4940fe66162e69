"""Class-folder datasets and the stratified validation split."""

from __future__ import annotations

import logging
import random

import pytest

from xvit.data.annotations import AnnotationError, Sample
from xvit.data.folders import (
    is_class_folder_dir,
    is_video_file,
    read_class_folders,
    split_counts,
    stratified_split,
)


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "data"
    for rel in [
        "walking/b.mp4",
        "walking/a.AVI",
        "walking/sub/c.mkv",
        "walking/.hidden.mp4",
        "walking/notes.txt",
        "walking/.cache/d.mp4",
        "running/x.webm",
        "running/y.MoV",
        "jumping jacks/z.m4v",
        ".git/e.mp4",
        "loose.mp4",
        "readme.md",
    ]:
        _touch(root / rel)
    return root


def test_classes_sorted_videos_sorted_and_filtered(tree, caplog):
    with caplog.at_level(logging.WARNING):
        ann = read_class_folders(tree)
    assert ann.class_names == ["jumping jacks", "running", "walking"]
    got = [(s.id, s.label) for s in ann.samples]
    assert got == [
        ("jumping jacks/z.m4v", 0),
        ("running/x.webm", 1),
        ("running/y.MoV", 1),
        ("walking/a.AVI", 2),
        ("walking/b.mp4", 2),
        ("walking/sub/c.mkv", 2),
    ]
    assert ann.samples[0].path == str(tree / "jumping jacks" / "z.m4v")
    assert "loose.mp4" in caplog.text  # a video outside any class folder is reported


def test_given_class_list_indexes_labels(tree):
    names = ["walking", "swimming", "running", "jumping jacks"]
    ann = read_class_folders(tree, class_names=names)
    assert ann.class_names == names
    assert {s.id.split("/")[0]: s.label for s in ann.samples} == {
        "walking": 0,
        "running": 2,
        "jumping jacks": 3,
    }


def test_unknown_class_folder_is_named(tree):
    with pytest.raises(AnnotationError, match=r"'walking'.*not in the model's 2 classes"):
        read_class_folders(tree, class_names=["running", "jumping jacks"])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "directory not found"),
        (lambda p: _touch(p), "not a directory"),
        (lambda p: p.mkdir(), "is empty"),
        (lambda p: _touch(p / "readme.txt"), "has no class folders"),
        (lambda p: _touch(p / "v.mp4"), r"1 videos lie directly in it"),
        (lambda p: _touch(p / "cats" / "notes.txt"), r"cats: class folder holds no video files"),
        (lambda p: _touch(p / ".hidden" / "v.mp4"), "has no class folders"),
    ],
)
def test_bad_trees_raise_naming_the_directory(tmp_path, make, message):
    root = tmp_path / "d"
    make(root)
    with pytest.raises(AnnotationError, match=message) as err:
        read_class_folders(root)
    assert str(root) in str(err.value)


def test_is_class_folder_dir_and_video_names(tree):
    assert is_class_folder_dir(tree) and not is_class_folder_dir(tree / "loose.mp4")
    assert not is_class_folder_dir(tree / "missing")
    assert is_video_file("a/B.MKV") and is_video_file("x.mpeg") and is_video_file("x.ogv")
    assert not is_video_file(".x.mp4") and not is_video_file("x.txt") and not is_video_file("mp4")


# ----------------------------------------------------------------------------- split


@pytest.mark.parametrize(
    "n, fraction, expected",
    [
        (1, 0.1, 0),
        (2, 0.1, 1),
        (2, 0.9, 1),
        (10, 0.1, 1),
        (14, 0.1, 1),
        (15, 0.1, 2),
        (25, 0.1, 3),
        (5, 0.5, 3),
        (10, 0.0, 0),
        (100, 0.25, 25),
        (3, 0.99, 2),
    ],
)
def test_split_counts_rounding(n, fraction, expected):
    assert split_counts(n, fraction) == expected


def _samples(counts, seed=0):
    out = [
        Sample(path=f"/d/c{label}/v{i:03d}.mp4", label=label)
        for label, n in enumerate(counts)
        for i in range(n)
    ]
    random.Random(seed).shuffle(out)
    return out


def test_split_is_stratified_disjoint_and_complete():
    counts = [1, 2, 7, 10, 31]
    samples = _samples(counts)
    train, val = stratified_split(samples, 0.2, seed=3)
    assert sorted(s.path for s in train + val) == sorted(s.path for s in samples)
    assert not {s.path for s in train} & {s.path for s in val}
    for label, n in enumerate(counts):
        assert sum(s.label == label for s in val) == split_counts(n, 0.2)
        assert sum(s.label == label for s in train) >= 1
    assert train == sorted(train, key=lambda s: (s.label, s.path))
    assert val == sorted(val, key=lambda s: (s.label, s.path))


def test_split_ignores_input_order_and_other_classes_but_follows_seed():
    _, a_val = stratified_split(_samples([12, 20], seed=0), 0.25, seed=7)
    _, b_val = stratified_split(_samples([12, 20], seed=1), 0.25, seed=7)
    assert [s.path for s in a_val] == [s.path for s in b_val]
    # adding a class leaves the split of the others alone
    _, c_val = stratified_split(_samples([12, 20, 9]), 0.25, seed=7)
    assert [s.path for s in c_val if s.label < 2] == [s.path for s in a_val]
    # another seed draws other videos (20 choose 5 * 12 choose 3: a coincidence is negligible)
    d_val = stratified_split(_samples([12, 20]), 0.25, seed=8)[1]
    assert [s.path for s in d_val] != [s.path for s in a_val]
    assert len(d_val) == len(a_val)


def test_split_zero_keeps_everything_in_train():
    samples = _samples([3, 4])
    train, val = stratified_split(samples, 0.0, seed=0)
    assert val == [] and len(train) == 7


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(_samples([3]), fraction, seed=0)


def test_split_rejects_dict_and_missing_labels():
    with pytest.raises(TypeError, match="int labels"):
        stratified_split([Sample("a.mp4", {"verb": 1})], 0.1)
    with pytest.raises(ValueError, match="unlabelled"):
        stratified_split([Sample("a.mp4", -1)], 0.1)
