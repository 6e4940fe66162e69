"""Moving weight files: downloads into the cache and uploads to the Hugging Face Hub.

* Plain URLs (`download_url`): a `tqdm` progress bar, into `$XVIT_CACHE/weights/downloads`
  (default `~/.cache/xvit/weights`); the bytes go to `NAME.part` next to the target, a cut
  connection is resumed with an HTTP `Range` request when the server supports it (within
  the call, and by the next call from the `.part` left behind), size and sha256 are
  verified when known, and only a verified file is moved into place (`os.replace`). A file
  that fails verification is deleted, `.part` included.
* Hugging Face Hub repos (`hub_download`): `huggingface_hub.hf_hub_download`, with its
  cache, resume and `HF_HUB_OFFLINE`; `HF_ENDPOINT` is read at call time.
* `upload_folder`: `HfApi.create_repo` + `HfApi.upload_folder`.

`huggingface_hub` is optional (`pip install "xvit[hub]"`); plain URLs need only the standard
library. Offline (`HF_HUB_OFFLINE=1`) with nothing cached, `WeightsUnavailableError` says
what to download and where to put it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from xvit.models.errors import CheckpointError

HUB_INSTALL_HINT = 'pip install "xvit[hub]"'
_CHUNK = 1 << 20
_TRUE = {"1", "true", "yes", "on"}


class WeightsUnavailableError(FileNotFoundError):
    """Weights that are not cached and cannot be downloaded now (offline, or no network)."""

    def __str__(self) -> str:  # one line, without FileNotFoundError's "[Errno ...]" prefix
        return str(self.args[0]) if self.args else ""


class DownloadError(OSError):
    """A download that failed (connection cut, HTTP error); the `.part` file is kept for resume."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def weights_cache() -> Path:
    """`$XVIT_CACHE/weights`, default `~/.cache/xvit/weights`."""
    return Path(os.environ.get("XVIT_CACHE") or Path.home() / ".cache" / "xvit") / "weights"


def is_offline() -> bool:
    """True when `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is set, read at call time."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return True
    return False


def sha256sum(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Plain URLs
# --------------------------------------------------------------------------------------------


def _open(url: str, start: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "xvit", "Accept-Encoding": "identity"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=timeout)


def _fetch_into(url: str, part: Path, size: int | None, timeout: float, progress: bool) -> None:
    """Append the rest of `url` to `part` (resuming from its length when the server honours
    `Range`); raises `DownloadError` when the connection ends early."""
    from tqdm.auto import tqdm

    start = part.stat().st_size if part.exists() else 0
    if size is not None and start >= size:
        start = 0  # an over-long leftover: start again
    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the range is past the end: the leftover is useless
            part.unlink()
            return _fetch_into(url, part, size, timeout, progress)
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"{url}: cannot connect ({reason})") from e
    with response:
        status = response.status
        if start and status != 206:  # the server ignored Range: the whole file comes again
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else size
        mode = "ab" if start else "wb"
        done = start
        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                disable=not progress or None,
                leave=False,
            ) as bar,
        ):
            try:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
            except (OSError, ValueError, http.client.HTTPException) as e:  # reset / incomplete read
                raise DownloadError(
                    f"{url}: the connection was cut after {done} of {total or '?'} bytes ({e})"
                ) from e
    if total is not None and done < total:
        raise DownloadError(f"{url}: the connection was cut after {done} of {total} bytes")


def download_url(
    url: str,
    dest: str | os.PathLike[str],
    size: int | None = None,
    sha256: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download `url` to `dest` (atomically) unless `dest` exists; returns `dest`.

    A cut connection is resumed from where it stopped (HTTP `Range`), up to `retries` more
    times; when all fail, `DownloadError` is raised and `DEST.part` is kept so the next
    call resumes. A file whose size or sha256 differs from the expected one is deleted and
    `CheckpointError` names the file, the URL and both checksums.
    """
    dest = Path(dest)
    if dest.is_file():
        return dest
    if is_offline():
        raise WeightsUnavailableError(f"{dest} is not cached and HF_HUB_OFFLINE is set: download {url} there")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    error: DownloadError | None = None
    for _ in range(1 + max(retries, 0)):
        try:
            _fetch_into(url, part, size, timeout, progress)
            error = None
            break
        except DownloadError as e:
            error = e
            if not part.exists():  # nothing came: no point in retrying a refused connection
                break
    if error is not None:
        kept = f"; {part.stat().st_size} bytes kept in {part}, the next try resumes" if part.exists() else ""
        raise DownloadError(f"{error}{kept}") from error
    got = part.stat().st_size
    problem = None
    if size is not None and got != size:
        problem = f"{got} bytes, expected {size}"
    elif sha256 is not None:
        digest = sha256sum(part)
        if digest.lower() != sha256.lower():
            problem = f"sha256 {digest}, expected {sha256.lower()}"
    if problem:
        part.unlink()
        raise CheckpointError(
            f"{dest.name} downloaded from {url} is corrupt ({problem}); it was deleted, nothing "
            "was kept in the cache. Try again; if it persists the source changed or is damaged"
        )
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------------------------
# The Hugging Face Hub
# --------------------------------------------------------------------------------------------


def _hub():
    try:
        import huggingface_hub
    except ImportError as e:  # pragma: no cover - exercised where the extra is absent
        raise ImportError(f"weights on the Hugging Face Hub need huggingface_hub: {HUB_INSTALL_HINT}") from e
    return huggingface_hub


def hub_endpoint() -> str:
    """`$HF_ENDPOINT` (read now, not at import), default https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hub_url(repo_id: str, filename: str, revision: str = "main") -> str:
    """The address `hf_hub_download` fetches a file from."""
    return f"{hub_endpoint()}/{repo_id}/resolve/{revision}/{filename}"


def hub_download(
    repo_id: str,
    filenames: Sequence[str],
    revision: str = "main",
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The first of `filenames` that `repo_id` has, through `hf_hub_download` (its cache
    under `$HF_HUB_CACHE`, resume, `HF_HUB_OFFLINE`). Raises `WeightsUnavailableError`
    when it is not cached and cannot be fetched, `FileNotFoundError` when the repo has none
    of the files."""
    hub = _hub()
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    offline = is_offline()
    unreachable: Exception | None = None
    for filename in filenames:
        try:
            path = hub.hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=cache_dir,
                endpoint=hub_endpoint(),
                local_files_only=offline,
                library_name="xvit",
            )
            return Path(path)
        except LocalEntryNotFoundError as e:  # not cached, and offline or no connection (first:
            unreachable = e  # in huggingface_hub >= 1.0 it subclasses EntryNotFoundError)
            continue
        except EntryNotFoundError:  # the repo has no such file: try the next name
            continue
        except RepositoryNotFoundError as e:
            raise FileNotFoundError(
                f"no such Hugging Face Hub repository: {repo_id} ({hub_endpoint()})"
            ) from e
    if unreachable is not None:
        why = "HF_HUB_OFFLINE is set" if offline else f"{hub_endpoint()} cannot be reached"
        raise WeightsUnavailableError(
            f"{repo_id}: none of {list(filenames)} is cached and {why}"
        ) from unreachable
    raise FileNotFoundError(f"{repo_id} has none of {list(filenames)} ({hub_endpoint()})")


def upload_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload xvit model",
    allow_patterns: Sequence[str] | None = None,
) -> str:
    """Create `repo_id` if needed and commit the files of `folder` to it; returns the
    commit URL."""
    hub = _hub()
    if is_offline():
        raise WeightsUnavailableError(f"cannot push to {repo_id}: HF_HUB_OFFLINE is set")
    api = hub.HfApi(endpoint=hub_endpoint(), token=token, library_name="xvit")
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        revision=revision,
        commit_message=commit_message,
        allow_patterns=list(allow_patterns) if allow_patterns else None,
    )
    return str(info)


__all__ = [
    "HUB_INSTALL_HINT",
    "DownloadError",
    "WeightsUnavailableError",
    "download_url",
    "hub_download",
    "hub_endpoint",
    "hub_url",
    "is_offline",
    "sha256sum",
    "upload_folder",
    "weights_cache",
]
