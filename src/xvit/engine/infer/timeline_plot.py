"""`xvit predict --timeline --plot FILE.png`: the top classes' probabilities over time."""

from __future__ import annotations

from pathlib import Path

from xvit.engine.infer.timeline import Timeline
from xvit.engine.run.rundir import atomic_write

__all__ = ["MAX_PLOTTED_CLASSES", "plot_timeline"]

# More lines than this are unreadable; the plot shows the video-level top classes up to it.
MAX_PLOTTED_CLASSES = 10


def plot_timeline(tl: Timeline, out: str | Path) -> Path:
    """Draw the (smoothed) probability of the video-level top-k classes (at most
    `MAX_PLOTTED_CLASSES`) at each window's centre time; write a PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"{out}: the plot is written as a .png file")
    probs = tl.smoothed()
    classes = [e["index"] for e in tl.entries(tl.video_probs())][:MAX_PLOTTED_CLASSES]
    centres = [(tl.seconds(s) + tl.seconds(e)) / 2 for s, e in zip(tl.starts, tl.ends)]
    fig, ax = plt.subplots(figsize=(10, 3.8))
    for c in classes:
        ax.plot(centres, probs[:, c].tolist(), marker="." if len(centres) < 60 else None, label=tl._name(c))
    ax.set_xlim(0, max(tl.seconds(len(tl.times)), 1e-3))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("time (s), window centres")
    ax.set_ylabel("probability" + (" (sigmoid)" if tl.multi_label else ""))
    smooth = f", smoothed over {tl.smooth} windows" if tl.smooth > 1 else ""
    ax.set_title(
        f"{Path(tl.path).name}: {len(tl.starts)} windows of {tl.window_frames} frames, "
        f"stride {tl.stride}{smooth}" + ("" if tl.complete else " (incomplete)"),
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)
    return out
