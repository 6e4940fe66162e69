"""`xvit predict VIDEO --timeline`: windows along a real encoded video, checked against
reading each window with `read_frames` and running the model on it; JSON / CSV / plot /
rendered video; short, broken and bad input."""

from __future__ import annotations

import csv
import json

import av
import pytest
import torch
from _model_helpers import tiny_segmented_xvit
from _video_fixtures import write_video
from test_engine_utils import one_thread  # noqa: F401

import xvit
from xvit.cli.main import main
from xvit.data import read_frames
from xvit.data.errors import VideoDecodeError
from xvit.data.sampling import DenseSampler
from xvit.data.sequential import VideoFrames
from xvit.data.transforms import EvalTransform
from xvit.engine.infer.timeline import TimelineOptions, compute_timeline, frame_windows, smooth_probs
from xvit.engine.run.saved import load_run

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["walk", "run", "jump", "sit", "wave"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny X-ViT (8 frames in two segments of 4, tiled temporal embedding) with random
    weights, a 60-frame video and a 5-frame one."""
    root = tmp_path_factory.mktemp("timeline")
    torch.manual_seed(0)
    model = tiny_segmented_xvit(CLASSES)
    with torch.no_grad():
        model.temp_embed.normal_(std=0.5)
        model.patch_embed.proj.weight.mul_(30)  # so that the pictures move the output
        classifier = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1]
        classifier.weight.normal_(std=2.0)
    model.save_pretrained(root / "model")
    video = write_video(root / "long.mp4", num_frames=60, height=48, width=64, fps=25)
    short = write_video(root / "short.mp4", num_frames=5, height=48, width=64, fps=25)
    return root, root / "model", video, short


def reference_probs(ckpt, video, starts, rate=1, short=False):
    """Each window read with `read_frames` (seeking), the eval transform and the model."""
    model, _ = load_run(ckpt)
    model.eval()
    mc = model.config
    transform = EvalTransform(crop_size=mc.img_size, resize=mc.img_size, mean=mc.mean, std=mc.std)
    n = VideoFrames(video).num_frames
    out = []
    for s in starts:
        idx = DenseSampler(8, rate).views(n, 1)[0].tolist() if short else [s + j * rate for j in range(8)]
        with torch.no_grad():
            out.append(model(transform(read_frames(video, idx))).softmax(-1)[0])
    return torch.stack(out)


@pytest.mark.parametrize(
    ("rate", "stride", "reuse"), [(1, None, True), (1, 3, True), (2, 8, True), (1, 4, False)]
)
def test_windows_equal_reading_each_window(files, rate, stride, reuse):
    _, ckpt, video, _ = files
    model, cfg = load_run(ckpt)
    model.eval()
    notes = []
    opts = TimelineOptions(stride=stride, sampling_rate=rate, batch_size=3, reuse=reuse)
    tl = compute_timeline(model, cfg, video, opts, torch.device("cpu"), notify=notes.append)
    span, step = 7 * rate + 1, stride or 4 * rate  # WindowSpec.span: first to last frame
    assert tl.starts == list(range(0, 60 - (8 - 1) * rate, step))
    assert tl.ends == [min(s + span, 60) for s in tl.starts]
    ref = reference_probs(ckpt, video, tl.starts, rate)
    assert (tl.probs - ref).abs().max().item() <= 1e-5
    assert torch.equal(tl.probs.argmax(-1), ref.argmax(-1))
    assert (ref[1:] - ref[:-1]).abs().max().item() > 1e-3  # the windows do differ
    if reuse and step % (4 * rate) == 0:
        assert tl.reuse_unit == 4 and tl.reused > 0 and not notes
        assert tl.computed == len({s + o for s in tl.starts for o in (0, 4 * rate)})
    elif reuse:
        assert tl.reuse_unit is None and len(notes) == 1 and "not a multiple" in notes[0]
    else:
        assert tl.reuse_unit is None and not notes
    assert torch.allclose(tl.video_probs(), ref.mean(0), atol=1e-6)


def test_json_csv_plot_and_render(files, capsys):
    root, ckpt, video, _ = files
    out = root / "cli"
    rc = main(
        [
            "predict",
            str(video),
            "--checkpoint",
            str(ckpt),
            "--timeline",
            "--stride",
            "4",
            "--smooth",
            "3",
            "--topk",
            "2",
            "--out",
            str(out / "t.json"),
            "--plot",
            str(out / "t.png"),
            "--render",
            str(out / "t.mp4"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert main(["predict", str(video), "--checkpoint", str(ckpt), "--timeline", "--stride", "4",
                 "--smooth", "3", "--topk", "2", "--out", str(out / "t.csv")]) == 0  # fmt: skip
    data = json.loads((out / "t.json").read_text())
    starts = list(range(0, 53, 4))
    assert [w["start_frame"] for w in data["windows"]] == starts
    assert [w["end_frame"] for w in data["windows"]] == [s + 8 for s in starts]
    assert [w["start_s"] for w in data["windows"]] == pytest.approx([s / 25 for s in starts])
    assert [w["end_s"] for w in data["windows"]] == pytest.approx([(s + 8) / 25 for s in starts])
    assert data["complete"] and not data["padded"] and data["smooth"] == 3
    assert data["reuse"]["segment_frames"] == 4 and data["reuse"]["segments_reused"] > 0
    ref = reference_probs(ckpt, video, starts)
    smoothed = smooth_probs(ref, 3)
    for w, p in zip(data["windows"], smoothed):
        top = p.topk(2)
        assert [e["index"] for e in w["top"]] == top.indices.tolist()
        assert [e["class"] for e in w["top"]] == [CLASSES[i] for i in top.indices.tolist()]
        assert [e["prob"] for e in w["top"]] == pytest.approx(top.values.tolist(), abs=2e-6)
    video_top = ref.mean(0).topk(2)
    assert [e["index"] for e in data["video_result"]] == video_top.indices.tolist()
    # CSV: the same windows, then the video-level row
    rows = list(csv.DictReader((out / "t.csv").open()))
    assert len(rows) == len(starts) + 1 and rows[-1]["window"] == "video"
    for row, w in zip(rows, data["windows"]):
        assert int(row["start_frame"]) == w["start_frame"] and int(row["end_frame"]) == w["end_frame"]
        assert float(row["start_s"]) == pytest.approx(w["start_s"])
        assert row["top1_class"] == w["top"][0]["class"]
        assert float(row["top2_prob"]) == pytest.approx(w["top"][1]["prob"])
    assert rows[-1]["top1_class"] == data["video_result"][0]["class"]
    assert (out / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with av.open(str(out / "t.mp4")) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 60 and (frames[0].width, frames[0].height) == (64, 48)
    # the label box is drawn in the top-left corner; the rest of the picture is the source's
    src = read_frames(video, [30])[0].permute(1, 2, 0).float()
    drawn = torch.from_numpy(frames[30].to_ndarray(format="rgb24")).float()
    assert (drawn[30:, :] - src[30:, :]).abs().mean() < 6
    assert (drawn[:12, :30] - src[:12, :30]).abs().mean() > 20
    assert not list(out.glob(".*tmp"))


def test_render_labels_follow_the_nearest_window_centre(files):
    _, ckpt, video, _ = files
    model, cfg = load_run(ckpt)
    tl = compute_timeline(model.eval(), cfg, video, TimelineOptions(stride=4), torch.device("cpu"))
    which = frame_windows(tl, 60)
    centres = [(s + e - 1) / 2 for s, e in zip(tl.starts, tl.ends)]
    for f in range(60):
        best = min(range(len(centres)), key=lambda i: (abs(centres[i] - f), i))
        assert which[f] == best


def test_short_video_gets_one_padded_window(files, capsys):
    root, ckpt, _, short = files
    model, cfg = load_run(ckpt)
    notes = []
    tl = compute_timeline(model.eval(), cfg, short, TimelineOptions(), torch.device("cpu"), notes.append)
    assert tl.padded and tl.starts == [0] and tl.ends == [5] and len(notes) == 1
    assert "shorter than one window" in notes[0]
    ref = reference_probs(ckpt, short, [0], short=True)
    assert (tl.probs - ref).abs().max().item() <= 1e-5
    out = root / "short.json"
    assert main(["predict", str(short), "--checkpoint", str(ckpt), "--timeline", "--out", str(out)]) == 0
    assert "shorter than one window" in capsys.readouterr().err
    assert json.loads(out.read_text())["padded"] is True


def test_smoothing_is_a_centred_moving_average():
    probs = torch.rand(7, 3)
    for k in (1, 2, 3, 4, 9):
        lo, hi = (k - 1) // 2, k // 2
        ref = torch.stack([probs[max(i - lo, 0) : i + hi + 1].mean(0) for i in range(7)])
        assert torch.allclose(smooth_probs(probs, k), ref, atol=1e-6)


def test_video_breaking_part_way_keeps_the_windows_done(files, capsys, monkeypatch):
    root, ckpt, video, _ = files
    real_iter = VideoFrames.__iter__

    def breaks(self):
        for frame in real_iter(self):
            if frame.index == 30:
                raise VideoDecodeError(self.path, "the decoder stopped after 30 of 60 frames")
            yield frame

    monkeypatch.setattr(VideoFrames, "__iter__", breaks)
    out = root / "broken"
    args = ["predict", str(video), "--checkpoint", str(ckpt), "--timeline", "--stride", "4"]
    rc = main([*args, "--out", str(out / "t.json"), "--plot", str(out / "t.png")])
    err = capsys.readouterr().err
    assert rc == 1 and "stopped after 30 of 60" in err and "t.partial.json" in err
    data = json.loads((out / "t.partial.json").read_text())
    assert not data["complete"] and "stopped after 30" in data["error"]
    # every window whose frames were all decoded (its last frame < 30) is there
    assert [w["start_frame"] for w in data["windows"]] == list(range(0, 23, 4))
    assert not (out / "t.json").exists() and not (out / "t.png").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stride", "0"], "--stride must be an integer >= 1"),
        (["--smooth", "0"], "--smooth must be an integer >= 1"),
        (["--sampling-rate", "0"], "--sampling-rate must be an integer >= 1"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),  # not the default 8
        (["--out", "t.txt"], "expected a .json or .csv file"),
        (["--plot", "t.jpg"], "expected a .png file"),
        (["--render", "t.avi"], "expected a .mp4 file"),
        (["--views", "2x1"], "do not apply to --timeline"),
    ],
)
def test_bad_options_are_one_line_errors(files, capsys, extra, message):
    _, ckpt, video, _ = files
    rc = main(["predict", str(video), "--checkpoint", str(ckpt), "--timeline", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_bad_videos_are_one_line_errors(files, capsys):
    root, ckpt, video, _ = files
    broken = root / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 3)
    cases = [
        ([str(root / "missing.mp4")], "file not found"),
        ([str(broken)], "cannot open as a video"),
        ([str(video), str(video)], "--timeline takes one VIDEO"),
        ([str(video), "--render", str(video.with_suffix(".mp4"))], "would overwrite the video"),
    ]
    for argv, message in cases:
        rc = main(["predict", *argv, "--checkpoint", str(ckpt), "--timeline"])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert video.stat().st_size > 0


def test_a_model_mixing_across_the_clip_is_recomputed_and_says_why_once(files, capsys):
    root, _, video, _ = files
    torch.manual_seed(0)
    model = xvit.create_model(
        "xvit_st_tiny_patch16", num_frames=8, num_classes=3, embed_dim=32, depth=1, num_heads=2, img_size=32
    )
    model.save_pretrained(root / "summary")
    args = ["predict", str(video), "--checkpoint", str(root / "summary"), "--timeline", "--batch-size", "2"]
    assert main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("every window is recomputed") == 1
    assert "summary tokens span the whole clip" in captured.err
    data = json.loads(captured.out)
    assert data["reuse"]["segment_frames"] is None and "summary" in data["reuse"]["why_not"]
    assert len(data["windows"]) == len(range(0, 53, 4))


def test_one_window_grid_for_timelines_streams_and_extraction():
    """At a sampling rate above 1 the three agree: 15 frames first to last at T=8, rate 2,
    default stride 8 (a multiple of the rate, so successive windows share frames)."""
    from xvit.engine.infer.window_clips import WindowSpec, default_stride

    assert [default_stride(8, r) for r in (1, 2, 4)] == [4, 8, 16]
    assert default_stride(1, 3) == 1 and default_stride(5, 2) == 4
    spec = WindowSpec(8, 2, default_stride(8, 2))
    assert spec.span == 15 and spec.starts(40) == [0, 8, 16, 24]
    assert set(spec.frames(0)) & set(spec.frames(8))  # shared frames on one grid
