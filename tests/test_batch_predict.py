"""`xvit predict --list FILE --out predictions.csv`: top-k per video against an independent
computation, failures listed and counted, resumable (also after a row cut short), bad input."""

from __future__ import annotations

import csv
import json
import logging
import shutil

import pytest
import torch
from _model_helpers import randomise
from _video_fixtures import write_video

import xvit
from xvit.cli.main import main
from xvit.data import read_frames
from xvit.data.sampling import UniformSampler
from xvit.data.transforms import EvalTransform
from xvit.engine.infer.batch_predict import failed_path, settings_path
from xvit.models.storage import save_pretrained

T, SIZE = 4, 32
LENGTHS = [12, 20, 7, 30]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    good = [
        write_video(root / f"v{i}.mp4", num_frames=n, height=36, width=44, gop=5)
        for i, n in enumerate(LENGTHS)
    ]
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 3)
    names = ["v0.mp4", "broken.mp4", "v1.mp4", "v2.mp4", "gone.mp4", "v3.mp4 2"]  # an annotation line too
    (root / "videos.txt").write_text("\n".join(names) + "\n")
    model = xvit.create_model(
        "xvit_tiny_patch16", num_classes=5, num_frames=T, img_size=SIZE, embed_dim=64, depth=2, num_heads=2
    )
    randomise(model, seed=2)
    model.config.class_names = ["a", "b", "c", "d", "e"]
    save_pretrained(model, root / "ckpt")
    return root, good, xvit.load_model(root / "ckpt")


def _predict(root, out, *extra):
    args = [
        "predict",
        "--list",
        str(root / "videos.txt"),
        "--checkpoint",
        str(root / "ckpt"),
        "--out",
        str(out),
    ]
    return main([*args, "--topk", "3", "--workers", "0", *extra])


def _expected(model, video, n):
    """Top-3 from the test view of `xvit predict`: uniform sampling, resize, centre crop."""
    tf = EvalTransform(crop_size=SIZE, resize=SIZE, mean=model.config.mean, std=model.config.std)
    with torch.no_grad():
        probs = model(tf(read_frames(video, UniformSampler(T).views(n, 1)[0]))).softmax(-1)[0]
    top = probs.topk(3)
    return [(model.config.class_names[c], p) for c, p in zip(top.indices.tolist(), top.values.tolist())]


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_predictions_failures_and_resume(setup, tmp_path, capsys, caplog):
    root, good, model = setup
    out = tmp_path / "predictions.csv"
    assert _predict(root, out, "--workers", "1") == 1  # decoded in a worker process; two failed
    rows = _rows(out)
    assert [r["path"] for r in rows] == [str(p) for p in good]
    for r, video, n in zip(rows, good, LENGTHS):
        want = _expected(model, video, n)
        assert [r[f"class_{k}"] for k in (1, 2, 3)] == [c for c, _ in want]
        for k, (_, p) in enumerate(want, start=1):
            assert float(r[f"prob_{k}"]) == pytest.approx(p, abs=2e-6)
    failed = _rows(tmp_path / "predictions.failed.csv")
    assert [f["path"] for f in failed] == [str(root / "broken.mp4"), str(root / "gone.mp4")]
    assert "file not found" in failed[1]["error"]
    printed = capsys.readouterr()
    assert "4 predicted, 0 already in" in printed.out and "2 failed of 6 videos" in printed.out
    assert f"failed: {root / 'broken.mp4'}" in printed.err

    # rerun: nothing done twice, the failures tried again
    before = out.read_bytes()
    assert _predict(root, out) == 1
    assert out.read_bytes() == before
    printed = capsys.readouterr()
    assert "0 predicted, 4 already in" in printed.out
    # each failure told once ("failed: ..."), not also by the dataset's logger ("evaluation: ...")
    assert [line for line in printed.err.splitlines() if "broken.mp4" in line] == [
        f"failed: {failed[0]['error']}"
    ]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []

    # a crash during an append left half a row, and the last video unanswered
    lines = before.decode().splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][:9])
    assert _predict(root, out) == 1
    again = _rows(out)  # the cut row dropped, the video predicted again, once
    assert [r["path"] for r in again] == [r["path"] for r in rows]
    assert again[-1]["class_1"] == rows[-1]["class_1"]
    assert float(again[-1]["prob_1"]) == pytest.approx(float(rows[-1]["prob_1"]), abs=2e-6)
    assert "1 predicted, 3 already in" in capsys.readouterr().out


def test_all_readable_exits_0_and_removes_old_failures(setup, tmp_path):
    root, good, _ = setup
    lst = tmp_path / "ok.txt"
    lst.write_text("\n".join(str(p) for p in good[:2]) + "\n")
    out = tmp_path / "p.csv"
    (tmp_path / "p.failed.csv").write_text("path,error\nx,y\n")
    args = [
        "predict",
        "--list",
        str(lst),
        "--checkpoint",
        str(root / "ckpt"),
        "--out",
        str(out),
        "--workers",
        "0",
    ]
    assert main(args) == 0
    assert len(_rows(out)) == 2 and not (tmp_path / "p.failed.csv").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--list", "{tmp}/nope.txt", "--out", "{tmp}/p.csv"], "no such list file"),
        (["--list", "{root}/videos.txt"], "--list needs --out"),
        (["--list", "{root}/videos.txt", "--out", "{tmp}"], "is a directory"),
        (
            ["--list", "{root}/videos.txt", "--out", "{root}/videos.txt/p.csv"],
            "videos.txt is not a directory",
        ),
        (["--list", "{root}/videos.txt", "--out", "{tmp}/p.csv", "--topk", "0"], "--topk must be"),
        (["--list", "{root}/videos.txt", "--out", "{tmp}/p.csv", "{root}/v0.mp4"], "not both"),
    ],
)
def test_bad_input_is_one_line(setup, tmp_path, capsys, extra, message):
    root, _, _ = setup
    args = [a.format(root=root, tmp=tmp_path) for a in extra]
    assert main(["predict", "--checkpoint", str(root / "ckpt"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_other_topk_into_the_same_csv_is_refused(setup, tmp_path, capsys):
    root, good, _ = setup
    out = tmp_path / "p.csv"
    out.write_text("path,class_1,prob_1\n" + f"{good[0]},a,0.5\n")
    assert _predict(root, out) == 2
    assert "another --topk" in capsys.readouterr().err
    assert out.read_text() == "path,class_1,prob_1\n" + f"{good[0]},a,0.5\n"


def test_help_names_the_failures_file_that_is_written(capsys):
    """`predict --help` gives the failures file as it is written: next to --out, NAME.failed.csv."""
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "for --out pl/run.csv; failures listed next to it: pl/run.failed.csv" in text
    assert str(failed_path("pl/run.csv")) == "pl/run.failed.csv"
    assert "recorded in pl/run.settings.json" in text
    assert str(settings_path("pl/run.csv")) == "pl/run.settings.json"
    assert "OUT.failed.csv" not in text


@pytest.fixture(scope="module")
def other_ckpt(setup):
    """A second model with the same classes and shape, other weights."""
    root, _, _ = setup
    model = xvit.create_model(
        "xvit_tiny_patch16", num_classes=5, num_frames=T, img_size=SIZE, embed_dim=64, depth=2, num_heads=2
    )
    randomise(model, seed=7)
    model.config.class_names = ["a", "b", "c", "d", "e"]
    save_pretrained(model, root / "ckpt2")
    return root / "ckpt2"


def _list_run(lst, ckpt, out, *extra):
    args = ["predict", "--list", str(lst), "--checkpoint", str(ckpt), "--out", str(out), "--workers", "0"]
    return main([*args, "--topk", "3", *extra])


@pytest.mark.parametrize("change", ["checkpoint", "weights in place", "views"])
def test_resume_with_other_settings_is_refused(setup, other_ckpt, tmp_path, capsys, change):
    """Rows made by one model (or with other views) are never continued by another: one line
    naming what changed, exit 2, nothing written; the same settings then resume."""
    root, good, _ = setup
    ckpt = tmp_path / "ck"
    shutil.copytree(root / "ckpt", ckpt)
    lst = tmp_path / "videos.txt"
    lst.write_text(f"{good[0]}\n{good[1]}\n")
    out = tmp_path / "pl" / "mine.csv"
    out.parent.mkdir()
    assert _list_run(lst, ckpt, out) == 0
    record = json.loads((tmp_path / "pl" / "mine.settings.json").read_text())
    assert record["views"] == "1x1" and record["topk"] == 3 and record["checkpoint"] == str(ckpt)
    lst.write_text(f"{good[0]}\n{good[1]}\n{good[2]}\n")  # a line appended to the list
    before = out.read_bytes(), (tmp_path / "pl" / "mine.settings.json").read_bytes()
    capsys.readouterr()

    if change == "checkpoint":
        rc = _list_run(lst, other_ckpt, out)
        message = f"(checkpoint {ckpt} -> {other_ckpt})"
    elif change == "weights in place":  # retrained into the same folder
        shutil.copy(other_ckpt / "model.safetensors", ckpt / "model.safetensors")
        rc = _list_run(lst, ckpt, out)
        message = f"checkpoint {ckpt} (its weights changed since"
    else:
        rc = _list_run(lst, ckpt, out, "--views", "2x1")
        message = "(views 1x1 -> 2x1)"
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("xvit predict --list: error: --out ")
    assert "was predicted with other settings" in captured.err and message in captured.err, captured.err
    assert (out.read_bytes(), (tmp_path / "pl" / "mine.settings.json").read_bytes()) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["mine.csv", "mine.settings.json"]

    if change == "weights in place":
        shutil.copy(root / "ckpt" / "model.safetensors", ckpt / "model.safetensors")
    assert _list_run(lst, ckpt, out) == 0  # the same settings: resumes
    assert "1 predicted, 2 already in" in capsys.readouterr().out
    assert [r["path"] for r in _rows(out)] == [str(g) for g in good[:3]]


def test_same_weights_elsewhere_resume(setup, tmp_path, capsys):
    """The weights, not the folder's name, identify the model: a copy of the checkpoint resumes."""
    root, good, _ = setup
    lst = tmp_path / "videos.txt"
    lst.write_text(f"{good[0]}\n")
    out = tmp_path / "p.csv"
    assert _list_run(lst, root / "ckpt", out) == 0
    shutil.copytree(root / "ckpt", tmp_path / "copy")
    lst.write_text(f"{good[0]}\n{good[3]}\n")
    capsys.readouterr()
    assert _list_run(lst, tmp_path / "copy", out) == 0
    assert "1 predicted, 1 already in" in capsys.readouterr().out


def test_rows_without_a_settings_record_are_not_resumed(setup, tmp_path, capsys):
    """A CSV from before the settings record: which model made its rows is unknown, so it is
    not continued (one line saying how to proceed); a header alone is no result and is used."""
    root, good, _ = setup
    lst = tmp_path / "videos.txt"
    lst.write_text(f"{good[0]}\n{good[1]}\n")
    out = tmp_path / "old.csv"
    text = "path,class_1,prob_1,class_2,prob_2,class_3,prob_3\n" + f"{good[0]},a,0.5,b,0.3,c,0.2\n"
    out.write_text(text)
    assert _list_run(lst, root / "ckpt", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has predictions but no settings record old.settings.json" in err, err
    assert f"move {out} away" in err
    assert out.read_text() == text and not (tmp_path / "old.settings.json").exists()

    out.write_text(text.splitlines(keepends=True)[0])  # the header only
    assert _list_run(lst, root / "ckpt", out) == 0
    assert [r["path"] for r in _rows(out)] == [str(g) for g in good[:2]]
    assert (tmp_path / "old.settings.json").is_file()


def test_out_in_a_missing_folder_is_created(setup, tmp_path, capsys):
    """As --timeline, train and eval: the folders of --out are made (once the input is checked)."""
    root, good, _ = setup
    lst = tmp_path / "videos.txt"
    lst.write_text(f"{good[0]}\n")
    out = tmp_path / "new" / "deeper" / "p.csv"
    assert _list_run(lst, root / "nope", out) == 2  # refused: no folder made
    assert "no such directory" in capsys.readouterr().err and not (tmp_path / "new").exists()
    assert _list_run(lst, root / "ckpt", out) == 0
    assert [r["path"] for r in _rows(out)] == [str(good[0])]
    assert (out.parent / "p.settings.json").is_file()
