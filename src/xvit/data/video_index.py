"""The frame index of a video stream: presentation timestamps from one demux pass.

Frame ``i`` of a video is the packet with the ``i``-th smallest presentation timestamp
(:class:`StreamIndex`, built without decoding). Where the packets carry no presentation
timestamps (AVI that is not intra-only) or several frames share one, the order comes from one
full decode instead (:class:`OrderIndex`, set by :meth:`StreamIndex.learn_order`): each
output frame's timestamp is its identity, and the output position of every keyframe is a
seek point. :mod:`xvit.data.video` decodes from these indexes.
"""

from __future__ import annotations

import bisect
from pathlib import Path

import av

from xvit.data.errors import VideoDecodeError

__all__ = ["OrderIndex", "StreamIndex"]


class OrderIndex:
    """Frame order learnt from one full decode, for containers without presentation timestamps.

    ``out_pts[i]``: the timestamp the decoder gave output frame ``i`` (its identity when all are
    distinct). ``key_ord``/``key_seek``: output position and seek timestamp of each keyframe
    whose output frame was identified, sorted by position.
    """

    def __init__(
        self, out_pts: list[int | None], key_ord: list[int], key_seek: list[int], verify: bool
    ) -> None:
        self.out_pts = out_pts
        self.key_ord = key_ord
        self.key_seek = key_seek
        self.key_by_pts = {out_pts[o]: o for o in key_ord}
        self.verify = verify  # out_pts identify the frames: check every frame on the way

    def key_before(self, i: int) -> tuple[int, int | None]:
        """Output position and seek timestamp of the last keyframe at or before frame ``i``
        (position 0 and ``None``, the stream start, when there is none)."""
        k = bisect.bisect_right(self.key_ord, i) - 1
        return (self.key_ord[k], self.key_seek[k]) if k >= 0 else (0, None)


class StreamIndex:
    """Presentation timestamps of every frame of a stream, from one demux pass (no decoding)."""

    def __init__(
        self,
        pts: list[int],
        key_pts: list[int],
        key_dts: dict[int, int],
        start: int,
        last_duration: int,
        stated_frames: int,
        read_error: str | None,
        key_seek_in_order: list[int],
        needs_order: bool,
    ) -> None:
        self.pts = pts  # sorted: frame i has pts[i]
        self.key_pts = key_pts  # sorted pts of keyframe packets
        self.key_dts = key_dts  # keyframe pts -> its dts (demuxers often seek on dts)
        self.start = start  # smallest timestamp of the stream: seeking here starts at the top
        self.pts_to_index = {p: i for i, p in enumerate(pts)}
        self.last_duration = last_duration
        self.stated_frames = stated_frames
        self.read_error = read_error
        self.key_seek_in_order = key_seek_in_order  # seek timestamps of keyframes, demux order
        self.needs_order = needs_order  # packet timestamps are not presentation order
        self.order: OrderIndex | None = None  # set when a full decode gave the real order

    def keyframe_before(self, p: int) -> int | None:
        """The pts of the last keyframe at or before pts ``p`` (``None`` when there is none)."""
        k = bisect.bisect_right(self.key_pts, p) - 1
        return self.key_pts[k] if k >= 0 else None

    @property
    def num_frames(self) -> int:
        return len(self.order.out_pts) if self.order is not None else len(self.pts)

    @classmethod
    def build(
        cls, container: av.container.InputContainer, stream: av.video.VideoStream, path: Path
    ) -> StreamIndex:
        pts, key_pts, key_dts, durations, read_error = [], [], {}, {}, None
        key_seek, start, missing_pts = [], None, False
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard or packet.is_corrupt:
                    continue  # flush packets, dropped-frame markers, pre-roll, torn last packet
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    raise VideoDecodeError(
                        path,
                        "video packets carry no timestamps (raw elementary stream?); remux it into mp4/mkv",
                    )
                missing_pts |= packet.pts is None
                dts = packet.dts if packet.dts is not None else ts
                start = min(ts, dts) if start is None else min(start, ts, dts)
                pts.append(ts)
                durations[ts] = packet.duration or 0
                if packet.is_keyframe:
                    key_pts.append(ts)
                    key_dts[ts] = dts
                    key_seek.append(dts)
        except av.error.FFmpegError as e:  # damaged tail: keep what demuxed cleanly
            read_error = f"{type(e).__name__}: {e}"
        if not pts:
            detail = f" ({read_error})" if read_error else ""
            raise VideoDecodeError(path, f"the video stream has no readable frames{detail}")
        # AVI has no presentation timestamps, and a badly muxed file may give several frames
        # one timestamp: the order then comes from one full decode. Intra-only streams need
        # none (decode order is presentation order).
        avi = "avi" in (container.format.name or "").split(",")
        shared_pts = len(set(pts)) != len(pts)
        needs_order = (avi or missing_pts or shared_pts) and len(key_pts) < len(pts)
        pts.sort()
        key_pts.sort()
        if shared_pts and not needs_order:
            raise VideoDecodeError(
                path, "several frames share one timestamp; cannot index frames exactly (remux the file)"
            )
        return cls(
            pts,
            key_pts,
            key_dts,
            start,
            durations[pts[-1]],
            stream.frames or 0,
            read_error,
            key_seek,
            needs_order,
        )

    def learn_order(self, out_pts: list[int | None], out_key: list[bool]) -> None:
        """Take the frame order of a full decode (``out_pts``/``out_key`` per output frame)."""
        verify = None not in out_pts and len(set(out_pts)) == len(out_pts)
        if out_pts == self.pts and verify:
            return  # the packet timestamps were presentation timestamps after all
        key_ord = [o for o, k in enumerate(out_key) if k]
        if not verify or len(key_ord) != len(self.key_seek_in_order):
            key_ord, key_seek = [], []  # keyframes cannot be matched: decode from the start
        else:  # keyframes come out in decode order, relative to each other
            key_seek = list(self.key_seek_in_order)
        self.order = OrderIndex(out_pts, key_ord, key_seek, verify)
