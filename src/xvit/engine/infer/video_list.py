"""Lists of videos for `xvit extract` and `xvit predict --list`, the output file of each video,
and the atomic writes of their results."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from xvit.data.text import read_user_lines, split_fields

__all__ = [
    "ListedVideo",
    "atomic_write_text",
    "csv_text",
    "output_names",
    "read_listed_videos",
    "read_video_list",
]


class ListedVideo(NamedTuple):
    """One video of a list file: its path, the label texts its line gives (none, one, or a
    multi-label list) and the line number."""

    path: str
    labels: tuple[str, ...]
    line: int


def read_video_list(path: str | Path) -> list[str]:
    """The videos of a list file (see :func:`read_listed_videos`), their paths only."""
    return [v.path for v in read_listed_videos(path)]


def read_listed_videos(path: str | Path) -> list[ListedVideo]:
    """The videos of a list file: one path per line (blank lines and ``#`` comments skipped).

    A line of an annotation list (``path label``, ``path,label`` with CSV quoting, ``path
    label1,label2``, mmaction2's ``dir num_frames label``) gives its path and labels: the
    path is the part of the line that names an existing file (so paths and class names may
    hold spaces), else the part before integer labels; a line whose whole text and a part of
    it both name files is ambiguous and refused. Relative paths are relative to the list
    file's directory. Raises ``FileNotFoundError`` when the list is missing and ``ValueError``
    when it names no video or a line cannot be read (the file and line named).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such list file" if not p.exists() else f"{p}: not a file")
    root = p.parent
    videos: list[ListedVideo] = []
    for lineno, raw in enumerate(read_user_lines(p, ValueError), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        video, labels = _split_line(root, line, p, lineno)
        path_ = os.path.normpath(video if os.path.isabs(video) else os.path.join(root, video))
        videos.append(ListedVideo(path_, labels, lineno))
    if not videos:
        raise ValueError(f"{p}: the list names no video (one path per line)")
    return videos


def _split_line(root: Path, line: str, file: Path, lineno: int) -> tuple[str, tuple[str, ...]]:
    """(path, label texts) of one non-blank line: the one part of it that names an existing
    file, else the part before integer labels; two parts that both name files are refused."""
    found: dict[str, tuple[str, ...]] = {}
    if _exists(root, line):
        found[line] = ()
    for m in re.finditer(r"\s+", line):  # a path, then labels (which may hold spaces)
        if _exists(root, line[: m.start()]):
            found.setdefault(line[: m.start()], _label_texts(line[m.end() :]))
    fields = split_fields(line, file=file, lineno=lineno) if "," in line else []
    if len(fields) > 1 and _exists(root, fields[0]):
        found.setdefault(fields[0], (fields[-1],))
    if len(found) > 1:
        a, b = list(found)[:2]
        raise ValueError(
            f"{file}:{lineno}: ambiguous: {a!r} and {b!r} are both files; quote the path "
            f'("path",label) or rename one'
        )
    if found:
        return next(iter(found.items()))
    # no file found: the labels are integers at the end of the line
    tokens = line.split()
    if len(tokens) > 1 and all(_is_int(t) for t in tokens[-1].split(",")):
        return line[: line.rindex(tokens[-1])].strip(), tuple(t.strip() for t in tokens[-1].split(","))
    if len(fields) > 1 and _is_int(fields[-1]):
        return fields[0], (fields[-1],)
    return line, ()


def _label_texts(rest: str) -> tuple[str, ...]:
    """The labels after a video's path: ``label``, ``label1,label2`` or ``num_frames label``."""
    rest = rest.strip().lstrip(",").strip()
    if re.fullmatch(r"\d+\s+\S+", rest):  # mmaction2 rawframes: dir num_frames label
        rest = rest.split()[-1]
    if "," in rest:
        return tuple(t.strip() for t in rest.split(","))
    return (rest,) if rest else ()


def _exists(root: Path, video: str) -> bool:
    """Whether ``video`` names something on disk (not the list's own folder: an empty field)."""
    if not video.strip():
        return False
    return os.path.exists(video if os.path.isabs(video) else os.path.join(root, video))


def _is_int(text: str) -> bool:
    return re.fullmatch(r"\s*[+-]?\d+\s*", text) is not None


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
