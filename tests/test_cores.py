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


@pytest.fixture
def keep_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _run_dir(root, workers: int, threads: int):
    """A finished run whose config.yaml recorded the training machine's workers and threads."""
    from xvit.engine.run.config import save_config
    from xvit.engine.run.schema import Config
    from xvit.models import create_model

    model = create_model(
        "xvit_tiny_patch16", num_classes=2, num_frames=2, img_size=32, embed_dim=32, depth=1, num_heads=2
    )
    model.save_pretrained(root)
    cfg = Config()
    cfg.data.workers, cfg.train.threads = workers, threads
    save_config(cfg, root / "config.yaml")
    assert f"workers: {workers}" in (root / "config.yaml").read_text()
    return root


def test_a_run_is_loaded_with_this_machines_workers_and_threads(pinned, tmp_path):
    from xvit.engine.run.saved import load_run

    run = _run_dir(tmp_path / "run", workers=4, threads=16)  # trained on 16 cores
    pinned(2)
    _, cfg = load_run(run)
    assert (cfg.data.workers, cfg.train.threads) == (1, 0)
    pinned(1)
    assert load_run(run)[1].data.workers == 0
    _, cfg = load_run(run, ["data.workers=3", "train.threads=2"])  # asked for: kept
    assert (cfg.data.workers, cfg.train.threads) == (3, 2)


def test_predict_list_leaves_its_workers_to_the_machine(monkeypatch, tmp_path):
    from xvit.cli.main import main
    from xvit.engine.infer import batch_predict

    seen = {}

    def predict_list(*args, workers=None, **kwargs):
        seen["workers"] = workers
        raise ValueError("stop here")

    monkeypatch.setattr(batch_predict, "predict_list", predict_list)
    (tmp_path / "videos.txt").write_text("a.mp4\n")
    args = ["predict", "--list", str(tmp_path / "videos.txt"), "--checkpoint", str(tmp_path), "--out"]
    assert main([*args, str(tmp_path / "p.csv")]) == 2 and seen == {"workers": None}  # load_run's
    assert main([*args, str(tmp_path / "p.csv"), "--workers", "3"]) == 2 and seen == {"workers": 3}


def test_extract_decodes_in_the_workers_the_cores_allow(pinned, monkeypatch, tmp_path, keep_threads):
    from xvit.engine.infer import extract

    model, cfg, weights = extract.load_extractor(
        model_name="xvit_tiny_patch16", random_init=True, num_frames=2, img_size=32
    )
    seen = []

    def loader(*args, num_workers, **kwargs):
        seen.append(num_workers)
        raise RuntimeError("stop here")

    monkeypatch.setattr(extract, "DataLoader", loader)
    for cores_, opts_workers, want in ((1, None, 0), (2, None, 1), (16, None, 4), (16, 0, 0)):
        pinned(cores_)
        opts = extract.ExtractOptions(out=tmp_path / f"out{cores_}", workers=opts_workers, progress=False)
        with pytest.raises(RuntimeError, match="stop here"):
            extract.extract_videos(["a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"], opts, model, cfg, weights)
        assert seen[-1] == want, (cores_, opts_workers)


def test_serve_decodes_in_the_processes_the_cores_allow(pinned, monkeypatch):
    from xvit.cli.main import main
    from xvit.engine.serve import service

    pinned(2)
    assert service.ServeOptions().decode_workers == service.default_decode_workers() == 1
    pinned(1)
    assert service.ServeOptions().decode_workers == 1  # a pool needs one
    pinned(16)
    assert service.ServeOptions().decode_workers == 4
    seen = []

    class Service:
        def __init__(self, checkpoint, options, overrides=()):
            seen.append(options.decode_workers)
            raise ValueError("stop here")

    monkeypatch.setattr(service, "ModelService", Service)
    assert main(["serve", "--checkpoint", "x"]) == 2 and seen == [4]
    assert main(["serve", "--checkpoint", "x", "--decode-workers", "2"]) == 2 and seen == [4, 2]
