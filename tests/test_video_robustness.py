"""Broken inputs: every failure is a VideoDecodeError naming the path and the problem."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zlib

import av
import numpy as np
import pytest
from _video_fixtures import (
    full_decode,
    write_frame_folder,
    write_test_video,
    write_video,
)
from test_video_decode import CountingContainer

from xvit.data import VideoDecodeError, VideoReader, open_video, read_frames


@pytest.fixture(scope="module")
def good_mp4(tmp_path_factory):
    return write_test_video(tmp_path_factory.mktemp("good") / "good.mp4", "mp4", num_frames=30)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.mp4"
    with pytest.raises(VideoDecodeError, match=r"nope\.mp4: file not found") as info:
        read_frames(path, [0])
    assert info.value.path == str(path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(VideoDecodeError, match=r"empty\.mp4: file is empty \(0 bytes\)"):
        read_frames(path, [0])


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError, match=r"garbage\.mp4: cannot open as a video"):
        read_frames(path, [0])


def test_truncated_mp4_without_index(tmp_path, good_mp4):
    """moov at the end (the muxer default): a cut file has no index at all."""
    path = tmp_path / "cut.mp4"
    path.write_bytes(good_mp4.read_bytes()[: good_mp4.stat().st_size // 2])
    with pytest.raises(VideoDecodeError, match=r"cut\.mp4: cannot open.*truncated"):
        VideoReader(path)


def test_truncated_faststart_mp4(tmp_path):
    """moov first (faststart): the index lists every frame but the data stops half way."""
    full = write_test_video(
        tmp_path / "fs.mp4", "mp4", num_frames=60, container_options={"movflags": "faststart"}
    )
    with av.open(str(full)) as c:
        assert c.streams.video[0].frames == 60
    ref = full_decode(full)
    path = tmp_path / "fs_cut.mp4"
    path.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    with VideoReader(path) as r:
        n = r.num_frames
        assert 10 < n < 60  # only frames whose data is present are counted
        # frames whose data survived still decode exactly
        head = list(range(n - 1))
        assert np.array_equal(r.read(head).permute(0, 2, 3, 1).numpy(), ref[head])
        with pytest.raises(VideoDecodeError, match=rf"fs_cut\.mp4: frame index 59 .* has {n} "):
            r.read([59])


def test_no_video_stream(tmp_path):
    path = tmp_path / "audio.wav"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.rate = 8000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(VideoDecodeError, match=r"audio\.wav: the file has no video stream"):
        read_frames(path, [0])


def test_index_past_end(good_mp4):
    with pytest.raises(
        VideoDecodeError,
        match=r"good\.mp4: frame index 30 is out of range: the video has 30 "
        r"frames.*shorter than the clip",
    ):
        read_frames(good_mp4, [0, 8, 16, 24, 30])
    with pytest.raises(VideoDecodeError, match=r"good\.mp4: frame index -1"):
        read_frames(good_mp4, [-1])
    with pytest.raises(ValueError, match="no frame indices"):
        read_frames(good_mp4, [])


def test_frame_folder_gap(tmp_path):
    folder = write_frame_folder(tmp_path / "vid", 8, template="img_{:05d}.png")
    (folder / "img_00004.png").unlink()
    assert read_frames(folder, [0, 1, 7]).shape == (3, 3, 48, 64)
    with pytest.raises(
        VideoDecodeError, match=r"img_00004\.png: frame file is missing: a gap in the frame folder"
    ):
        read_frames(folder, [0, 3, 6])


def test_frame_folder_past_end_and_empty(tmp_path):
    folder = write_frame_folder(tmp_path / "vid", 5, template="img_{:05d}.png")
    with pytest.raises(VideoDecodeError, match=r"vid: frame index 7 is out of range: the frame folder has 5"):
        read_frames(folder, [1, 7])
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoDecodeError, match=r"empty: cannot detect the frame file pattern"):
        read_frames(tmp_path / "empty", [0])


def test_corrupt_frame_file(tmp_path):
    folder = write_frame_folder(tmp_path / "vid", 3, template="img_{:05d}.jpg")
    (folder / "img_00002.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(VideoDecodeError, match=r"img_00002\.jpg: not a JPEG or PNG"):
        read_frames(folder, [1])
    (folder / "img_00003.jpg").write_bytes((folder / "img_00001.jpg").read_bytes()[:40])
    with pytest.raises(VideoDecodeError, match=r"img_00003\.jpg: .*(cannot decode|no picture)"):
        read_frames(folder, [2])


def test_hdf5_errors(tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=np.zeros(3, np.uint8))
        f.create_dataset("b", data=np.zeros(3, np.uint8))
    with pytest.raises(VideoDecodeError, match=r"two\.h5: holds 2 datasets.*pass key="):
        open_video(path)
    with pytest.raises(VideoDecodeError, match=r"two\.h5: has no dataset 'c'"):
        open_video(path, key="c")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"definitely not hdf5" * 10)
    with pytest.raises(VideoDecodeError, match=r"bad\.h5: cannot open as HDF5"):
        open_video(bad)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"pip install 'xvit\[hdf5\]'"):
        open_video(path)


@pytest.mark.parametrize(
    "name,content,problem",
    [
        ("notes.mp4", b"hello, this is a text file and not a video\n", "cannot open as a video"),
        ("subs.mp4", b"1\n00:00:01,000 --> 00:00:02,000\nhello\n", "the file has no video stream"),
        ("data.avi", json.dumps({"a": [1, 2, 3]}).encode(), "cannot open as a video"),
        ("head.mkv", b"\x1aE\xdf\xa3" + b"\x00" * 40, "cannot open as a video"),
    ],
)
def test_non_video_files_give_one_line_error(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(VideoDecodeError) as info:
        read_frames(path, [0], backend="pyav")
    message = str(info.value)
    assert message.startswith(f"{path}: {problem}") and "\n" not in message
    assert info.value.path == str(path)


# -- bounded decoding ----------------------------------------------------------------------------


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of one colour: ``width x height`` pixels in a few kB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


BOMB_CHECK = """
import resource, sys, time
from xvit.data import VideoDecodeError, read_frames
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
try:
    read_frames(sys.argv[1], [0], backend="pyav")
    print("decoded")
except VideoDecodeError as e:
    print(e)
print(time.perf_counter() - t)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_image_bomb_fails_fast_without_memory(tmp_path):
    """A 16000x16000 PNG renamed .mp4 (30 kB on disk, 768 MB as RGB) is refused unread."""
    path = tmp_path / "bomb.mp4"
    path.write_bytes(png_bomb(16000, 16000))
    assert path.stat().st_size < 100_000
    out = subprocess.run(
        [sys.executable, "-c", BOMB_CHECK, str(path)], capture_output=True, text=True, timeout=120, check=True
    ).stdout.splitlines()
    message, seconds, grown_mb = out[0], float(out[1]), float(out[2])
    assert message == (
        f"{path}: frame size 16000x16000 (256.0 MP) exceeds the limit of 33.2 MP (data.max_frame_pixels)"
    )
    assert seconds < 0.5 and grown_mb < 100, (seconds, grown_mb)


def test_image_bomb_in_frame_folder(tmp_path):
    folder = write_frame_folder(tmp_path / "vid", 3, template="img_{:05d}.png")
    (folder / "img_00002.png").write_bytes(png_bomb(16000, 16000))
    start = time.perf_counter()
    with pytest.raises(
        VideoDecodeError,
        match=r"img_00002\.png: frame size 16000x16000 "
        r"\(256\.0 MP\) exceeds the limit of 33\.2 MP",
    ):
        read_frames(folder, [0, 1])
    assert time.perf_counter() - start < 0.5
    assert read_frames(folder, [0, 2]).shape == (2, 3, 48, 64)


def test_frame_size_limit_from_the_header(tmp_path, good_mp4):
    """The limit is checked when the file is opened, before any frame is decoded."""
    with pytest.raises(
        VideoDecodeError,
        match=r"good\.mp4: frame size 64x48 \(0\.0031 MP\) "
        r"exceeds the limit of 0\.003 MP "
        r"\(data\.max_frame_pixels\)",
    ):
        VideoReader(good_mp4, backend="pyav", max_frame_pixels=3000)
    with VideoReader(good_mp4, backend="pyav", max_frame_pixels=64 * 48) as r:
        assert r.read([5]).shape == (1, 3, 48, 64)


def test_decode_budget_refuses_before_decoding(tmp_path):
    path = write_video(
        tmp_path / "gop30.mp4", num_frames=60, height=240, width=320, gop=30, options={"sc_threshold": "0"}
    )
    ref = full_decode(path)
    frame_mb = 320 * 240 * 3 / 2**20  # 0.22 MiB: 1 MiB allows 4 frames from a keyframe
    with VideoReader(path, backend="pyav", max_decode_mb=1) as reader:
        counter = CountingContainer(reader._impl._container)
        reader._impl._container = counter
        with pytest.raises(
            VideoDecodeError,
            match=r"gop30\.mp4: reading frames \[20\] needs 21 frames of 320x240 "
            r"decoded \(4\.6 MiB of decoded frames\) exceeds the limit of 1 "
            r"MiB \(data\.max_decode_mb\)",
        ):
            reader.read([20])
        assert counter.decoded == 0
        assert np.array_equal(reader.read([30, 1]).permute(0, 2, 3, 1).numpy(), ref[[30, 1]])
    assert 21 * frame_mb > 1 > 4 * frame_mb
    with VideoReader(path, backend="pyav", max_decode_mb=None) as reader:
        assert reader.read([20]).shape == (1, 3, 240, 320)


def test_avi_index_pass_is_not_a_read_but_reads_stay_bounded(tmp_path):
    """Indexing a B-frame AVI decodes the whole file once (nothing kept); the per-read budget
    must not refuse a long AVI for that, but still bounds what one read decodes."""
    path = write_video(tmp_path / "x264.avi", num_frames=30, height=240, width=320, options={"bf": "2"})
    with VideoReader(path, backend="pyav", max_decode_mb=1) as reader:  # 30 frames: 6.6 MiB
        assert reader.num_frames == 30
        assert reader.read([0]).shape == (1, 3, 240, 320)
        with pytest.raises(
            VideoDecodeError,
            match=r"x264\.avi: .*exceeds the limit of 1 MiB "
            r"\(data\.max_decode_mb\)",
        ):
            reader.read([29])


def test_dataset_counts_an_oversized_video_as_failed(tmp_path, good_mp4):
    """The data.max_* settings reach the reader; a video over them is a failed item."""
    from xvit.data.annotations import Sample
    from xvit.engine.run.config import Config
    from xvit.engine.run.data import build_eval_dataset

    bomb = tmp_path / "bomb.mp4"
    bomb.write_bytes(png_bomb(16000, 16000))
    cfg = Config()
    cfg.data.num_frames, cfg.data.img_size = 4, 32
    data = build_eval_dataset(cfg, [Sample(str(good_mp4), 0), Sample(str(bomb), 1)], (1, 1))
    assert data[0]["video"].shape == (3, 4, 32, 32)
    failed = data[1]
    assert failed["video"] is None and "exceeds the limit of 33.2 MP" in failed["error"]
    cfg.data.max_frame_pixels = 1000
    data = build_eval_dataset(cfg, [Sample(str(good_mp4), 0)], (1, 1))
    assert "frame size 64x48" in data[0]["error"]
