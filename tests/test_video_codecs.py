"""Codec matrix: every container x codec PyAV writes here, read exactly at first, middle, last.

The reference is a plain full decode (``for frame in container.decode(video=0)``): frame ``i``
is the ``i``-th frame the decoder puts out. AVI stores frames in decode order without
presentation timestamps; the XviD-style "packed B-frames" AVI is built by hand from PyAV's
MPEG-4 Part 2 packets (P- and B-VOP in one chunk, then an N-VOP placeholder chunk, and the
``DivX503b1393p`` user data that marks a packed stream), because no encoder here writes it.
"""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest
from _video_fixtures import frame_pattern, full_decode, write_video
from test_video_decode import CountingContainer

from xvit.data import VideoReader, read_frames

H = W = 64
N = 60
VFR_MS = [int(v) for v in np.random.default_rng(5).integers(15, 90, size=N)]
SHARED_MS = [0 if i % 5 == 3 else 40 for i in range(N)]

# name -> (suffix, codec, pix_fmt, encoder options, extra write_video arguments)
MATRIX = {
    "mp4-h264-bf2": (".mp4", "libx264", "yuv420p", {"bf": "2"}, {}),
    "mp4-h264-nob": (".mp4", "libx264", "yuv420p", {"bf": "0"}, {}),
    "mkv-h264-bf2": (".mkv", "libx264", "yuv420p", {"bf": "2"}, {}),
    "avi-h264-bf2": (".avi", "libx264", "yuv420p", {"bf": "2"}, {}),
    "avi-h264-nob": (".avi", "libx264", "yuv420p", {"bf": "0"}, {}),
    "mp4-hevc-bf2": (".mp4", "libx265", "yuv420p", {"x265-params": "bframes=2:log-level=none"}, {}),
    "mp4-mpeg4-bf2": (".mp4", "mpeg4", "yuv420p", {"bf": "2"}, {}),
    "mkv-mpeg4-bf2": (".mkv", "mpeg4", "yuv420p", {"bf": "2"}, {}),
    "avi-mpeg4-bf2": (".avi", "mpeg4", "yuv420p", {"bf": "2"}, {}),
    "avi-mpeg4-bf1-closedgop": (
        ".avi",
        "mpeg4",
        "yuv420p",
        {"bf": "1", "flags": "+cgop", "sc_threshold": "1000000000"},
        {},
    ),
    "ts-mpeg2-bf2": (".ts", "mpeg2video", "yuv420p", {"bf": "2"}, {}),
    "avi-mjpeg": (".avi", "mjpeg", "yuvj420p", {}, {}),
    "mkv-mjpeg": (".mkv", "mjpeg", "yuvj420p", {}, {}),
    "webm-vp9": (".webm", "libvpx-vp9", "yuv420p", {"deadline": "realtime", "cpu-used": "8"}, {}),
    "webm-vp8": (".webm", "libvpx", "yuv420p", {"deadline": "realtime", "cpu-used": "8"}, {}),
    "mkv-vfr-h264-bf2": (".mkv", "libx264", "yuv420p", {"bf": "2"}, {"frame_ms": VFR_MS}),
    "mp4-vfr-h264-bf2": (".mp4", "libx264", "yuv420p", {"bf": "2"}, {"frame_ms": VFR_MS}),
    # a badly muxed file (a 29.97 fps source written at 25): some frames share a timestamp
    "mkv-sharedpts-h264-bf2": (".mkv", "libx264", "yuv420p", {"bf": "2"}, {"frame_ms": SHARED_MS}),
}
CASES = list(MATRIX) + ["avi-mpeg4-packed"]

# -- XviD-style packed B-frames ------------------------------------------------------------------

VOP, USER_DATA, VOL = b"\x00\x00\x01\xb6", b"\x00\x00\x01\xb2", b"\x00\x00\x01\x20"


class _Bits:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def read(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = value << 1 | (self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1
            self.pos += 1
        return value


def _time_increment_bits(vol: bytes) -> int:
    """Bits of vop_time_increment, from the VOL header (ISO 14496-2, 6.2.3)."""
    b = _Bits(vol, 32)
    b.read(9)  # random_accessible_vol, video_object_type_indication
    if b.read(1):  # is_object_layer_identifier
        b.read(7)
    if b.read(4) == 15:  # aspect_ratio_info: extended PAR
        b.read(16)
    if b.read(1):  # vol_control_parameters
        b.read(3)
        if b.read(1):  # vbv_parameters
            b.read(79)
    assert b.read(2) == 0  # rectangular shape
    b.read(1)
    return max(1, (b.read(16) - 1).bit_length())  # vop_time_increment_resolution


def _n_vop(b_vop: bytes, nbits: int) -> bytes:
    """A not-coded P-VOP (vop_coded=0) with the timing of ``b_vop``: XviD's placeholder."""
    b = _Bits(b_vop, 32)
    b.read(2)
    seconds = 0
    while b.read(1):
        seconds += 1
    b.read(1)
    increment = b.read(nbits)
    bits = "01" + "1" * seconds + "0" + "1" + format(increment, f"0{nbits}b") + "1" + "0"
    bits += "0" + "1" * ((-len(bits) - 1) % 8)  # stuffing to the byte boundary
    return VOP + int(bits, 2).to_bytes(len(bits) // 8, "big")


def write_packed_bframes_avi(path, num_frames: int = N, height: int = H, width: int = W, gop: int = 12):
    """An AVI as XviD writes it with packed bitstream: chunk = P-VOP + the B-VOP after it, then
    an N-VOP chunk, so that every chunk is one display slot."""
    ctx = av.CodecContext.create("mpeg4", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base, ctx.framerate = fractions.Fraction(1, 25), 25
    ctx.gop_size, ctx.max_b_frames = gop, 1
    packets = []
    for i in range(num_frames):
        frame = av.VideoFrame.from_ndarray(frame_pattern(i, height, width), format="rgb24")
        frame.pts = i
        packets += [(bytes(p), p.is_keyframe, p.pts) for p in ctx.encode(frame)]
    packets += [(bytes(p), p.is_keyframe, p.pts) for p in ctx.encode(None)]
    first = packets[0][0]
    nbits = _time_increment_bits(first[first.find(VOL) :])
    chunks, k = [], 0
    while k < len(packets):
        data, key, pts = packets[k]
        if key:  # mark the stream as packed, as XviD and DivX 5 do
            at = data.find(VOP)
            data = data[:at] + USER_DATA + b"DivX503b1393p" + data[at:]
        bs = []  # B-VOPs that follow this anchor in decode order
        while k + 1 + len(bs) < len(packets) and packets[k + 1 + len(bs)][2] < pts:
            bs.append(packets[k + 1 + len(bs)][0])
        chunks.append((data + b"".join(bs), key))
        chunks += [(_n_vop(b, nbits), False) for b in bs]
        k += 1 + len(bs)
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for n, (data, key) in enumerate(chunks):
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts = stream, n, n
            packet.time_base, packet.is_keyframe = fractions.Fraction(1, 25), key
            out.mux(packet)
    return path


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("codecs")
    out = {}
    for name, (suffix, codec, pix_fmt, options, extra) in MATRIX.items():
        if codec not in av.codecs_available:
            continue
        out[name] = write_video(
            root / f"{name}{suffix}",
            codec,
            num_frames=N,
            height=H,
            width=W,
            gop=12,
            pix_fmt=pix_fmt,
            options=options,
            **extra,
        )
    out["avi-mpeg4-packed"] = write_packed_bframes_avi(root / "packed.avi")
    return out


def as_hwc(frames):
    return frames.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("name", CASES)
def test_first_middle_last_equal_full_decode(files, name):
    if name not in files:
        pytest.skip(f"{MATRIX[name][1]} encoder not in this FFmpeg build")
    path = files[name]
    ref = full_decode(path)
    assert len(ref) == N
    # the reference is the encoded clip in display order (nearest pattern = own number)
    patterns = np.stack([frame_pattern(i, H, W) for i in range(N)]).astype(np.int16)
    for i in (0, N // 2, N - 1):
        err = np.abs(patterns - ref[i].astype(np.int16)).mean(axis=(1, 2, 3))
        assert err.argmin() == i
    with VideoReader(path, backend="pyav") as reader:
        assert reader.num_frames == N
        for i in (0, N // 2, N - 1):  # each from a fresh seek
            assert np.array_equal(as_hwc(reader.read([i])), ref[[i]]), i
        idx = [N - 1, 0, N // 2, 7, 41, 41, 13]
        assert np.array_equal(as_hwc(reader.read(idx)), ref[idx])
    every = list(range(N))
    assert np.array_equal(as_hwc(read_frames(path, every, backend="pyav")), ref)


def test_b_frame_fixtures_reorder(files):
    """The B-frame files really reorder frames; in AVI the container does not say so."""
    for name in ("mp4-h264-bf2", "mkv-h264-bf2", "mp4-mpeg4-bf2", "ts-mpeg2-bf2"):
        with av.open(str(files[name])) as c:
            pts = [p.pts for p in c.demux(video=0) if p.size]
        assert pts != sorted(pts), name
    for name in ("avi-h264-bf2", "avi-mpeg4-packed"):
        with av.open(str(files[name])) as c:
            pts = [p.pts for p in c.demux(video=0) if p.size]
        with av.open(str(files[name])) as c:
            out = [f.pts for f in c.decode(video=0)]
        assert pts == sorted(pts), name  # the demuxer's timestamps are in decode order...
        assert out != sorted(out), name  # ...but the decoder puts frames out reordered


def test_packed_fixture_is_packed(files):
    """FFmpeg's own unpacker (mpeg4_unpack_bframes) recognises the fixture as packed: it
    clears the 'p' of the DivX marker and splits every P+B chunk, putting the B-VOP where the
    N-VOP placeholder was. The fixture is what XviD writes, not plain MPEG-4."""
    with av.open(str(files["avi-mpeg4-packed"])) as c:
        stream = c.streams.video[0]
        packets = [p for p in c.demux(stream) if p.size]
        vops = [bytes(p).count(VOP) for p in packets]  # before the filter takes the data
        marker = bytes(packets[0])
        bsf = av.BitStreamFilterContext("mpeg4_unpack_bframes", stream)
        unpacked = [p for packet in packets for p in bsf.filter(packet)] + list(bsf.filter(None))
    assert len(packets) == N and vops.count(2) >= N // 3 and b"DivX503b1393p" in marker
    assert len(unpacked) == N and [bytes(p).count(VOP) for p in unpacked] == [1] * N
    assert b"DivX503b1393p" not in bytes(unpacked[0])


@pytest.mark.parametrize("name", ["avi-h264-bf2", "avi-mpeg4-packed"])
def test_avi_seeks_from_a_keyframe(files, name):
    """AVI frames come from the keyframe before them, not from a decode of the whole file."""
    ref = full_decode(files[name])
    with VideoReader(files[name], backend="pyav") as reader:
        counter = CountingContainer(reader._impl._container)
        reader._impl._container = counter
        for i in (50, 35, 59):
            counter.decoded = 0
            assert np.array_equal(as_hwc(reader.read([i])), ref[[i]])
            assert counter.decoded <= 14, (i, counter.decoded)  # GOP 12 plus reorder delay


def test_well_behaved_containers_are_not_fully_decoded_to_index(files, monkeypatch):
    """mp4/mkv/webm are indexed from packet timestamps alone (no decode when opened)."""
    from xvit.data import video

    def fail(*args, **kwargs):
        raise AssertionError("the index decoded the video")

    monkeypatch.setattr(video._PyAVReader, "_learn_order", fail)
    for name in ("mp4-h264-bf2", "mkv-vfr-h264-bf2", "webm-vp9", "avi-mjpeg"):
        video._INDEX_CACHE.clear()
        with VideoReader(files[name], backend="pyav") as reader:
            assert reader.num_frames == N
