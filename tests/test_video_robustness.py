"""Broken inputs: every failure is a VideoDecodeError naming the path and the problem."""

from __future__ import annotations

import sys

import av
import numpy as np
import pytest

from _video_fixtures import full_decode, write_frame_folder, write_test_video
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
    full = write_test_video(tmp_path / "fs.mp4", "mp4", num_frames=60,
                            container_options={"movflags": "faststart"})
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
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                           layout="mono")
        frame.rate = 8000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(VideoDecodeError, match=r"audio\.wav: the file has no video stream"):
        read_frames(path, [0])


def test_index_past_end(good_mp4):
    with pytest.raises(VideoDecodeError,
                       match=r"good\.mp4: frame index 30 is out of range: the video has 30 "
                             r"frames.*shorter than the clip"):
        read_frames(good_mp4, [0, 8, 16, 24, 30])
    with pytest.raises(VideoDecodeError, match=r"good\.mp4: frame index -1"):
        read_frames(good_mp4, [-1])
    with pytest.raises(ValueError, match="no frame indices"):
        read_frames(good_mp4, [])


def test_frame_folder_gap(tmp_path):
    folder = write_frame_folder(tmp_path / "vid", 8, template="img_{:05d}.png")
    (folder / "img_00004.png").unlink()
    assert read_frames(folder, [0, 1, 7]).shape == (3, 3, 48, 64)
    with pytest.raises(VideoDecodeError,
                       match=r"img_00004\.png: frame file is missing: a gap in the frame folder"):
        read_frames(folder, [0, 3, 6])


def test_frame_folder_past_end_and_empty(tmp_path):
    folder = write_frame_folder(tmp_path / "vid", 5, template="img_{:05d}.png")
    with pytest.raises(VideoDecodeError,
                       match=r"vid: frame index 7 is out of range: the frame folder has 5"):
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
