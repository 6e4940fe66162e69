"""Lists of videos for `xvit extract` and `xvit predict --list`, the output file of each video,
and the atomic writes of their results."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from xvit.data.text import read_user_text, split_fields

__all__ = ["atomic_write_text", "csv_text", "output_names", "read_video_list"]


def read_video_list(path: str | Path) -> list[str]:
    """The videos of a list file: one path per line (blank lines and ``#`` comments skipped).

    A line of an annotation list (``path label``, space or comma separated) gives its path:
    when the whole line names no existing file but its first field does, or its last field
    is a class index. Relative paths are relative to the list file's directory. Raises
    ``FileNotFoundError`` when the list is missing and ``ValueError`` when it names no video.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such list file" if not p.exists() else f"{p}: not a file")
    root = p.parent
    videos: list[str] = []
    for raw in read_user_text(p, ValueError).splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        video = line
        fields = split_fields(line)
        if len(fields) > 1 and not _exists(root, line) and (_exists(root, fields[0]) or fields[-1].isdigit()):
            video = fields[0]
        videos.append(os.path.normpath(video if os.path.isabs(video) else os.path.join(root, video)))
    if not videos:
        raise ValueError(f"{p}: the list names no video (one path per line)")
    return videos


def _exists(root: Path, video: str) -> bool:
    return os.path.exists(video if os.path.isabs(video) else os.path.join(root, video))


def output_names(videos: Sequence[str], suffix: str) -> list[str]:
    """One output file name per video: its file name without extension plus ``suffix``.

    Raises ``ValueError`` naming two videos that would share an output (same name in two
    folders, or the same video twice).
    """
    names, seen = [], {}
    for v in videos:
        name = Path(v).stem + suffix
        if name in seen:
            raise ValueError(
                f"{seen[name]} and {v} would both be written to {name}; "
                "give each video a distinct file name (or run separate lists into separate --out)"
            )
        seen[name] = v
        names.append(name)
    return names


def csv_text(rows: Sequence[Sequence[object]]) -> str:
    """Rows as CSV text (the csv module's quoting, ``\\n`` line ends)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
