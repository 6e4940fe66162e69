"""`POST /v1/predict`'s input: a multipart upload (bounded) or a path inside `--allow-dir`.

The body is read as it arrives and counted: past `max_bytes` the read stops and the request
gets 413 (a `Content-Length` over the limit is refused before reading anything). The file
part goes to Starlette's multipart parser (spooled to an anonymous temporary file), then to a
named temporary file the decoder can open; the caller deletes it (`Upload.cleanup`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

__all__ = ["ApiError", "Upload", "parse_fields", "read_request", "resolve_allowed"]

MAX_JSON_BYTES = 64 * 1024
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


class ApiError(Exception):
    """An answer other than 200: `status`, a one-line `message`, extra response `headers`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class _TooLarge(MultiPartException):
    pass


@dataclass
class Upload:
    """The video to read (`path`), the name to show (`name`), the other request fields."""

    path: str
    name: str
    fields: dict[str, Any] = field(default_factory=dict)
    size: int = 0
    temporary: bool = False

    def cleanup(self) -> None:
        if self.temporary:
            Path(self.path).unlink(missing_ok=True)


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"the upload is larger than the limit of {max_bytes / 2**20:g} MB (--max-upload-mb)")


async def _bounded(request: Request, max_bytes: int, seen: list[int]) -> AsyncGenerator[bytes, None]:
    async for chunk in request.stream():
        seen[0] += len(chunk)
        if seen[0] > max_bytes:
            raise _TooLarge("too large")
        yield chunk


async def read_request(request: Request, max_bytes: int, allow_dir: str | None) -> Upload:
    """The upload of a `POST /v1/predict`; raises `ApiError` (400, 403, 404, 413, 415)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise _too_large(max_bytes)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        return await _read_path_request(request, allow_dir)
    if ctype != "multipart/form-data":
        raise ApiError(
            415,
            f"expected a multipart/form-data upload with a 'file' field, got {ctype or 'no content type'!r}",
        )
    seen = [0]
    parser = MultiPartParser(
        request.headers,
        _bounded(request, max_bytes, seen),
        max_files=1,
        max_fields=16,
        max_part_size=64 * 1024,
    )
    try:
        form = await parser.parse()
    except _TooLarge:
        raise _too_large(max_bytes) from None
    except MultiPartException as e:
        raise ApiError(400, f"bad multipart request: {e.message}") from None
    try:
        upload = form.get("file")
        if isinstance(upload, str):  # a part without a filename is a text field
            raise ApiError(
                400, "the 'file' field is text, not a file upload; send the video as a file (with a filename)"
            )
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "the request has no 'file' field holding a video upload")
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        name = Path(upload.filename or "upload").name or "upload"
        suffix = Path(name).suffix if _SUFFIX.match(Path(name).suffix) else ""
        path = await run_in_threadpool(_save, upload, suffix)
        return Upload(path, name, fields, seen[0], temporary=True)
    finally:
        await form.close()


def _save(upload: UploadFile, suffix: str) -> str:
    fd, path = tempfile.mkstemp(prefix="xvit-upload-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            upload.file.seek(0)
            shutil.copyfileobj(upload.file, out, 1 << 20)
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise
    return path


async def _read_path_request(request: Request, allow_dir: str | None) -> Upload:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise ApiError(413, f"a JSON request is limited to {MAX_JSON_BYTES // 1024} KB")
    try:
        data = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the body is not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("path"), str) or not data["path"]:
        raise ApiError(400, 'a JSON request is {"path": "...", "timeline": bool, "topk": int}')
    if allow_dir is None:
        raise ApiError(403, "reading files by path is off; the server was started without --allow-dir")
    path = resolve_allowed(data["path"], allow_dir)
    fields = {k: v for k, v in data.items() if k != "path"}
    return Upload(str(path), data["path"], fields, path.stat().st_size)


def resolve_allowed(requested: str, allow_dir: str) -> Path:
    """The file `requested` names inside `allow_dir` (relative to it, or absolute); 403 for a
    path with `..`, a NUL byte or one that leaves the directory (symlinks resolved), 404 for
    one that is not there, not a file or not a name the file system can hold."""
    root = Path(allow_dir).resolve()
    if "\x00" in requested or ".." in Path(requested).parts:
        raise ApiError(403, f"{requested!r}: paths with '..' are refused")
    candidate = Path(requested) if Path(requested).is_absolute() else root / requested
    try:
        resolved = candidate.resolve()
        if resolved != root and root not in resolved.parents:
            raise ApiError(403, f"{requested!r}: outside the allowed directory (--allow-dir)")
        is_file = resolved.is_file()
    except (OSError, UnicodeError) as e:  # a name too long, or one the file system cannot encode
        raise ApiError(
            404, f"{requested!r}: no such file in the allowed directory ({type(e).__name__})"
        ) from None
    if not is_file:
        raise ApiError(404, f"{requested!r}: no such file in the allowed directory")
    return resolved


def parse_fields(fields: dict[str, Any], max_topk: int) -> tuple[bool, int]:
    """`timeline` (true/false, default false) and `topk` (1..max_topk, default 5); 400 otherwise."""
    raw = fields.get("timeline", False)
    if isinstance(raw, bool):
        timeline = raw
    elif isinstance(raw, str) and raw.strip().lower() in ("true", "false", "1", "0", ""):
        timeline = raw.strip().lower() in ("true", "1")
    else:
        raise ApiError(400, f"timeline must be true or false, got {raw!r}")
    raw = fields.get("topk", 5)
    try:
        if isinstance(raw, (bool, float)):
            raise ValueError
        topk = int(str(raw).strip())
    except ValueError:
        raise ApiError(400, f"topk must be an integer, got {raw!r}") from None
    if not 1 <= topk <= max_topk:
        raise ApiError(400, f"topk must be between 1 and {max_topk}, got {topk}")
    return timeline, topk
