"""`xvit predict --stream`: live sources served on loopback by the test (bounded, they stop by
themselves), windows checked against the model run on frames decoded the plain way, a stream
that breaks off, a model too slow for the stream, limits and bad input."""

from __future__ import annotations

import functools
import http.server
import json
import threading
import time

import pytest
import torch
from _model_helpers import randomise
from _video_fixtures import write_video
from test_engine_utils import one_thread  # noqa: F401

import xvit
from xvit.cli.main import main
from xvit.data import read_frames
from xvit.data.stream import LiveSource, is_url
from xvit.data.transforms import EvalTransform
from xvit.engine.infer import stream as engine_stream

pytestmark = pytest.mark.usefixtures("one_thread")

FPS = 25
NUM_FRAMES = 4  # the tiny model's clip: span 4, default stride 2


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A tiny 3-class model and the test videos: MPEG-TS and HLS (60 frames), MP4 (50)."""
    root = tmp_path_factory.mktemp("stream")
    model = xvit.create_model(
        "xvit_tiny_patch16",
        num_classes=3,
        num_frames=NUM_FRAMES,
        img_size=32,
        embed_dim=64,
        depth=2,
        num_heads=2,
        head="avg",
        class_names=["left", "right", "still"],
    )
    randomise(model, seed=0)
    model.save_pretrained(root / "model")
    (root / "www").mkdir()
    write_video(root / "www" / "clip.ts", num_frames=60, fps=FPS, container_format="mpegts")
    write_video(
        root / "www" / "live.m3u8",
        num_frames=60,
        fps=FPS,
        container_format="hls",
        container_options={
            "hls_time": "1",
            "hls_list_size": "0",
            "hls_segment_filename": str(root / "www" / "seg%d.ts"),
        },
    )
    write_video(root / "clip.mp4", num_frames=50, fps=FPS)
    write_video(root / "short.mp4", num_frames=3, fps=FPS)
    (root / "www" / "junk.ts").write_bytes(b"this is not a video\n" * 500)
    return root


class _Server:
    """HTTP on 127.0.0.1 (port 0) in a thread; ``cut``: send only this fraction of each file
    after announcing its full length, then close the connection."""

    def __init__(self, directory, cut: float | None = None) -> None:
        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def copyfile(self, source, outputfile):
                data = source.read()
                outputfile.write(data if cut is None else data[: int(len(data) * cut)])
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory))
        )
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _predict(capsys, *argv: str) -> tuple[int, list[dict], list[str]]:
    rc = main(["predict", *argv])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    return rc, lines, [line for line in err.splitlines() if line.strip()]


def _reference_probs(path, model_dir, start: int) -> torch.Tensor:
    """The model on the window's frames decoded by read_frames (seeking, not streaming)."""
    model = xvit.load_model(model_dir).eval()
    frames = read_frames(path, [start + i for i in range(NUM_FRAMES)])
    clip = EvalTransform(crop_size=32, mean=model.config.mean, std=model.config.std)(frames)
    with torch.inference_mode():
        return model(clip).softmax(-1)[0]


def _windows_and_summary(lines: list[dict]) -> tuple[list[dict], dict]:
    assert lines and lines[-1]["type"] == "summary"
    assert all(r["type"] == "window" for r in lines[:-1])
    return lines[:-1], lines[-1]


def _check_window_grid(windows: list[dict], stride: int = 2) -> None:
    indices = [r["window"] for r in windows]
    assert indices == sorted(set(indices))  # strictly increasing
    for r in windows:
        assert r["start_frame"] == r["window"] * stride
        assert r["end_frame"] == r["start_frame"] + NUM_FRAMES
        assert r["start_s"] == pytest.approx(r["start_frame"] / FPS, abs=1e-6)
        assert r["end_s"] == pytest.approx(r["end_frame"] / FPS, abs=1e-6)
        assert r["latency_ms"] >= 0


def test_http_stream_gives_every_window_as_it_completes(media, capsys):
    with _Server(media / "www") as server:
        t0 = time.monotonic()
        rc, lines, err = _predict(
            capsys,
            "--checkpoint",
            str(media / "model"),
            "--stream",
            server.url("clip.ts"),
            "--realtime",
            "--topk",
            "3",
        )
        wall = time.monotonic() - t0
    assert rc == 0, err
    windows, summary = _windows_and_summary(lines)
    # 60 frames, windows of 4 every 2 frames: starts 0, 2, ..., 56
    assert summary["windows"] + summary["windows_skipped"] == 29
    assert summary["windows"] == len(windows) >= 20
    assert summary["frames_read"] == 60
    assert summary["exit"] == "end of stream"
    assert wall >= 59 / FPS  # paced at the stream's own rate
    _check_window_grid(windows)
    assert summary["latency_ms_median"] <= summary["latency_ms_p95"]
    for r in windows:
        assert sum(p["prob"] for p in r["top"]) == pytest.approx(1.0, abs=1e-5)
    # the windows hold the right frames: the model on frames decoded the plain way agrees
    for r in windows[:: max(1, len(windows) // 5)]:
        ref = _reference_probs(media / "www" / "clip.ts", media / "model", r["start_frame"])
        got = {p["index"]: p["prob"] for p in r["top"]}
        for c in range(3):
            assert got[c] == pytest.approx(float(ref[c]), abs=1e-4)
        assert r["top"][0]["class"] == ["left", "right", "still"][int(ref.argmax())]


def test_hls_playlist_is_read_across_its_segments(media, capsys):
    with _Server(media / "www") as server:
        rc, lines, err = _predict(
            capsys, "--checkpoint", str(media / "model"), "--stream", server.url("live.m3u8"), "--stride", "3"
        )
    assert rc == 0, err
    assert len(list((media / "www").glob("seg*.ts"))) >= 2
    windows, summary = _windows_and_summary(lines)
    assert summary["frames_read"] == 60 and summary["exit"] == "end of stream"
    assert summary["windows"] + summary["windows_skipped"] == 19  # starts 0, 3, ..., 54
    _check_window_grid(windows, stride=3)


def test_stream_that_breaks_off_ends_with_a_summary_and_exit_1(media, capsys):
    with _Server(media / "www", cut=0.5) as server:
        rc, lines, err = _predict(
            capsys, "--checkpoint", str(media / "model"), "--stream", server.url("clip.ts"), "--topk", "1"
        )
    assert rc == 1
    windows, summary = _windows_and_summary(lines)
    assert 0 < summary["frames_read"] < 60
    assert summary["exit"].startswith("read error")
    # one error line; a "cannot keep up" warning may come first when the reader outruns the
    # model (no --realtime here), and nothing else
    errors = [line for line in err if line.startswith("xvit predict: error:")]
    assert len(errors) == 1 and "read error" in errors[0]
    assert all(line.startswith(("xvit predict: error:", "xvit predict: warning:")) for line in err), err
    assert "Traceback" not in "\n".join(err)
    _check_window_grid(windows)


@pytest.mark.parametrize(
    "stride, rate, num_windows",
    [(2, 1, 24), (1, 2, 44)],  # 50 frames: spans of 4 and 7 frames
)
def test_slow_model_skips_windows_and_counts_dropped_frames(
    media, capsys, monkeypatch, stride, rate, num_windows
):
    infer = engine_stream._infer

    def slow(model, clip):
        time.sleep(0.25)  # several frames' time at 25 fps
        return infer(model, clip)

    monkeypatch.setattr(engine_stream, "_infer", slow)
    monkeypatch.setattr(engine_stream, "WARN_EVERY_S", 0.6)
    rc, lines, err = _predict(
        capsys,
        "--checkpoint",
        str(media / "model"),
        "--stream",
        str(media / "clip.mp4"),
        "--realtime",
        "--stride",
        str(stride),
        "--sampling-rate",
        str(rate),
    )
    assert rc == 0, err
    windows, summary = _windows_and_summary(lines)
    run = [r["window"] for r in windows]
    assert run == sorted(set(run))
    for r in windows:
        assert r["start_frame"] == r["window"] * stride
        assert r["end_frame"] == r["start_frame"] + (NUM_FRAMES - 1) * rate + 1
    # every window of the grid is either predicted or skipped
    assert summary["windows"] + summary["windows_skipped"] == num_windows
    assert summary["windows_skipped"] >= num_windows // 3

    # dropped: frames that only skipped windows held (computed here from the run windows)
    def frames(w):
        return {w * stride + i * rate for i in range(NUM_FRAMES)}

    used = set().union(*(frames(w) for w in run))
    skipped = set().union(*(frames(w) for w in range(run[-1]) if w not in run))
    assert summary["frames_dropped"] == len(skipped - used) > 0
    assert summary["latency_ms_median"] >= 250
    first = [e for e in err if "cannot keep up" in e]
    again = [e for e in err if "still behind" in e]
    assert len(first) == 1 and err[0] == first[0]
    assert len(again) >= 1  # repeated periodically (every 0.6 s here) while it is behind
    assert all(e.startswith("xvit predict: warning:") for e in err)


def test_limits_stop_the_stream_early(media, capsys):
    rc, lines, err = _predict(
        capsys,
        "--checkpoint",
        str(media / "model"),
        "--stream",
        str(media / "clip.mp4"),
        "--realtime",
        "--max-windows",
        "3",
    )
    assert rc == 0, err
    windows, summary = _windows_and_summary(lines)
    assert len(windows) == summary["windows"] == 3
    assert summary["exit"] == "max-windows"
    assert summary["seconds"] < 1.5  # the 2-second stream was not read to its end

    rc, lines, err = _predict(
        capsys,
        "--checkpoint",
        str(media / "model"),
        "--stream",
        str(media / "clip.mp4"),
        "--realtime",
        "--max-seconds",
        "0.6",
    )
    assert rc == 0, err
    windows, summary = _windows_and_summary(lines)
    assert summary["exit"] == "max-seconds"
    assert 0.6 <= summary["seconds"] < 1.5
    assert 1 <= len(windows) < 23


def test_stream_shorter_than_one_window_is_a_failed_run(media, capsys):
    rc, lines, err = _predict(
        capsys, "--checkpoint", str(media / "model"), "--stream", str(media / "short.mp4")
    )
    assert rc == 1
    _, summary = _windows_and_summary(lines)
    assert summary["windows"] == 0 and summary["frames_read"] == 3
    assert summary["latency_ms_median"] is None
    assert len(err) == 1 and "no window completed (3 frames read" in err[0]


@pytest.mark.parametrize(
    "source, message",
    [
        ("missing.ts", "404"),
        ("junk.ts", "cannot open as a video source"),
    ],
)
def test_source_that_cannot_be_opened_is_a_one_line_error(media, capsys, source, message):
    with _Server(media / "www") as server:
        rc, lines, err = _predict(
            capsys, "--checkpoint", str(media / "model"), "--stream", server.url(source)
        )
    assert rc == 2
    assert lines == []
    assert len(err) == 1 and err[0].startswith("xvit predict: error:") and message in err[0]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--stream", "NOFILE"], "NOFILE: no such file or device"),
        (["--stream", "/dev/video99"], "/dev/video99: cannot open"),
        (["--realtime"], "--realtime applies to --stream SOURCE only"),
        (["--stream", "CLIP", "--max-windows", "0"], "--max-windows must be an integer >= 1"),
        (["--stream", "CLIP", "--max-seconds", "-1"], "--max-seconds must be > 0"),
        (["--stream", "CLIP", "--stride", "0"], "--stride must be an integer >= 1"),
        (["--stream", "CLIP", "CLIP"], "VIDEO arguments cannot be combined"),
        (["--stream", "CLIP", "--views", "2x3"], "--views cannot be combined"),
        (["--stream", "CLIP", "--plot", "x.png"], "--plot cannot be combined"),
    ],
)
def test_bad_stream_flags_are_one_line_errors(media, capsys, flags, message):
    flags = [str(media / "clip.mp4") if f == "CLIP" else f for f in flags]
    rc, lines, err = _predict(capsys, "--checkpoint", str(media / "model"), *flags)
    assert rc == 2
    assert lines == []
    assert len(err) == 1 and message in err[0]


def test_live_source_frames_and_times(media):
    """The data layer alone: every frame in order, its time, only the frames asked for."""
    reference = read_frames(media / "clip.mp4", list(range(50)))
    source = LiveSource(media / "clip.mp4", keep=lambda i: i % 3 == 0)
    frames = list(source)
    assert source.end_reason == "end of stream" and not source.failed
    assert source.frames_read == 50
    assert [f.index for f in frames] == list(range(0, 50, 3))
    for f in frames:
        assert f.time == pytest.approx(f.index / FPS, abs=1e-6)
        assert torch.equal(f.image, reference[f.index])
    with pytest.raises(RuntimeError, match="iterated once"):
        iter(source)
    assert is_url("http://127.0.0.1:8000/x.ts") and is_url("rtsp://cam/stream")
    assert not is_url("/dev/video0") and not is_url("clip.mp4")


def test_ctrl_c_ends_with_the_summary_and_exit_130(media, capsys, monkeypatch):
    infer, calls = engine_stream._infer, []

    def interrupted_on_the_third_window(model, clip):
        calls.append(1)
        if len(calls) == 4:  # the warm-up pass, then windows
            raise KeyboardInterrupt
        return infer(model, clip)

    monkeypatch.setattr(engine_stream, "_infer", interrupted_on_the_third_window)
    rc, lines, err = _predict(
        capsys, "--checkpoint", str(media / "model"), "--stream", str(media / "clip.mp4"), "--realtime"
    )
    assert rc == 130
    windows, summary = _windows_and_summary(lines)
    assert len(windows) == summary["windows"] == 2
    assert summary["exit"] == "interrupted"
    assert err == ["xvit predict: interrupted"]
