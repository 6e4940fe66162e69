"""`xvit predict --timeline --render OUT.mp4`: the video with the current top label drawn on
every frame (PyAV + Pillow).

The source is decoded once more, in order, and re-encoded as H.264 (yuv420p, constant frame
rate at the source's average rate) into a temporary file renamed over OUT when complete; the
source is only read. Each frame shows the top class of the window whose centre is nearest
to it, with its probability (smoothed when the timeline is). H.264 in yuv420p needs even
sizes: a frame with an odd width or height loses its last column or row.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from xvit.data.sequential import VideoFrames
from xvit.engine.infer.timeline import Timeline, frame_windows
from xvit.engine.run.rundir import atomic_write

__all__ = ["render_timeline"]


def _font(height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(10, height // 18))


def render_timeline(tl: Timeline, source: str | Path, out: str | Path, crf: int = 20) -> Path:
    """Write `source` with each frame's top label into `out` (`.mp4`), atomically."""
    out, source = Path(out), Path(source)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"{out}: the rendered video is written as .mp4")
    if out.resolve() == source.resolve():
        raise ValueError(f"{out}: the rendered video would overwrite its source")
    video = VideoFrames(source)
    which = frame_windows(tl, video.num_frames)
    probs = tl.smoothed()
    top_p, top_c = probs.max(-1)
    labels = [f"{tl._name(int(c))} {float(p):.2f}" for p, c in zip(top_p, top_c)]
    width, height = video.width - video.width % 2, video.height - video.height % 2
    font = _font(height)
    rate = Fraction(video.fps).limit_denominator(1001) if video.fps > 0 else Fraction(25)

    def write(tmp: Path) -> None:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(crf), "preset": "veryfast"}
            for frame in video:
                img = Image.fromarray(frame.rgb[:, :height, :width].permute(1, 2, 0).numpy())
                draw = ImageDraw.Draw(img)
                text = labels[which[frame.index]]
                box = draw.textbbox((4, 4), text, font=font)
                draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(0, 0, 0))
                draw.text((4, 4), text, fill=(255, 255, 255), font=font)
                vf = av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")
                for packet in stream.encode(vf):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    return atomic_write(out, write)
