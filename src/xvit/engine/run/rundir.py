"""Output locations as transactions: checked before the work, locked while in use, written
atomically, and a ``--fresh`` start that can be undone until it has a checkpoint of its own.

- :func:`check_output_dir`: is a directory usable for output? Run before any work, so that a
  bad ``--out`` fails at once instead of after the work (:class:`RunDirError`, exit code 2).
- :class:`RunLock`: an exclusive ``fcntl.flock`` on ``OUT/.lock``, which holds the owner's
  pid, host, command and start time as JSON. A second run on the same ``OUT`` fails at once
  (:class:`RunLockedError`) naming the first. The kernel drops the lock when its process
  ends, however it ends (``kill -9`` included); the file stays (removing it would let two
  processes lock two different files).
- :class:`FreshStart`: ``--fresh`` moves the old run's files into ``OUT/.previous-<time>/``
  (a rename, same file system) once the new run has been built, puts them back if the new
  run ends before writing its first checkpoint, and deletes them once it has. A leftover
  ``.previous-*`` directory (the process was killed in between) is resolved the same way by
  the next run on ``OUT``: restored when ``OUT`` holds no checkpoint, else deleted.
- :func:`atomic_write` / :func:`write_json`: a file is written to a temporary name in its
  directory, fsync'ed and renamed over the final name, so it is either complete or absent.
  JSON is strict (no ``NaN``/``Infinity``, which JSON does not have): non-finite numbers are
  written as ``null`` and listed under ``non_finite``.
- :class:`TrainingRunDir`: the above put together for a training run on every rank: opened
  (checked, created, locked, leftovers resolved) by rank 0 with every rank raising the same
  error, ``--fresh`` set aside, committed by the first checkpoint, closed however the run ends.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xvit.engine.run.distributed import barrier, raise_everywhere

__all__ = [
    "RUN_FILES",
    "FreshStart",
    "RunDirError",
    "RunLock",
    "RunLockedError",
    "TrainingRunDir",
    "WriteError",
    "atomic_write",
    "atomic_write_text",
    "check_output_dir",
    "nearest_existing",
    "remove_stale_temporaries",
    "resolve_leftovers",
    "strict_json",
    "write_json",
]

# What a training run writes into OUT (everything --fresh sets aside).
RUN_FILES = (
    "config.yaml",
    "checkpoints",
    "log.jsonl",
    "tb",
    "model.safetensors",
    "config.json",
    "metrics.json",
    "README.md",
)
LOCK_NAME = ".lock"
PREVIOUS_PREFIX = ".previous-"


class RunDirError(ValueError):
    """An output location that cannot be used (bad input: exit code 2)."""


class RunLockedError(RunDirError):
    """Another process holds the run directory's lock."""


class WriteError(RuntimeError):
    """A result could not be written (disk full, quota, I/O error): the run failed (exit 1)."""


# ------------------------------------------------------------------ output locations


def nearest_existing(path: str | Path) -> Path:
    """``path`` itself when it exists, else its nearest ancestor that does (where a missing
    folder would be made)."""
    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe


def check_output_dir(path: str | Path, what: str = "output directory") -> Path:
    """Raise :class:`RunDirError` unless ``path`` is, or can be created as, a writable
    directory. Nothing is created: the nearest existing ancestor is probed with a temporary
    file (which also catches read-only file systems, even for root)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{what} {path} exists and is not a directory")
    probe = nearest_existing(path)
    if not probe.is_dir():
        raise RunDirError(f"{what} {path} cannot be created: {probe} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".xvit-probe-"):
            pass
    except OSError as e:
        where = "" if probe == path else f" ({probe} is not writable)"
        raise RunDirError(f"cannot write to {what} {path}{where}: {e.strerror or e}") from None
    return path


# ------------------------------------------------------------------ atomic files


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not supported on this platform / file system
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary path next to ``path``, fsync it and rename it
    over ``path``; on any failure the temporary file is removed and ``path`` is untouched.
    The file gets the permissions of any new file (umask applied)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def strict_json(obj: Any, where: str = "") -> tuple[Any, list[str]]:
    """``obj`` with every non-finite float replaced by None, and the dotted keys replaced."""
    bad: list[str] = []

    def walk(x: Any, key: str) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            bad.append(key or "<value>")
            return None
        if isinstance(x, dict):
            return {k: walk(v, f"{key}.{k}" if key else str(k)) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v, f"{key}[{i}]") for i, v in enumerate(x)]
        return x

    return walk(obj, where), bad


def write_json(path: str | Path, doc: dict[str, Any], indent: int | None = 2) -> Path:
    """Write ``doc`` as strict JSON, atomically. Non-finite numbers become null and their keys
    are listed under ``non_finite`` with the reason."""
    clean, bad = strict_json(doc)
    if bad:
        clean["non_finite"] = {
            "reason": "these values were NaN or infinite (not representable in JSON): written as null",
            "keys": bad,
        }
    text = json.dumps(clean, indent=indent, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


# ------------------------------------------------------------------ the lock


class RunLock:
    """An exclusive lock on a run directory (``OUT/.lock``), held until :meth:`release` or
    the end of the process."""

    def __init__(self, out: str | Path, command: list[str] | None = None) -> None:
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self.command = command
        self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> bool:
        """Take the lock; :class:`RunLockedError` naming the holder when another process has
        it. Returns False (no lock, nothing raised) on a file system without ``flock``."""
        f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while locked
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.close()
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise RunLockedError(self._held_message()) from None
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                return False
            raise
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(self.command) if self.command else None,
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        f.seek(0)
        f.truncate()
        f.write(json.dumps(info) + "\n")
        f.flush()
        self._file = f
        return True

    def _held_message(self) -> str:
        info: dict[str, Any] = {}
        for _ in range(20):  # the holder writes its details just after locking
            try:
                info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
            except (OSError, ValueError):
                info = {}
            if info.get("pid"):
                break
            time.sleep(0.05)
        who = f"pid {info.get('pid', '?')}"
        if info.get("host"):
            who += f" on {info['host']}"
        if info.get("started"):
            who += f", started {info['started']}"
        if info.get("command"):
            who += f", command: {info['command']}"
        return (
            f"{self.out} is in use by another run ({who}); wait for it to end or stop it, "
            f"or use another output directory"
        )

    def release(self) -> None:
        if self._file is None:
            return
        try:
            self._file.seek(0)
            self._file.truncate()
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        finally:
            self._file.close()
            self._file = None


# ------------------------------------------------------------------ --fresh


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class FreshStart:
    """``--fresh`` as a transaction on ``OUT``'s run files (:data:`RUN_FILES`).

    :meth:`begin` moves them into ``OUT/.previous-<time>/``; :meth:`commit` (call after the
    new run's first checkpoint) deletes them; :meth:`rollback` (the new run ended before
    that) deletes what the new run wrote and moves the old files back.
    """

    def __init__(self, out: str | Path, say: Callable[[str], None] = print) -> None:
        self.out = Path(out)
        self.say = say
        self.aside: Path | None = None

    @property
    def pending(self) -> bool:
        return self.aside is not None

    def begin(self) -> Path | None:
        """Set the old run's files aside; returns where (None when there was nothing)."""
        present = [n for n in RUN_FILES if (self.out / n).exists() or (self.out / n).is_symlink()]
        if not present:
            return None
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        aside = self.out / f"{PREVIOUS_PREFIX}{stamp}-{os.getpid()}"
        aside.mkdir()
        for name in present:
            os.replace(self.out / name, aside / name)
        _fsync_dir(self.out)
        self.aside = aside
        self.say(
            f"--fresh: the previous run's files are in {aside} until this run writes its "
            f"first checkpoint (then they are deleted; if it fails before, they are restored)"
        )
        return aside

    def commit(self) -> None:
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None

    def rollback(self) -> None:
        if self.aside is None:
            return
        aside, self.aside = self.aside, None
        _restore(self.out, aside)
        self.say(
            f"restored the previous run in {self.out} (this --fresh start ended before its first checkpoint)"
        )


def _restore(out: Path, aside: Path) -> None:
    for name in RUN_FILES:
        if (aside / name).exists() or (out / name).exists():
            _remove(out / name)
    for item in aside.iterdir():
        os.replace(item, out / item.name)
    aside.rmdir()
    _fsync_dir(out)


def resolve_leftovers(
    out: str | Path, has_checkpoint: Callable[[], bool], say: Callable[[str], None] = print
) -> None:
    """Finish an interrupted ``--fresh`` (a ``.previous-*`` directory left in ``OUT``): when
    ``OUT`` has no checkpoint of the new run, the old run is restored; otherwise the old
    files are deleted."""
    out = Path(out)
    for aside in sorted(p for p in out.glob(f"{PREVIOUS_PREFIX}*") if p.is_dir()):
        if has_checkpoint():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            _restore(out, aside)
            say(
                f"restored the previous run from {aside} (a --fresh start there ended before "
                f"its first checkpoint)"
            )


def remove_stale_temporaries(out: str | Path) -> list[Path]:
    """Delete the temporary files of :func:`atomic_write` (``.<name>.<random>.tmp``) that a
    killed process left in ``OUT`` and ``OUT/checkpoints``; call it only while holding
    ``OUT``'s lock (no one else is writing there). Returns what was deleted."""
    out = Path(out)
    gone = []
    for folder in (out, out / "checkpoints"):
        if folder.is_dir():
            for p in folder.glob(".*.tmp"):
                if p.is_file():
                    p.unlink(missing_ok=True)
                    gone.append(p)
    return gone


# ------------------------------------------------------------------ a training run's directory


class TrainingRunDir:
    """A training run's hold on ``OUT`` (every rank makes the same calls; rank 0 does the work).

    :meth:`open` checks that ``OUT`` is usable, creates and locks it, finishes an interrupted
    ``--fresh`` and removes stale temporary files; :meth:`set_aside` is ``--fresh``
    (:class:`FreshStart`); :meth:`commit` is called once a checkpoint is written; :meth:`close`
    undoes a ``--fresh`` start without a checkpoint of its own and releases the lock.
    """

    def __init__(
        self, out: str | Path, command: list[str] | None, is_main: bool, say: Callable[[str], None] = print
    ) -> None:
        self.out = Path(out)
        self.command = command
        self.is_main = is_main
        self.say = say
        self.lock: RunLock | None = None
        self.fresh_start: FreshStart | None = None

    def open(self, has_checkpoint: Callable[[], bool]) -> None:
        """Check, create and lock ``OUT`` (rank 0); every rank raises the same
        :class:`RunDirError` when that fails."""
        error: Exception | None = None
        if self.is_main:
            try:
                check_output_dir(self.out, "run directory (train.out)")
                self.out.mkdir(parents=True, exist_ok=True)
                self.lock = RunLock(self.out, self.command)
                if not self.lock.acquire():
                    self.say(
                        f"warning: {self.out} cannot be locked (no flock on this file "
                        f"system): a second run on it would not be stopped"
                    )
                resolve_leftovers(self.out, has_checkpoint, self.say)
                remove_stale_temporaries(self.out)  # of a process killed while writing
            except RunDirError as e:
                error = e
        raise_everywhere(error)

    def set_aside(self) -> None:
        """--fresh: set the old run's files aside; they are deleted by :meth:`commit` and put
        back by :meth:`close` when no checkpoint was written before."""
        if self.is_main:
            self.fresh_start = FreshStart(self.out, self.say)
            self.fresh_start.begin()
        barrier()

    def commit(self) -> None:
        """The run has a checkpoint of its own: drop the files a --fresh start set aside."""
        if self.fresh_start is not None:
            self.fresh_start.commit()

    def close(self) -> None:
        """Undo a --fresh start without a checkpoint, release the lock (idempotent)."""
        try:
            if self.fresh_start is not None and self.fresh_start.pending:
                self.fresh_start.rollback()
        finally:
            if self.lock is not None:
                self.lock.release()
