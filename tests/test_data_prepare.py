"""`xvit data prepare`: re-encoding a class-folder tree or list file, resuming, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from _video_fixtures import write_test_video as _write_test_video
from _video_fixtures import write_video as _write_video

from xvit.cli.main import main
from xvit.data import VideoReader, read_frames
from xvit.data.annotations import read_annotations, read_class_names
from xvit.data.prepare import (
    PARTIAL_SUFFIX,
    PrepareSettings,
    output_size,
    plan_outputs,
    read_source,
)

# class -> [(file name, fixture kind, frames)]
TREE = {
    "clapping": [("c1.mp4", "mp4", 40), ("c2.avi", "avi", 30), ("c3.mkv", "mkv", 33)],
    "jumping": [("j1.webm", "webm", 20), ("j2.MP4", "mp4", 25)],
    "waving": [("w1.mkv", "mkv", 28), ("w2.mp4", "mp4", 36)],
}
BROKEN = "jumping/broken.mp4"


def write_test_video(path: Path, kind: str, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_test_video(path, kind, **kwargs)


def write_video(path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_video(path, **kwargs)


def _make_tree(root: Path) -> Path:
    for cls, videos in TREE.items():
        for name, kind, n in videos:
            write_test_video(root / cls / name, kind, num_frames=n)
    (root / BROKEN).write_bytes(b"not a video at all " * 50)
    (root / "waving" / "notes.txt").write_text("ignored")
    return root


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    return {
        str(p.relative_to(root)): (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            hashlib.sha1(p.read_bytes()).hexdigest(),
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _outputs(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted((out / "videos").rglob("*.mp4"))}


def _keyframes(path: Path) -> tuple[list[int], bool]:
    """Indices (presentation order) of keyframes, and whether decode order == display order."""
    with av.open(str(path)) as c:
        packets = [(p.pts, p.dts, p.is_keyframe) for p in c.demux(video=0) if p.pts is not None]
    by_pts = sorted(packets)
    return [i for i, p in enumerate(by_pts) if p[2]], by_pts == packets


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One prepare run (2 worker processes) over the tree: (src, out, exit code, stdout)."""
    base = tmp_path_factory.mktemp("prep")
    src = _make_tree(base / "src")
    before = _snapshot(src)
    out = base / "out"
    code = main(
        [
            "data",
            "prepare",
            str(src),
            str(out),
            "--short-side",
            "32",
            "--gop",
            "8",
            "--workers",
            "2",
            "--val-split",
            "0.3",
        ]
    )
    assert _snapshot(src) == before  # the sources are never changed
    return src, out, code


def test_prepare_writes_lists_classes_and_failures(prepared):
    src, out, code = prepared
    assert code == 0
    assert read_class_names(out / "classnames.txt") == sorted(TREE)
    train = read_annotations(out / "train.txt")
    val = read_annotations(out / "val.txt")
    assert train.class_names == sorted(TREE)
    got = sorted((Path(s.path).relative_to(out).as_posix(), s.label) for s in train.samples + val.samples)
    want = sorted(
        (f"videos/{cls}/{Path(name).stem}.mp4", sorted(TREE).index(cls))
        for cls, videos in TREE.items()
        for name, _, _ in videos
    )
    assert got == want
    # 0.3 of 3 -> 1, of 2 -> 1 (each class keeps a training video); the broken file is out
    assert len(val.samples) == 3 and {s.label for s in val.samples} == {0, 1, 2}
    failed = (out / "failed.txt").read_text().splitlines()
    assert len(failed) == 1 and failed[0].startswith(str(src / BROKEN) + "\t")
    assert "not a video" in failed[0]
    assert not list(out.rglob(f"*{PARTIAL_SUFFIX}"))


def test_outputs_decode_with_same_frames_size_and_gop(prepared):
    src, out, _ = prepared
    for cls, videos in TREE.items():
        for name, _kind, n in videos:
            dst = out / "videos" / cls / f"{Path(name).stem}.mp4"
            with VideoReader(dst) as r:
                assert r.num_frames == n == VideoReader(src / cls / name).num_frames
                assert (r.width, r.height) == (42, 32)  # 64x48, short side 32, even
                assert r.fps == pytest.approx(25, rel=1e-3)
            keys, in_order = _keyframes(dst)
            assert keys == list(range(0, n, 8)), (dst, keys)
            assert in_order  # no B-frames
            with av.open(str(dst)) as c:
                assert c.streams.video[0].codec_context.name == "h264"
                assert c.streams.video[0].format.name == "yuv420p"


def test_frames_match_the_source_in_order(tmp_path):
    src = tmp_path / "src"
    write_test_video(src / "a" / "v.mp4", "mp4", num_frames=30)
    write_test_video(src / "b" / "v.avi", "avi", num_frames=20)
    assert (
        main(
            [
                "data",
                "prepare",
                str(src),
                str(tmp_path / "out"),
                "--short-side",
                "0",
                "--val-split",
                "0",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    for rel, n in (("a/v.mp4", 30), ("b/v.avi", 20)):
        a = read_frames(src / rel, range(n)).float()
        b = read_frames(tmp_path / "out" / "videos" / Path(rel).with_suffix(".mp4"), range(n)).float()
        same = (a - b).abs().mean((1, 2, 3))
        shifted = (a[1:] - b[:-1]).abs().mean((1, 2, 3))
        assert same.max() < 12 and shifted.min() > 30, (rel, same.max(), shifted.min())


def test_rotation_applied_and_fps_resampled(tmp_path):
    src = tmp_path / "src"
    write_video(src / "a" / "rot.mp4", num_frames=25, rotation=90)
    write_video(src / "a" / "plain.mp4", num_frames=40, fps=25)
    out = tmp_path / "out"
    assert (
        main(
            [
                "data",
                "prepare",
                str(src),
                str(out),
                "--short-side",
                "0",
                "--val-split",
                "0",
                "--fps",
                "12.5",
                "--gop",
                "4",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    with VideoReader(out / "videos/a/plain.mp4") as r:
        assert r.num_frames == 20 and r.fps == pytest.approx(12.5, rel=1e-3)
    ref = read_frames(src / "a" / "rot.mp4", list(range(0, 25, 2)))  # rotation applied: 48x64
    with VideoReader(out / "videos/a/rot.mp4") as r:
        assert (r.height, r.width) == (64, 48) == tuple(ref.shape[-2:])
        got = r.read(range(r.num_frames)).float()
    assert got.shape[0] == 13  # 25 frames at 25 fps -> 1 s at 12.5 fps (fps filter rounding)
    assert (got - ref.float()).abs().mean() < 12
    with VideoReader(out / "videos/a/rot.mp4", apply_rotation=False) as r:  # stored upright
        assert (r.height, r.width) == (64, 48)
    assert _keyframes(out / "videos/a/plain.mp4")[0] == [0, 4, 8, 12, 16]


def test_rerun_skips_done_resumes_after_interruption_and_reencodes_changes(tmp_path):
    src = _make_tree(tmp_path / "src")
    out = tmp_path / "out"
    args = ["data", "prepare", str(src), str(out), "--short-side", "32", "--gop", "8", "--workers", "1"]
    assert main(args) == 0
    first = _outputs(out)
    assert len(first) == 7
    # simulate a run killed mid-way: a stale temp file, a lost output, a torn manifest line
    stale = out / "videos" / "clapping" / f".c1.mp4.999-deadbeef{PARTIAL_SUFFIX}"
    stale.write_bytes(b"half a video")
    (out / "videos" / "waving" / "w2.mp4").unlink()
    with open(out / "prepared.jsonl", "a") as f:
        f.write('{"source": "/x", "size"')
    (out / "train.txt").unlink()
    assert main(args) == 0
    second = _outputs(out)
    assert set(second) == set(first) and not stale.exists()
    changed = {k for k in first if first[k] != second[k]}
    assert changed == {"videos/waving/w2.mp4"}
    assert (out / "train.txt").exists()
    # a changed source and changed settings re-encode
    os.utime(src / "jumping" / "j1.webm", ns=(time.time_ns(), time.time_ns()))
    assert main(args) == 0
    third = _outputs(out)
    assert {k for k in first if second[k] != third[k]} == {"videos/jumping/j1.mp4"}
    assert main(args[:-4] + ["--gop", "4", "--workers", "1"]) == 0
    fourth = _outputs(out)
    assert all(fourth[k] != third[k] for k in first)
    assert _keyframes(out / "videos/clapping/c1.mp4")[0] == list(range(0, 40, 4))
    records = [json.loads(line) for line in (out / "prepared.jsonl").read_text().splitlines()]
    assert len(records) == 7 and all(r["settings"]["gop"] == 4 for r in records)


def wait_for_a_record(proc: subprocess.Popen, manifest: Path, timeout: float = 60) -> None:
    """Wait until ``manifest`` holds one record (a finished video), or ``proc`` ended, or
    ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= 1:
            return
        time.sleep(0.02)


def test_kill_9_then_rerun_completes(tmp_path):
    src = tmp_path / "src"
    for i in range(6):
        write_video(src / f"c{i % 2}" / f"v{i}.mp4", num_frames=60, height=120, width=160, gop=60)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "xvit.cli.main",
        "data",
        "prepare",
        str(src),
        str(out),
        "--short-side",
        "120",
        "--gop",
        "8",
        "--workers",
        "1",
        "--preset",
        "veryslow",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "prepared.jsonl"
    wait_for_a_record(proc, manifest)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "train.txt").exists(), "the run finished before it could be killed"
    done_before = _outputs(out)
    assert 1 <= len(done_before) < 6
    assert main(cmd[3:]) == 0
    after = _outputs(out)
    assert len(after) == 6 and not list(out.rglob(f"*{PARTIAL_SUFFIX}"))
    recorded = {json.loads(line)["output"] for line in manifest.read_text().splitlines()}
    kept = {k for k in done_before if k in recorded}
    assert kept and all(after[k] == done_before[k] for k in kept)
    for rel in after:
        assert VideoReader(out / rel).num_frames == 60


def test_list_file_source_with_names_root_and_separate_val(tmp_path):
    data = tmp_path / "data"
    write_test_video(data / "x" / "a.mp4", "mp4", num_frames=12)
    write_test_video(data / "y" / "a.mkv", "mkv", num_frames=14)  # same stem, another class
    write_test_video(data / "y" / "b.webm", "webm", num_frames=10)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "classnames.txt").write_text("pour water\nstir\n")
    (lists / "train.txt").write_text("x/a.mp4, pour water\ny/a.mkv, stir\ngone.mp4, stir\n")
    (lists / "val.txt").write_text("y/b.webm 1\n")
    out = tmp_path / "out"
    assert (
        main(
            [
                "data",
                "prepare",
                str(lists / "train.txt"),
                str(out),
                "--root",
                str(data),
                "--val",
                str(lists / "val.txt"),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    train = read_annotations(out / "train.txt")
    val = read_annotations(out / "val.txt")
    assert train.class_names == ["pour water", "stir"]
    assert [(Path(s.path).relative_to(out).as_posix(), s.label) for s in train.samples] == [
        ("videos/pour water/a.mp4", 0),
        ("videos/stir/a.mp4", 1),
    ]
    assert [(Path(s.path).relative_to(out).as_posix(), s.label) for s in val.samples] == [
        ("videos/stir/b.mp4", 1)
    ]
    assert "gone.mp4\tfile not found" in (out / "failed.txt").read_text()


def test_colliding_names_get_distinct_outputs(tmp_path):
    src = tmp_path / "src"
    for name in ("a.mp4", "a.avi", "b.mp4"):
        (src / "k").mkdir(parents=True, exist_ok=True)
        (src / "k" / name).write_bytes(b"x")
    plan = plan_outputs(read_source(src))
    assert len(set(plan.values())) == 3
    assert plan[str(src / "k" / "b.mp4")] == "videos/k/b.mp4"
    assert all(v.startswith("videos/k/a-") for k, v in plan.items() if "/a." in k)


@pytest.mark.parametrize(
    "size, short, expected",
    [
        ((1280, 720), 320, (568, 320)),
        ((720, 1280), 256, (256, 456)),
        ((64, 48), 256, (64, 48)),
        ((63, 47), 0, (62, 46)),
        ((1920, 1080), 1080, (1920, 1080)),
        ((641, 481), 240, (320, 240)),
    ],
)
def test_output_size(size, short, expected):
    assert output_size(*size, short) == expected


# ----------------------------------------------------------------------------- bad input


def _one_line_error(capsys, code, expected_code, text):
    err = capsys.readouterr().err.strip()
    assert code == expected_code, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert text in err, err


def test_bad_source_and_output_are_one_line_errors(tmp_path, capsys):
    src = tmp_path / "src"
    write_test_video(src / "a" / "v.mp4", "mp4", num_frames=5)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    (tmp_path / "empty").mkdir()
    cases = [
        ([str(tmp_path / "nope"), str(tmp_path / "o1")], "not found"),
        ([str(tmp_path / "empty"), str(tmp_path / "o2")], "is empty"),
        ([str(src), str(a_file)], "exists and is not a directory"),
        ([str(src), str(a_file / "sub")], "cannot write here"),
        ([str(src), str(src / "prepared")], "must lie outside the source tree"),
        ([str(src), str(tmp_path / "o3"), "--val", str(src), "--val-split", "0.2"], "not both"),
        ([str(src), str(tmp_path / "o4"), "--val-split", "1"], "--val-split must be in [0, 1)"),
        ([str(src), str(tmp_path / "o5"), "--gop", "0"], "--gop must be >= 1"),
        ([str(src), str(tmp_path / "o6"), "--fps", "fast"], "--fps must be a number"),
        (
            [str(src), str(tmp_path / "o9"), "--preset", "foo"],
            "--preset must be one of ultrafast, superfast, veryfast, faster, fast, medium, slow, "
            "slower, veryslow, placebo; got 'foo'",
        ),
        ([str(a_file), str(tmp_path / "o7")], "expected 'path label'"),
    ]
    for args, text in cases:
        _one_line_error(capsys, main(["data", "prepare", *args]), 2, text)
    assert not (src / "prepared").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("o")]  # nothing written
    lst = tmp_path / "train.txt"
    lst.write_text("src/a/v.mp4 0\n")
    _one_line_error(
        capsys, main(["data", "prepare", str(lst), str(tmp_path)]), 2, "a source file would be overwritten"
    )
    val_tree = tmp_path / "val"
    write_test_video(val_tree / "zzz" / "v.mp4", "mp4", num_frames=5)
    _one_line_error(
        capsys,
        main(["data", "prepare", str(src), str(tmp_path / "o8"), "--val", str(val_tree)]),
        2,
        "'zzz' not in the model's 1 classes",
    )


def test_out_holding_another_sources_dataset_is_refused(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    for root in (first, second):  # same class and file names: the outputs would collide
        write_test_video(root / "a" / "v.mp4", "mp4", num_frames=5)
        write_test_video(root / "b" / "w.mp4", "mp4", num_frames=5)
    out = tmp_path / "out"
    flags = ["--workers", "1", "--val-split", "0"]
    assert main(["data", "prepare", str(first), str(out), *flags]) == 0
    capsys.readouterr()
    before = _snapshot(out)
    before.pop(".prepare.lock")  # opened for locking
    code = main(["data", "prepare", str(second), str(out), *flags])
    _one_line_error(capsys, code, 2, f"{out}: holds a dataset prepared from other sources (e.g. {first}")
    after = _snapshot(out)
    after.pop(".prepare.lock")
    assert after == before
    # the same source again, or one that shares sources with it, goes on
    write_test_video(first / "b" / "x.mp4", "mp4", num_frames=5)
    assert main(["data", "prepare", str(first), str(out), *flags]) == 0
    assert "3 of 3 videos prepared (1 encoded, 2 already done)" in capsys.readouterr().out


def test_every_video_failing_exits_1(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x.mp4").write_bytes(b"")
    (src / "a" / "y.avi").write_bytes(b"garbage" * 10)
    code = main(["data", "prepare", str(src), str(tmp_path / "out"), "--workers", "1"])
    assert code == 1
    failed = (tmp_path / "out" / "failed.txt").read_text()
    assert "x.mp4\tfile is empty (0 bytes)" in failed and "y.avi\tcannot open" in failed
    assert "0 of 2 videos prepared" in capsys.readouterr().out


def test_synth_into_a_file_is_a_one_line_error(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    _one_line_error(capsys, main(["data", "synth", str(a_file)]), 2, "exists and is not a directory")
    _one_line_error(capsys, main(["data", "synth", str(a_file / "sub")]), 2, "cannot write here")


def test_settings_validation():
    with pytest.raises(ValueError, match="short-side"):
        PrepareSettings(short_side=1)
    with pytest.raises(ValueError, match="--crf"):
        PrepareSettings(crf=60)
    with pytest.raises(ValueError, match="--preset must be one of ultrafast, .*, placebo; got 'Fast'"):
        PrepareSettings(preset="Fast")
    assert PrepareSettings(preset="placebo").preset == "placebo"
    assert PrepareSettings(fps="30000/1001").record()["fps"] == "30000/1001"


def test_ctrl_c_exits_130_and_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    import xvit.data.prepare as prep

    src = tmp_path / "src"
    for i in range(3):
        write_test_video(src / "a" / f"v{i}.mp4", "mp4", num_frames=10)
    real, calls = prep.encode_video, []

    def interrupted_on_second(s, dst, *args, **kwargs):
        calls.append(s)
        if len(calls) == 2:
            Path(dst).write_bytes(b"half")  # a partial output when the interrupt lands
            raise KeyboardInterrupt
        return real(s, dst, *args, **kwargs)

    monkeypatch.setattr(prep, "encode_video", interrupted_on_second)
    out = tmp_path / "out"
    args = ["data", "prepare", str(src), str(out), "--workers", "1", "--val-split", "0"]
    assert main(args) == 130
    assert "run the same command again" in capsys.readouterr().err
    assert list(_outputs(out)) == ["videos/a/v0.mp4"] and not list(out.rglob(f"*{PARTIAL_SUFFIX}"))
    monkeypatch.setattr(prep, "encode_video", real)
    assert main(args) == 0
    assert len(_outputs(out)) == 3 and len((out / "train.txt").read_text().splitlines()) == 3


def test_sigint_to_a_real_run_stops_at_once_and_keeps_every_finished_video(tmp_path, capsys):
    """Ctrl-C (SIGINT to the `xvit` process) during a 2-worker run: exit 130 at once, no
    source started after it, every complete output recorded (a rerun keeps them all), no
    temporary file left; the rerun ends with the lists of an uninterrupted run."""
    src = tmp_path / "src"
    for i in range(6):
        write_video(src / f"c{i % 2}" / f"v{i}.mp4", num_frames=60, height=120, width=160, gop=60)
    flags = ["--short-side", "120", "--gop", "8", "--workers", "2", "--preset", "veryslow"]
    out = tmp_path / "out"
    # SIGINT as a terminal delivers it (a shell may start background children ignoring it)
    code = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from xvit.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    cmd = [sys.executable, "-c", code, "data", "prepare", str(src), str(out), *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    manifest = out / "prepared.jsonl"
    wait_for_a_record(proc, manifest)
    started = {
        p.name.split(".")[1] if p.name.endswith(PARTIAL_SUFFIX) else p.stem
        for p in (out / "videos").rglob("*")
    }
    complete_before = set(_outputs(out))
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    try:
        err = proc.communicate(timeout=15)[1]
    finally:
        proc.kill()
    took = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert took < 8, f"took {took:.1f} s to stop"
    assert "Traceback" not in err and "run the same command again" in err, err
    assert not (out / "train.txt").exists(), "the run finished before it could be interrupted"
    complete = set(_outputs(out))
    recorded = {json.loads(line)["output"] for line in manifest.read_text().splitlines()}
    assert complete_before <= complete and 1 <= len(complete) < 6
    assert recorded == complete  # nothing finished is thrown away
    assert {Path(k).stem for k in complete} <= started  # no source started after Ctrl-C
    assert not list(out.rglob(f"*{PARTIAL_SUFFIX}"))
    kept = _outputs(out)
    rerun = [a if a != "2" else "1" for a in flags]  # the workers are no setting: nothing re-encoded
    assert main(["data", "prepare", str(src), str(out), *rerun]) == 0
    done = f"6 of 6 videos prepared ({6 - len(kept)} encoded, {len(kept)} already done)"
    assert done in capsys.readouterr().out
    assert all(_outputs(out)[k] == kept[k] for k in kept)
    ref = tmp_path / "ref"  # uninterrupted (faster settings: the lists do not depend on them)
    assert main(["data", "prepare", str(src), str(ref), "--workers", "1", "--preset", "ultrafast"]) == 0
    for name in ("train.txt", "val.txt", "classnames.txt"):
        assert (out / name).read_text() == (ref / name).read_text()
