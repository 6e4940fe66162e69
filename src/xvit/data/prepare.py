"""Re-encode a video dataset for fast clip sampling: ``xvit data prepare SRC OUT``.

Every source video (a class-folder tree or an annotation list) is re-encoded by
:func:`~xvit.data.encode.encode_video` (H.264 mp4, a keyframe every ``gop`` frames, short
side scaled down, rotation applied; :class:`~xvit.data.encode.PrepareSettings`). Outputs go to
``OUT/videos/<class>/<name>.mp4`` with ``OUT/train.txt``, ``OUT/val.txt`` (list files) and
``OUT/classnames.txt``; sources that cannot be read are listed in ``OUT/failed.txt``.

A run can be interrupted at any point and started again: each video is written to a
temporary name in its final folder and renamed when complete, and ``OUT/prepared.jsonl``
records, per finished output, the source's size and modification time and the settings, so a
rerun skips what is done and re-encodes only what changed. The main process renames and
records each output (one step that Ctrl-C does not split); on Ctrl-C it records what finished,
starts nothing more and stops the worker processes, which ignore SIGINT themselves. The
sources are only read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import secrets
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from xvit.data.annotations import read_annotations, read_class_names, write_list_file
from xvit.data.cores import available_cores, default_processes
from xvit.data.dataset import worker_context
from xvit.data.encode import PrepareSettings, encode_video, output_size
from xvit.data.errors import PathLike, PrepareError, VideoDecodeError
from xvit.data.folders import is_class_folder_dir, read_class_folders, stratified_split
from xvit.data.samples import Annotations, Sample

__all__ = [
    "PrepareError",
    "PrepareResult",
    "PrepareSettings",
    "check_output_dir",
    "encode_video",
    "output_size",
    "prepare_dataset",
    "read_source",
]

PARTIAL_SUFFIX = ".xvit-partial"  # temporary outputs: ``.<name>.<random>.xvit-partial``
MANIFEST = "prepared.jsonl"


# ---------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------


@dataclass
class Source:
    """A dataset to prepare: class names and the (train, val) samples."""

    class_names: list[str]
    train: list[Sample]
    val: list[Sample]
    files: list[Path] = field(default_factory=list)  # annotation files read (never written)
    trees: list[Path] = field(default_factory=list)  # class-folder roots read


def _read_one(
    src: PathLike,
    root: PathLike | None,
    class_names: Sequence[str] | PathLike | None,
    trees: list[Path],
    files: list[Path],
) -> Annotations:
    path = Path(src)
    if not path.exists():
        raise PrepareError(f"{src}: not found")
    if is_class_folder_dir(path):
        names = class_names
        if isinstance(names, (str, os.PathLike)):
            names = read_class_names(names)
        trees.append(path)
        return read_class_folders(path, class_names=names)
    files.append(path)
    if path.stat().st_size == 0:
        raise PrepareError(f"{src}: annotation file is empty")
    ann = read_annotations(path, root=root, class_names=class_names)
    if not ann.samples:
        raise PrepareError(f"{src}: annotation file lists no videos")
    unlabelled = [s for s in ann.samples if not isinstance(s.label, int) or s.label < 0]
    if unlabelled:
        raise PrepareError(f"{src}: {len(unlabelled)} entries have no label (e.g. {unlabelled[0].path})")
    return ann


def read_source(
    src: PathLike,
    val: PathLike | None = None,
    root: PathLike | None = None,
    class_names: Sequence[str] | PathLike | None = None,
    val_split: float = 0.0,
    seed: int = 0,
) -> Source:
    """Read ``src`` (class-folder tree or annotation file) and the optional separate
    validation set ``val``; without ``val``, hold out ``val_split`` of every class of ``src``
    (:func:`~xvit.data.folders.stratified_split`). Raises :class:`PrepareError` /
    :class:`~xvit.data.annotations.AnnotationError` for bad input."""
    trees: list[Path] = []
    files: list[Path] = []
    ann = _read_one(src, root, class_names, trees, files)
    names = list(ann.class_names) if ann.class_names is not None else None
    if val is not None:
        val_ann = _read_one(val, root, names if names is not None else class_names, trees, files)
        train, val_samples = list(ann.samples), list(val_ann.samples)
    else:
        train, val_samples = stratified_split(ann.samples, val_split, seed)
    if names is None:  # int labels without a class list: the classes are 0..max
        top = max(s.label for s in [*train, *val_samples])
        names = [str(i) for i in range(top + 1)]
    top = max(s.label for s in [*train, *val_samples])
    if top >= len(names):
        raise PrepareError(f"label {top} is outside the {len(names)} classes of {src}")
    bad = [n for n in names if not n or n != n.strip() or "\n" in n or "\r" in n]
    if bad:
        raise PrepareError(
            f"class name {bad[0]!r} cannot be written to classnames.txt (empty, or leading/trailing blanks)"
        )
    return Source(names, train, val_samples, files, trees)


# ---------------------------------------------------------------------------------------
# Output paths
# ---------------------------------------------------------------------------------------


def _safe_part(name: str) -> str:
    name = re.sub(r"[/\\\x00-\x1f]", "_", name).strip()
    name = name.lstrip(".")
    return name or "_"


def _relative_name(sample: Sample, trees: Sequence[Path]) -> str:
    """The output name of a source below its class folder, without extension."""
    path = Path(sample.path)
    for tree in trees:
        with contextlib.suppress(ValueError):
            rel = path.relative_to(tree)
            return Path(*rel.parts[1:]).with_suffix("").as_posix()  # drop the class folder
    return path.stem


def plan_outputs(source: Source) -> dict[str, str]:
    """Source path -> output path relative to OUT (``videos/<class>/<name>.mp4``), unique."""
    wanted: dict[str, str] = {}
    for s in [*source.train, *source.val]:
        if s.path in wanted:
            continue
        cls = _safe_part(source.class_names[s.label])
        name = "/".join(_safe_part(p) for p in _relative_name(s, source.trees).split("/"))
        wanted[s.path] = f"videos/{cls}/{name}.mp4"
    users: dict[str, list[str]] = {}
    for src, out in wanted.items():
        users.setdefault(out, []).append(src)
    for out, srcs in users.items():
        if len(srcs) > 1:  # a.avi and a.mkv, or same names from different folders
            for src in srcs:
                tag = hashlib.sha1(src.encode()).hexdigest()[:8]
                wanted[src] = f"{out[:-4]}-{tag}.mp4"
    return wanted


# ---------------------------------------------------------------------------------------
# The whole dataset
# ---------------------------------------------------------------------------------------


@dataclass
class PrepareResult:
    """What a run did: counts, the list files it wrote and the failures."""

    out: Path
    prepared: int  # outputs present at the end (encoded now or before)
    encoded: int  # encoded in this run
    skipped: int  # already done, kept
    failed: list[tuple[str, str]]  # (source, reason)
    train_list: Path
    val_list: Path
    class_names_file: Path
    num_train: int = 0
    num_val: int = 0


def check_output_dir(out: PathLike, create: bool = True) -> Path:
    """Check that ``out`` is, or can become, a writable directory (creating it unless
    ``create=False``); raise :class:`PrepareError` with a one-line reason otherwise."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise PrepareError(f"{out}: exists and is not a directory")
    if not create:
        parent = path
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise PrepareError(f"{out}: cannot write here ({parent} is not a directory)")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PrepareError(f"{out}: cannot write here (permission denied on {parent})")
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise PrepareError(f"{out}: cannot write here ({e.strerror or e})") from None
    return path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_list(path: Path, samples: Sequence[Sample], root: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    if samples:
        write_list_file(tmp, samples, root=root)
    else:
        tmp.write_text("")
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Only one run per output directory at a time."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    with open(out / ".prepare.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise PrepareError(f"{out}: another `xvit data prepare` is writing here") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove_partials(out: Path) -> int:
    removed = 0
    for dirpath, _, filenames in os.walk(out):
        for name in filenames:
            if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(dirpath, name))
                    removed += 1
    return removed


def _read_manifest(out: Path) -> dict[str, dict[str, Any]]:
    """Output path -> its latest record; a torn last line (a killed run) is ignored."""
    records: dict[str, dict[str, Any]] = {}
    path = out / MANIFEST
    if not path.exists():
        return records
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
            records[rec["output"]] = rec
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return records


def _source_stamp(src: str) -> dict[str, Any] | None:
    try:
        st = os.stat(src)
    except OSError:
        return None
    return {"source": os.path.abspath(src), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _is_done(
    out: Path, rel: str, record: dict[str, Any] | None, stamp: dict[str, Any] | None, settings: dict[str, Any]
) -> bool:
    if record is None or stamp is None:
        return False
    if any(record.get(k) != v for k, v in stamp.items()) or record.get("settings") != settings:
        return False
    try:
        return (out / rel).stat().st_size == record.get("output_size")
    except OSError:
        return False


class _Job(NamedTuple):
    """One source to encode: into ``tmp`` (beside ``dst``, its final path), with ``threads``."""

    src: str
    dst: str
    settings: PrepareSettings
    threads: int
    tmp: str


def _encode_job(job: _Job) -> tuple[str, int, int, str | None]:
    """Worker: encode one source to the temporary file ``job.tmp`` next to its final path
    ``job.dst``. Returns (source, frames, output bytes, error or None); on success the
    temporary file is complete and the caller renames it (and records it), otherwise it is
    removed."""
    src, dst, settings, threads, tmp_name = job
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tmp_name)
    try:
        frames = encode_video(src, tmp, settings, threads=threads)
        if frames == 0:
            tmp.unlink(missing_ok=True)
            return src, 0, 0, f"{src}: no frames came out of the encoder"
        return src, frames, os.path.getsize(tmp), None
    except Exception as e:  # any failure of one source is reported, the run goes on
        tmp.unlink(missing_ok=True)
        message = e.problem if isinstance(e, VideoDecodeError) else f"{type(e).__name__}: {e}"
        return src, 0, 0, " ".join(message.split())
    except BaseException:  # Ctrl-C in this process
        tmp.unlink(missing_ok=True)
        raise


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C (sent to the whole process group by a terminal) is the
    parent's to handle; it stops the workers itself after recording what they finished."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Run the block whole: a Ctrl-C that lands in it raises KeyboardInterrupt at its end
    (so an output is never renamed into place without its record)."""
    if threading.current_thread() is not threading.main_thread() or not callable(
        signal.getsignal(signal.SIGINT)
    ):
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop at once: cancel the jobs not started and end the running ones (their temporary
    files are the caller's to remove)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.terminate()
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def _check_disjoint(out: Path, source: Source, outputs: dict[str, str]) -> None:
    out_r = out.resolve()
    for tree in source.trees:
        t = tree.resolve()
        if out_r == t or t in out_r.parents or out_r in t.parents:
            raise PrepareError(
                f"{out}: the output directory must lie outside the source tree {tree} (and not contain it)"
            )
    ours = {(out_r / n).resolve() for n in ("train.txt", "val.txt", "classnames.txt", "failed.txt", MANIFEST)}
    ours |= {(out_r / rel).resolve() for rel in outputs.values()}
    theirs = {f.resolve() for f in source.files} | {Path(s).resolve() for s in outputs}
    clash = ours & theirs
    if clash:
        raise PrepareError(f"{min(clash)}: a source file would be overwritten; choose another OUT")


def _check_same_source(out: PathLike, records: dict[str, dict[str, Any]], outputs: dict[str, str]) -> None:
    """Refuse an ``out`` holding a dataset prepared from other sources only: this run would
    overwrite its same-named videos and replace its lists."""
    if not records:
        return
    ours = {os.path.abspath(src) for src in outputs}
    theirs = sorted(str(r.get("source")) for r in records.values())
    if not any(src in ours for src in theirs):
        raise PrepareError(
            f"{out}: holds a dataset prepared from other sources (e.g. {theirs[0]}); choose another OUT"
        )


def _run_pool(
    todo: Sequence[_Job],
    workers: int,
    finished: Any,
) -> None:
    """Encode ``todo`` in ``workers`` processes, calling ``finished(job, result, stamp)`` in
    this process as each ends. On Ctrl-C: what finished before it is recorded, no new job
    starts and the running ones are stopped at once; then KeyboardInterrupt is raised."""
    pool = ProcessPoolExecutor(workers, mp_context=worker_context(), initializer=_ignore_sigint)
    pending: dict[Future, tuple[_Job, dict[str, Any] | None]] = {}
    jobs = iter(todo)
    try:
        while True:
            while len(pending) < 4 * workers:
                job = next(jobs, None)
                if job is None:
                    break
                pending[pool.submit(_encode_job, job)] = (job, _source_stamp(job.src))
            if not pending:
                break
            ready, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in ready:
                job, stamp = pending.pop(fut)
                finished(job, fut.result(), stamp)
    except BaseException:
        _stop_pool(pool)
        # keep what was finished before the stop
        for fut, (job, stamp) in pending.items():
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                with contextlib.suppress(OSError):
                    finished(job, fut.result(), stamp)
        raise
    pool.shutdown(wait=True)


def prepare_dataset(
    source: Source,
    out: PathLike,
    settings: PrepareSettings | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> PrepareResult:
    """Re-encode every video of ``source`` into ``out`` and write the list files.

    Finished outputs recorded in ``out/prepared.jsonl`` with the same source size, mtime
    and settings are kept; stale temporary files of an interrupted run are removed first.
    Sources that fail are listed in ``out/failed.txt`` (removed when none fail) and left
    out of the lists.
    """
    from tqdm import tqdm

    settings = settings or PrepareSettings()
    outputs = plan_outputs(source)
    _check_disjoint(Path(out), source, outputs)
    out_path = check_output_dir(out)
    workers = max(1, workers or default_processes())
    threads = max(1, available_cores() // workers)
    with _locked(out_path):
        records = _read_manifest(out_path)
        _check_same_source(out, records, outputs)
        _remove_partials(out_path)
        wanted = settings.record()
        done: set[str] = set()
        todo: list[_Job] = []
        run_tag = f"{os.getpid()}-{secrets.token_hex(4)}"
        for src in sorted(outputs):
            rel = outputs[src]
            if _is_done(out_path, rel, records.get(rel), _source_stamp(src), wanted):
                done.add(src)
            else:
                final = out_path / rel
                tmp = final.parent / f".{final.name}.{run_tag}{PARTIAL_SUFFIX}"
                todo.append(_Job(src, str(final), settings, threads, str(tmp)))
        skipped = len(done)
        failed: list[tuple[str, str]] = []
        with (
            open(out_path / MANIFEST, "a") as manifest,
            tqdm(
                total=len(todo),
                unit="video",
                desc="prepare",
                disable=not progress or not todo,
                mininterval=1.0,
            ) as bar,
        ):

            def finished(
                job: _Job,
                result: tuple[str, int, int, str | None],
                stamp: dict[str, Any] | None,
            ) -> None:
                src, frames, size, error = result
                bar.update(1)
                if error is not None:
                    failed.append((src, error))
                    return
                rec = {
                    **(stamp or {"source": os.path.abspath(src)}),
                    "settings": wanted,
                    "output": outputs[src],
                    "output_size": size,
                    "frames": frames,
                }
                with _sigint_deferred():  # a video in place always has its record
                    os.replace(job.tmp, job.dst)
                    manifest.write(json.dumps(rec) + "\n")
                    manifest.flush()
                    done.add(src)

            try:
                if workers == 1 or len(todo) <= 1:
                    for job in todo:
                        stamp = _source_stamp(job.src)
                        finished(job, _encode_job(job), stamp)
                else:
                    _run_pool(todo, workers, finished)
            except BaseException:  # Ctrl-C, disk full: the workers are stopped by now
                # remove the outputs they left unfinished
                for job in todo:
                    with contextlib.suppress(OSError):
                        os.remove(job.tmp)
                raise

        train = [s for s in source.train if s.path in done]
        val = [s for s in source.val if s.path in done]

        def moved(samples: list[Sample]) -> list[Sample]:
            return [dataclasses.replace(s, path=str(out_path / outputs[s.path])) for s in samples]

        _write_list(out_path / "train.txt", moved(train), out_path)
        _write_list(out_path / "val.txt", moved(val), out_path)
        _atomic_write(out_path / "classnames.txt", "\n".join(source.class_names) + "\n")
        if failed:
            failed.sort()
            _atomic_write(out_path / "failed.txt", "".join(f"{s}\t{r}\n" for s, r in failed))
        else:
            (out_path / "failed.txt").unlink(missing_ok=True)
        # keep one record per finished output
        records = _read_manifest(out_path)
        keep = {outputs[s] for s in done}
        _atomic_write(
            out_path / MANIFEST, "".join(json.dumps(records[r]) + "\n" for r in sorted(keep) if r in records)
        )
    return PrepareResult(
        out=out_path,
        prepared=len(done),
        encoded=len(done) - skipped,
        skipped=skipped,
        failed=failed,
        train_list=out_path / "train.txt",
        val_list=out_path / "val.txt",
        class_names_file=out_path / "classnames.txt",
        num_train=len(train),
        num_val=len(val),
    )
