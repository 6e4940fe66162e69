"""Defaults that size themselves to the machine follow the cores this process may use (its CPU
affinity), not the machine's count: a process pinned to one core of an 8-core machine starts
no pool of processes."""

from __future__ import annotations

import pytest

from xvit.data import cores


@pytest.fixture
def pinned(monkeypatch):
    """This process may use ``n`` cores of a machine that has 8."""

    def pin(n: int) -> None:
        monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)
        monkeypatch.setattr(cores.os, "cpu_count", lambda: 8)
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)

    return pin


def test_available_cores_and_the_defaults_from_them(pinned):
    pinned(1)
    assert (cores.available_cores(), cores.default_processes(), cores.default_workers()) == (1, 1, 0)
    pinned(2)
    assert (cores.available_cores(), cores.default_processes(), cores.default_workers()) == (2, 2, 1)
    pinned(16)
    assert (cores.default_processes(), cores.default_processes(most=8), cores.default_workers()) == (2, 8, 4)


def test_prepare_on_one_core_encodes_in_this_process_with_one_thread(pinned, monkeypatch, tmp_path):
    from xvit.data import prepare
    from xvit.data.samples import Sample

    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (src / name).write_bytes(b"x")
    source = prepare.Source(
        train=[Sample(str(src / n), 0) for n in ("a.mp4", "b.mp4")],
        val=[Sample(str(src / "c.mp4"), 0)],
        class_names=["x"],
        trees=[src],
    )
    threads = []

    def encode(job):
        threads.append(job[3])
        return job[0], 0, 0, "not encoded in this test"

    def no_pool(*args, **kwargs):
        raise AssertionError("a process pool on one core")

    monkeypatch.setattr(prepare, "_encode_job", encode)
    monkeypatch.setattr(prepare, "ProcessPoolExecutor", no_pool)
    pinned(1)
    res = prepare.prepare_dataset(source, tmp_path / "out", progress=False)
    assert threads == [1, 1, 1] and len(res.failed) == 3
    pinned(2)  # two processes then, one thread each (not the machine's 8 / 2)
    seen = {}

    class Pool:
        def __init__(self, workers, **kwargs):
            seen["workers"] = workers
            raise RuntimeError("stop here")

    monkeypatch.setattr(prepare, "ProcessPoolExecutor", Pool)
    with pytest.raises(RuntimeError, match="stop here"):
        prepare.prepare_dataset(source, tmp_path / "out2", progress=False)
    assert seen == {"workers": 2}


def test_synth_on_one_core_writes_in_this_process(pinned, monkeypatch, tmp_path):
    from xvit.data import synth

    chunks = []

    def no_pool(*args, **kwargs):
        raise AssertionError("a process pool on one core")

    monkeypatch.setattr(synth, "ProcessPoolExecutor", no_pool)
    monkeypatch.setattr(synth, "_write_chunk", chunks.append)
    pinned(1)
    synth.generate(tmp_path / "synth", num_train=1, num_val=1)
    assert chunks and (tmp_path / "synth" / "train.txt").is_file()
