"""Text files as people write them: one reader for every file a user writes by hand (list
files, class-name files, annotation CSV / JSON, YAML configs).

Editors and spreadsheet programs save the same text in different bytes: a UTF-8 byte-order
mark (Windows Notepad, Excel's "CSV UTF-8"), UTF-16 with a byte-order mark (Excel's "Unicode
text"), CRLF or lone CR line ends (Windows, classic macOS). :func:`read_user_text` returns
the text its author meant, with ``\\n`` line ends; bytes that are not text in any of these
encodings are refused with the file, the line and the column, never guessed at.
:func:`read_user_lines` splits it at those line ends only (``str.splitlines`` would also cut
at form feeds, NEL and U+2028, characters that may sit inside a file name).
"""

from __future__ import annotations

import codecs
import csv
from pathlib import Path

from xvit.data.errors import AnnotationError, PathLike

__all__ = ["read_user_lines", "read_user_text", "split_fields"]

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _looks_like_video(data: bytes) -> bool:
    """MP4/MOV (``ftyp``), Matroska/WebM (EBML), AVI (``RIFF....AVI``) or GIF magic bytes."""
    return (
        data[4:8] == b"ftyp"
        or data.startswith(b"\x1aE\xdf\xa3")
        or (data.startswith(b"RIFF") and data[8:11] == b"AVI")
        or data.startswith((b"GIF87a", b"GIF89a"))
    )


def read_user_text(path: PathLike, error: type[Exception] = AnnotationError) -> str:
    """The text of ``path``: UTF-8 (with or without a byte-order mark) or UTF-16 with one;
    CRLF and CR line ends read as LF. Raises ``error`` (one line, ``FILE:LINE: problem``: the column and what
    to do) for bytes that are not text, a NUL byte in UTF-8 text included."""
    data = Path(path).read_bytes()
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            data, encoding = data[len(bom) :], name
            break
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        if _looks_like_video(data):
            raise error(
                f"{path}:1: a video file, not a text file (give a list file, or a folder of class folders)"
            ) from None
        line = data[: e.start].count(b"\n") + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise error(
            f"{path}:{line}: not {encoding.upper()} text (byte 0x{data[e.start]:02x} at column "
            f"{column}); save the file as UTF-8"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise error(f"{path}:{line}: a NUL character: not a text file (or UTF-16 without a byte-order mark)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_user_lines(path: PathLike, error: type[Exception] = AnnotationError) -> list[str]:
    """The lines of ``path`` as :func:`read_user_text` reads it: line ``i`` of the file is
    item ``i - 1``, split at line ends only (a trailing line end adds no line)."""
    lines = read_user_text(path, error).split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def split_fields(
    line: str, raw: str | None = None, file: PathLike | None = None, lineno: int | None = None
) -> list[str]:
    """The fields of one annotation line: comma-separated as a spreadsheet writes them
    (``"my video, take 2.mp4",3``: double quotes around a field that holds a comma, ``""``
    for a quote) when the line has a comma, else split at white space (spaces or tabs).
    Fields are stripped. An unclosed quote is an error naming the file and line."""
    if "," not in line:
        return line.split()
    if '"' not in line:
        return [f.strip() for f in line.split(",")]
    if line.count('"') % 2:
        where = f"{file}:{lineno}: " if file is not None else ""
        raise AnnotationError(f"{where}unbalanced double quote in {raw if raw is not None else line!r}")
    return [f.strip() for f in next(csv.reader([line], skipinitialspace=True))]
