"""Decoding: read_frames / VideoReader against a plain full decode of real encoded files."""

from __future__ import annotations

import fractions
import importlib.util
import pickle

import av
import numpy as np
import pytest
import torch
from _video_fixtures import (
    CODECS,
    encode_image,
    frame_pattern,
    full_decode,
    write_frame_folder,
    write_test_video,
    write_video,
)

from xvit.data import (
    FrameFolderReader,
    HDF5FrameReader,
    VideoDecodeError,
    VideoReader,
    open_video,
    read_frames,
    torchcodec_available,
)
from xvit.data.rotation import apply_rotation, rotation_ops

SUFFIX = {"mp4": ".mp4", "webm": ".webm", "mkv": ".mkv", "avi": ".avi", "avi-mpeg4": ".avi"}
VFR_MS = [int(v) for v in np.random.default_rng(3).integers(15, 90, size=60)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    files = {kind: write_test_video(root / f"{kind}{SUFFIX[kind]}", kind) for kind in CODECS}
    files["vfr-mp4"] = write_test_video(root / "vfr.mp4", "mp4", frame_ms=VFR_MS)
    files["vfr-mkv"] = write_test_video(root / "vfr.mkv", "mkv", frame_ms=VFR_MS)
    return files


def as_hwc(frames: torch.Tensor) -> np.ndarray:
    return frames.permute(0, 2, 3, 1).numpy()


def test_fixtures_are_what_they_claim(videos):
    """The mp4 really has B-frames, the VFR file really varies, and frames all differ."""
    with av.open(str(videos["mp4"])) as c:
        pts_in_decode_order = [p.pts for p in c.demux(video=0) if p.size]
    assert pts_in_decode_order != sorted(pts_in_decode_order)  # reordered: B-frames
    with av.open(str(videos["vfr-mp4"])) as c:
        pts = sorted(p.pts for p in c.demux(video=0) if p.size)
    assert len(set(np.diff(pts).tolist())) > 10
    for kind in ("mp4", "webm", "avi"):
        ref = full_decode(videos[kind]).astype(int)
        assert len(ref) == 60
        assert (np.abs(np.diff(ref, axis=0)).mean(axis=(1, 2, 3)) > 10).all()


@pytest.mark.parametrize("kind", list(CODECS) + ["vfr-mp4", "vfr-mkv"])
def test_random_indices_equal_full_decode(videos, kind):
    path = videos[kind]
    ref = full_decode(path)
    rng = np.random.default_rng(0)
    with VideoReader(path, backend="pyav") as reader:
        assert reader.num_frames == len(ref) == 60
        for _ in range(6):  # one open reader, several reads: sorted, unsorted, repeated
            idx = rng.integers(0, 60, size=8).tolist()
            out = reader.read(idx)
            assert out.dtype == torch.uint8 and out.shape == (8, 3, 48, 64)
            assert out.is_contiguous()
            assert np.array_equal(as_hwc(out), ref[idx]), idx
        idx = [59, 0, 0, 31, 12, 59, 1]
        assert np.array_equal(as_hwc(reader.read(idx)), ref[idx])
    dense = list(range(5, 45, 5))
    assert np.array_equal(as_hwc(read_frames(path, torch.tensor(dense))), ref[dense])


def test_reader_metadata(videos):
    with VideoReader(videos["mp4"]) as r:
        assert (r.num_frames, r.height, r.width, len(r)) == (60, 48, 64, 60)
        assert r.fps == pytest.approx(25.0)
        assert r.duration == pytest.approx(2.4)
    with VideoReader(videos["webm"]) as r:  # webm states no frame count
        assert av.open(str(videos["webm"])).streams.video[0].frames == 0
        assert r.num_frames == 60 and r.fps == pytest.approx(25.0)
    for kind in ("vfr-mp4", "vfr-mkv"):
        with VideoReader(videos[kind], backend="pyav") as r:
            expected = np.concatenate([[0], np.cumsum(VFR_MS[:-1])]) / 1000
            np.testing.assert_allclose(r._impl.timestamps, expected, atol=1e-3)
            # the last frame's own duration is not in the file (the encoder guesses it)
            assert expected[-1] < r.duration < expected[-1] + 0.1
            assert r.fps == pytest.approx(60 / r.duration)


def test_threads_give_the_same_frames(videos):
    idx = [3, 40, 17]
    with VideoReader(videos["mp4"], threads=2) as r2, VideoReader(videos["mp4"], threads=1) as r1:
        assert torch.equal(r2.read(idx), r1.read(idx))


class CountingContainer:
    """Wraps a PyAV container and counts the packets handed to the decoder."""

    def __init__(self, container):
        self.container, self.decoded, self.seeks = container, 0, 0

    def seek(self, *args, **kwargs):
        self.seeks += 1
        return self.container.seek(*args, **kwargs)

    def demux(self, *args, **kwargs):
        for packet in self.container.demux(*args, **kwargs):
            self.decoded += packet.size > 0
            yield packet

    def close(self):
        self.container.close()


def test_decodes_only_the_needed_gops(tmp_path):
    """8 frames of a 300-frame video (GOP 25) decode about one GOP per needed keyframe."""
    path = write_video(
        tmp_path / "long.mp4",
        "libx264",
        num_frames=300,
        height=32,
        width=32,
        gop=25,
        options={"bf": "2", "sc_threshold": "0"},
    )
    ref = full_decode(path)
    with VideoReader(path, backend="pyav") as reader:
        counter = CountingContainer(reader._impl._container)
        reader._impl._container = counter
        idx = list(range(200, 264, 8))  # 8 frames, stride 8, across 3 GOPs
        assert np.array_equal(as_hwc(reader.read(idx)), ref[idx])
        # frames 200..256 live in GOPs starting at 200, 225, 250: at most 3 GOPs decoded
        assert counter.decoded <= 3 * 25 + 4, counter.decoded
        assert counter.seeks >= 1
        counter.decoded = 0
        assert np.array_equal(as_hwc(reader.read([290])), ref[[290]])
        assert counter.decoded <= 25 + 4  # one GOP, not the whole video


def test_wrong_stated_frame_count(tmp_path):
    """An AVI whose header claims twice its real length: the real count wins, with a clear error."""
    path = write_test_video(tmp_path / "lying.avi", "avi", num_frames=30)
    data = bytearray(path.read_bytes())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    data[avih + 24 : avih + 28] = (60).to_bytes(4, "little")  # avih.dwTotalFrames
    data[strh + 40 : strh + 44] = (60).to_bytes(4, "little")  # strh.dwLength
    path.write_bytes(bytes(data))
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 60  # the lie is what PyAV states
    ref = full_decode(path)
    assert len(ref) == 30
    with VideoReader(path) as r:
        assert r.num_frames == 30 and r._impl.stated_frames == 60
        assert np.array_equal(as_hwc(r.read([29, 0])), ref[[29, 0]])
        with pytest.raises(
            VideoDecodeError, match=r"lying\.avi.*index 45.*video \(its header claims 60\) has 30 "
        ):
            r.read([10, 45])


# -- rotation -----------------------------------------------------------------------------------


def libavfilter(img: np.ndarray, name: str, arg: str | None = None) -> np.ndarray:
    """Apply one libavfilter filter to an RGB image with PyAV's filter graph (the reference)."""
    graph = av.filter.Graph()
    src = graph.add_buffer(
        width=img.shape[1], height=img.shape[0], format="rgb24", time_base=fractions.Fraction(1, 25)
    )
    filt = graph.add(name, arg) if arg else graph.add(name)
    sink = graph.add("buffersink")
    src.link_to(filt)
    filt.link_to(sink)
    graph.configure()
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
    frame.pts, frame.time_base = 0, fractions.Fraction(1, 25)
    graph.push(frame)
    return graph.pull().to_ndarray(format="rgb24")


@pytest.mark.parametrize(
    "op,filt,arg",
    [
        ("clock", "transpose", "clock"),
        ("cclock", "transpose", "cclock"),
        ("transpose", "transpose", "cclock_flip"),
        ("clock_flip", "transpose", "clock_flip"),
        ("hflip", "hflip", None),
        ("vflip", "vflip", None),
    ],
)
def test_rotation_ops_match_libavfilter(op, filt, arg):
    img = np.random.default_rng(1).integers(0, 256, size=(6, 10, 3), dtype=np.uint8)
    ours = apply_rotation(torch.from_numpy(img).permute(2, 0, 1), [op]).permute(1, 2, 0)
    assert np.array_equal(ours.numpy(), libavfilter(img, filt, arg))


def test_rotation_ops_from_display_matrix():
    one = 1 << 16

    def m(a, b, c, d):
        return np.array([a, b, 0, c, d, 0, 0, 0, 1 << 30], dtype=np.int32)

    # fftools: clockwise theta = -av_display_rotation_get(m); 90 -> transpose=clock
    assert rotation_ops(m(0, one, -one, 0)) == ("clock",)  # what 'rotate=90' (cw) writes
    assert rotation_ops(m(0, -one, one, 0)) == ("cclock",)  # 90 degrees counter-clockwise
    assert rotation_ops(m(-one, 0, 0, -one)) == ("hflip", "vflip")
    assert rotation_ops(m(one, 0, 0, one)) == ()
    assert rotation_ops(m(one, 0, 0, -one)) == ("vflip",)
    assert rotation_ops(None, "90") == ("clock",)  # legacy stream tag, clockwise
    assert rotation_ops(None, None) == ()


@pytest.mark.parametrize("ccw,k", [(90, 1), (-90, -1), (180, 2)])
def test_rotated_file_equals_full_decode_then_rotate(tmp_path, ccw, k):
    path = write_test_video(tmp_path / "rot.mp4", "mp4", num_frames=24, rotation=ccw)
    ref = full_decode(path)  # stored orientation, 48x64
    expected = np.rot90(ref, k=k, axes=(1, 2))  # np.rot90: counter-clockwise for k > 0
    idx = [20, 3, 3, 11]
    with VideoReader(path, backend="pyav") as r:
        assert (r.height, r.width) == expected.shape[1:3]
        assert np.array_equal(as_hwc(r.read(idx)), expected[idx])
    with VideoReader(path, backend="pyav", apply_rotation=False) as r:
        assert (r.height, r.width) == (48, 64)
        assert np.array_equal(as_hwc(r.read(idx)), ref[idx])


# -- frame folders and HDF5 packs ---------------------------------------------------------------


def test_png_frame_folder_is_lossless(tmp_path):
    folder = write_frame_folder(tmp_path / "vid", 12, template="img_{:05d}.png")
    expected = np.stack([frame_pattern(i) for i in range(12)])
    idx = [11, 0, 5, 5]
    out = read_frames(folder, idx)
    assert out.shape == (4, 3, 48, 64) and np.array_equal(as_hwc(out), expected[idx])
    with open_video(folder) as r:
        assert isinstance(r, FrameFolderReader) and r.template == "img_{:05d}.png"
        assert (r.num_frames, r.height, r.width, r.fps) == (12, 48, 64, None)
    with FrameFolderReader(folder, fps=30.0) as r:
        assert r.duration == pytest.approx(0.4)


def test_jpeg_frame_folder_matches_pillow(tmp_path):
    """JPEG decoding through PyAV agrees with an independent decoder (Pillow, via matplotlib)."""
    mpimg = pytest.importorskip("matplotlib.image")
    folder = write_frame_folder(tmp_path / "P01_01", 6, template="frame_{:010d}.jpg")
    with FrameFolderReader(folder) as r:  # Epic-Kitchens naming, detected
        assert r.template == "frame_{:010d}.jpg" and r.num_frames == 6
        out = as_hwc(r.read([4, 1])).astype(int)
    for k, i in enumerate([4, 1]):
        pil = mpimg.imread(folder / f"frame_{i + 1:010d}.jpg").astype(int)
        assert np.abs(out[k] - pil).mean() < 4  # decoders differ in chroma upsampling only
        assert np.abs(out[k] - frame_pattern(i)).mean() < 8


def test_frame_folder_template_and_start_index(tmp_path):
    folder = write_frame_folder(tmp_path / "v", 5, template="{:04d}.png", start_index=0)
    with FrameFolderReader(folder, template="{:04d}.png", start_index=0) as r:
        assert r.num_frames == 5
        assert np.array_equal(as_hwc(r.read([0, 4])), np.stack([frame_pattern(0), frame_pattern(4)]))


def _write_h5(path, frames, codec="png", key="video", opaque=False):
    h5py = pytest.importorskip("h5py")
    blobs = [encode_image(f, codec) for f in frames]
    with h5py.File(path, "w") as f:
        if opaque:  # fixed-size opaque elements, zero-padded after the image's end marker
            size = max(map(len, blobs))
            f.create_dataset(key, data=np.array([b.ljust(size, b"\0") for b in blobs], dtype=f"V{size}"))
        else:
            ds = f.create_dataset(key, (len(blobs),), dtype=h5py.vlen_dtype(np.uint8))
            for i, b in enumerate(blobs):
                ds[i] = np.frombuffer(b, dtype=np.uint8)
    return path


def test_hdf5_pack_vlen_uint8(tmp_path):
    """The released X-ViT layout: one dataset of encoded frames per video file."""
    frames = np.stack([frame_pattern(i) for i in range(10)])
    path = _write_h5(tmp_path / "abc_000010_000020.h5", frames, key="abc_000010_000020")
    idx = [9, 2, 2, 0]
    assert np.array_equal(as_hwc(read_frames(path, idx)), frames[idx])
    with open_video(path, fps=25.0) as r:
        assert isinstance(r, HDF5FrameReader) and r.key == "abc_000010_000020"
        assert (r.num_frames, r.height, r.width, r.duration) == (10, 48, 64, 0.4)


def test_hdf5_pack_opaque_and_jpeg(tmp_path):
    frames = np.stack([frame_pattern(i) for i in range(4)])
    path = _write_h5(tmp_path / "o.h5", frames, opaque=True)
    assert np.array_equal(as_hwc(read_frames(path, [3, 1])), frames[[3, 1]])
    path = _write_h5(tmp_path / "j.hdf5", frames, codec="mjpeg")
    assert np.abs(as_hwc(read_frames(path, [2])).astype(int) - frames[[2]]).mean() < 8


# -- torchcodec (optional) ----------------------------------------------------------------------


def test_torchcodec_absent_is_detected():
    if importlib.util.find_spec("torchcodec") is not None:
        pytest.skip("torchcodec is installed")
    assert torchcodec_available() is False
    with pytest.raises(RuntimeError, match="torchcodec"):
        VideoReader(__file__, backend="torchcodec")


def test_torchcodec_backend_agrees_with_pyav(videos):
    pytest.importorskip("torchcodec")
    if not torchcodec_available():
        pytest.skip("torchcodec installed but cannot decode here")
    idx = [40, 3, 3, 59]
    with (
        VideoReader(videos["mp4"], backend="torchcodec") as tc,
        VideoReader(videos["mp4"], backend="pyav") as pa,
    ):
        assert tc.backend == "torchcodec" and tc.num_frames == pa.num_frames == 60
        a, b = tc.read(idx).int(), pa.read(idx).int()
        assert a.shape == b.shape
        assert (a - b).abs().float().mean() < 3  # same frames; RGB conversion may differ


def test_decode_error_pickles():
    err = pickle.loads(pickle.dumps(VideoDecodeError("/x/y.mp4", "file not found")))
    assert isinstance(err, VideoDecodeError) and str(err) == "/x/y.mp4: file not found"
    assert err.path == "/x/y.mp4" and isinstance(err, RuntimeError)


class LateSeekContainer(CountingContainer):
    """A demuxer with a bad keyframe index: its first seek lands ``late`` time units late."""

    def __init__(self, container, late):
        super().__init__(container)
        self.late = late

    def seek(self, offset, *args, **kwargs):
        self.seeks += 1
        return self.container.seek(offset + (self.late if self.seeks == 1 else 0), *args, **kwargs)


def test_seek_past_the_frame_falls_back_earlier(videos):
    """When the decoder comes out past the wanted frame, the reader seeks earlier: exact."""
    ref = full_decode(videos["mp4"])
    with VideoReader(videos["mp4"], backend="pyav") as reader:
        tb = reader._impl.time_base
        late = LateSeekContainer(reader._impl._container, late=int(1 / (25 * tb)) * 13)
        reader._impl._container = late
        assert np.array_equal(as_hwc(reader.read([14, 2])), ref[[14, 2]])
        assert late.seeks >= 2


def test_unwanted_non_reference_frames_are_not_decoded(videos):
    """skip_frame=NONREF on packets nobody asked for: fewer frames decoded, same pixels."""
    ref = full_decode(videos["mp4"])
    idx = [11, 33, 34, 58]
    outputs = {}
    for skip in (False, True):
        with VideoReader(videos["mp4"], backend="pyav") as reader:
            impl = reader._impl
            impl._skip_nonref = skip
            produced = []
            original = impl._decoded_frames

            def counting(wanted, original=original, produced=produced):
                for frame in original(wanted):
                    produced.append(frame.pts)
                    yield frame

            impl._decoded_frames = counting
            assert np.array_equal(as_hwc(reader.read(idx)), ref[idx])
            outputs[skip] = len(produced)
    assert outputs[True] < outputs[False]
