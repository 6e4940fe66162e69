"""`xvit extract`: features per window / per video of a list with broken videos, resumable,
shared by two torchrun processes; features checked against read_frames + forward_features."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys

import pytest
import torch
from _model_helpers import randomise
from _video_fixtures import write_video
from safetensors import safe_open
from safetensors.torch import load_file

import xvit
from xvit.cli.main import main
from xvit.data import read_frames
from xvit.data.transforms import EvalTransform
from xvit.models.storage import save_pretrained

T, SIZE = 4, 32  # the tiny model: 4 frames of 32x32
LENGTHS = [20, 27, 9, 34, 16, 3, 23]  # frames of the 7 good videos (3 and 9 are < or ~ one clip)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    good = []
    for i, n in enumerate(LENGTHS):
        good.append(write_video(root / f"clip{i}.mp4", num_frames=n, height=36, width=44, fps=25, gop=6))
    (root / "garbage.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 3)
    (root / "empty.mp4").write_bytes(b"")
    lines = [p.name for p in good[:3]] + ["garbage.mp4", "missing.mp4"] + [p.name for p in good[3:]]
    lines.insert(4, "empty.mp4")
    (root / "videos.txt").write_text("# ten videos, three broken\n" + "\n".join(lines) + "\n")
    model = xvit.create_model(
        "xvit_tiny_patch16", num_classes=3, num_frames=T, img_size=SIZE, embed_dim=64, depth=2, num_heads=2
    )
    randomise(model, seed=1)
    save_pretrained(model, root / "ckpt")
    return root, good, xvit.load_model(root / "ckpt")


def _extract(root, out, *extra):
    return main(
        ["extract", "--list", str(root / "videos.txt"), "--checkpoint", str(root / "ckpt")]
        + ["--out", str(out), "--no-progress", *extra]
    )


def _starts(n, span, stride):
    return [0] if n < span else list(range(0, n - span + 1, stride))


def test_list_with_broken_videos_then_resume(setup, tmp_path, capsys):
    root, good, _ = setup
    out = tmp_path / "feats"
    assert _extract(root, out) == 1  # three videos failed
    err = capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.safetensors")) == sorted(p.stem + ".safetensors" for p in good)
    with open(out / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [
        str(root / n)
        for n in ["clip0.mp4", "clip1.mp4", "clip2.mp4", "clip3.mp4", "clip4.mp4", "clip5.mp4", "clip6.mp4"]
    ]
    span, stride = T, T // 2  # sampling rate 1; default stride: half a clip
    for r in rows:
        n = LENGTHS[int(r["path"][-5])]
        assert int(r["windows"]) == len(_starts(n, span, stride)) and int(r["dim"]) == 64
        assert int(r["frames"]) == n and float(r["seconds"]) == pytest.approx(n / 25)
    with open(out / "failed.csv") as f:
        failed = {r["path"]: r["error"] for r in csv.DictReader(f)}
    assert set(failed) == {str(root / n) for n in ("garbage.mp4", "empty.mp4", "missing.mp4")}
    assert (
        "file not found" in failed[str(root / "missing.mp4")] and "empty" in failed[str(root / "empty.mp4")]
    )
    for path in failed:
        assert f"failed: {path}" in err

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.safetensors")}
    capsys.readouterr()
    assert _extract(root, out) == 1  # the broken ones are tried again and fail again
    assert "0 written, 7 already done, 3 failed of 10 videos" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.safetensors")} == mtimes
    assert not list(out.glob(".*tmp*"))  # no temporary file left behind

    # other settings into the same folder: refused, nothing overwritten
    assert _extract(root, out, "--stride", "1") == 2
    assert "other settings" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.safetensors")} == mtimes


def test_features_equal_read_frames_and_forward_features(setup, tmp_path):
    root, good, model = setup
    out = tmp_path / "f"
    video = good[3]  # 34 frames
    assert (
        main(
            ["extract", str(video), "--checkpoint", str(root / "ckpt"), "--out", str(out)]
            + ["--stride", "3", "--sampling-rate", "2", "--batch-size", "4", "--no-progress"]
        )
        == 0
    )
    data = load_file(out / "clip3.safetensors")
    span = (T - 1) * 2 + 1
    starts = _starts(34, span, 3)
    assert data["start_frame"].tolist() == starts and data["end_frame"].tolist() == [s + span for s in starts]
    torch.testing.assert_close(data["start_sec"], torch.tensor(starts, dtype=torch.float64) / 25)
    torch.testing.assert_close(data["end_sec"], (torch.tensor(starts, dtype=torch.float64) + span) / 25)
    tf = EvalTransform(crop_size=SIZE, resize=SIZE, mean=model.config.mean, std=model.config.std)
    with torch.no_grad():
        for k in (0, 5, len(starts) - 1):
            clip = tf(read_frames(video, [starts[k] + 2 * j for j in range(T)]))  # (1, 3, T, h, w)
            ref = model.forward_features(clip).mean(dim=1)[0]
            torch.testing.assert_close(data["features"][k], ref, atol=1e-5, rtol=1e-5)
    with safe_open(str(out / "clip3.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["layer"] == "features" and meta["stride"] == "3" and meta["sampling_rate"] == "2"
    assert meta["fps"] == "25.0" and "forward_features" in meta["features_definition"]

    # logits, one vector per video: the mean over the windows of the model's output
    assert (
        main(
            ["extract", str(video), "--checkpoint", str(root / "ckpt"), "--out", str(tmp_path / "g")]
            + ["--layer", "logits", "--per", "video", "--no-progress"]
        )
        == 0
    )
    got = load_file(tmp_path / "g" / "clip3.safetensors")["features"]
    with torch.no_grad():
        clips = torch.cat([tf(read_frames(video, list(range(s, s + T)))) for s in _starts(34, T, 2)])
        torch.testing.assert_close(got, model(clips).mean(dim=0), atol=1e-5, rtol=1e-5)


def test_video_shorter_than_one_clip_repeats_its_last_frame(setup, tmp_path):
    root, good, model = setup
    out = tmp_path / "s"
    assert (
        main(
            ["extract", str(good[5]), "--checkpoint", str(root / "ckpt"), "--out", str(out), "--no-progress"]
        )
        == 0
    )
    data = load_file(out / "clip5.safetensors")  # 3 frames, clip of 4
    assert data["start_frame"].tolist() == [0] and data["end_frame"].tolist() == [3]
    tf = EvalTransform(crop_size=SIZE, resize=SIZE, mean=model.config.mean, std=model.config.std)
    with torch.no_grad():
        ref = model.forward_features(tf(read_frames(good[5], [0, 1, 2, 2]))).mean(dim=1)[0]
    torch.testing.assert_close(data["features"][0], ref, atol=1e-5, rtol=1e-5)


def test_model_name_with_pretrained_or_random_weights(setup, tmp_path, capsys):
    _, good, _ = setup
    image = xvit.create_model("vit_tiny_patch16", num_classes=10, num_frames=1, img_size=SIZE)
    randomise(image, seed=3)
    weights = tmp_path / "image_vit.pth"
    torch.save(
        {k: v for k, v in image.state_dict().items() if not k.startswith(("head.", "temp_embed"))}, weights
    )
    args = [
        "extract",
        str(good[5]),
        "--model",
        "xvit_tiny_patch16",
        "--num-frames",
        str(T),
        "--img-size",
        str(SIZE),
    ]
    assert main([*args, "--pretrained", str(weights), "--out", str(tmp_path / "p"), "--no-progress"]) == 0
    ref = xvit.create_model("xvit_tiny_patch16", num_frames=T, img_size=SIZE, pretrained=weights).eval()
    tf = EvalTransform(crop_size=SIZE, resize=SIZE, mean=ref.config.mean, std=ref.config.std)
    with torch.no_grad():
        want = ref.forward_features(tf(read_frames(good[5], [0, 1, 2, 2]))).mean(dim=1)[0]
    torch.testing.assert_close(
        load_file(tmp_path / "p" / "clip5.safetensors")["features"][0], want, atol=1e-5, rtol=1e-5
    )
    # no weights at all only when asked; logits of an untrained head are refused
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    assert "--random-init" in capsys.readouterr().err
    assert main([*args, "--pretrained", str(weights), "--layer", "logits", "--out", str(tmp_path / "l")]) == 2
    assert "untrained" in capsys.readouterr().err
    assert main([*args, "--random-init", "--out", str(tmp_path / "r"), "--no-progress"]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--list", "{root}/nope.txt"], "no such list file"),
        (["--list", "{root}/videos.txt", "--stride", "0"], "--stride must be an integer >= 1"),
        (["--list", "{root}/videos.txt", "--layer", "pooled"], "--layer must be one of features, logits"),
        (["--list", "{root}/videos.txt", "--per", "clip"], "--per must be one of window, video"),
        (["--list", "{root}/videos.txt", "--out", "{root}/videos.txt"], "is not a directory"),
        (["{root}/clip0.mp4", "--list", "{root}/videos.txt"], "not both"),
        ([], "no videos"),
    ],
)
def test_bad_input_is_one_line(setup, tmp_path, capsys, extra, message):
    root, _, _ = setup
    args = [a.format(root=root) for a in extra]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "o")]
    assert main(["extract", "--checkpoint", str(root / "ckpt"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("xvit extract: error:") and message in err, err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_share_the_list(setup, tmp_path):
    root, good, _ = setup
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
    ]
    cmd += [
        "-m",
        "xvit.cli.main",
        "extract",
        "--list",
        str(root / "videos.txt"),
        "--checkpoint",
        str(root / "ckpt"),
    ]
    cmd += ["--out", str(out), "--no-progress"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode != 0  # the three broken videos: exit code 1 on both ranks
    assert "7 written, 0 already done, 3 failed of 10 videos" in res.stdout, res.stdout + res.stderr
    with open(out / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7
    with open(out / "failed.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
    # list position i went to rank i % 2, each video written once, as one process would
    order = (root / "videos.txt").read_text().splitlines()[1:]
    single = tmp_path / "single"
    assert _extract(root, single) == 1
    for p in good:
        with safe_open(str(out / f"{p.stem}.safetensors"), framework="pt") as f:
            assert f.metadata()["written_by"] == f"rank {order.index(p.name) % 2} of 2"
        a, b = load_file(out / f"{p.stem}.safetensors"), load_file(single / f"{p.stem}.safetensors")
        torch.testing.assert_close(a["features"], b["features"], atol=1e-5, rtol=1e-5)
        assert torch.equal(a["start_frame"], b["start_frame"])
