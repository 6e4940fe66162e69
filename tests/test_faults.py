"""Fault injection: nothing already done is lost, and nothing is silently wrong.

A second run on the same directory, a --fresh start that fails, an unreadable newest
checkpoint with pruning, an unusable output directory, a full disk while checkpointing,
changed settings on resume, untrained "results", and non-finite numbers in JSON files.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_engine_utils import TINY_MODEL, make_dataset, one_thread  # noqa: F401

from xvit.cli.main import main
from xvit.engine.evaluate.report import write_metrics
from xvit.engine.run.rundir import (
    FreshStart,
    RunDirError,
    RunLock,
    RunLockedError,
    check_output_dir,
)
from xvit.engine.train import checkpoint as ckpt

pytestmark = pytest.mark.usefixtures("one_thread")


def _no_constants(name: str):
    raise ValueError(f"not strict JSON: {name}")


def strict_load(path: Path):
    """json.loads that refuses NaN / Infinity (which are not JSON)."""
    return json.loads(path.read_text(), parse_constant=_no_constants)


def _train_args(lists, out, *extra):
    return [
        "train",
        *TINY_MODEL,
        "--train-list",
        str(lists["train"]),
        "--val-list",
        str(lists["val"]),
        "--batch-size",
        "4",
        "--workers",
        "0",
        "train.tensorboard=false",
        "train.log_every=1",
        "train.keep_checkpoints=0",
        "--out",
        str(out),
        *extra,
    ]


def _snapshot(out: Path) -> dict[str, bytes]:
    """Every file of a run directory (but the lock) and its bytes."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 1-epoch run (2 steps, mixup on, so its training accuracy is NaN)."""
    root = tmp_path_factory.mktemp("faults")
    lists = make_dataset(root / "data", n_train=8, n_val=2)
    out = root / "run"
    torch.set_num_threads(1)
    assert main(_train_args(lists, out, "--epochs", "1", "optim.mixup=0.2")) == 0
    return lists, out


@pytest.fixture
def run_copy(finished, tmp_path):
    lists, out = finished
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    return lists, copy


# ---------------------------------------------------------------- two runs, one directory


def test_second_run_on_the_same_directory_fails_at_once_naming_the_first(finished, tmp_path, capsys):
    lists, _ = finished
    out = tmp_path / "busy"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "xvit.cli.main", *_train_args(lists, out, "--epochs", "1000")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.time() + 60
        holder = {}
        while time.time() < deadline and first.poll() is None:
            try:
                holder = json.loads((out / ".lock").read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
            if holder.get("pid") == first.pid:
                break
            time.sleep(0.05)
        assert holder.get("pid") == first.pid, first.stderr.read() if first.poll() is not None else holder
        assert "xvit train" in holder["command"] and holder["host"] and holder["started"]

        start = time.perf_counter()
        rc = main(_train_args(lists, out, "--epochs", "1000"))
        took = time.perf_counter() - start
        err = capsys.readouterr().err
        assert rc == 2 and took < 5, took
        assert err.count("\n") == 1 and err.startswith("xvit train: error: ")
        assert f"pid {first.pid}" in err and "xvit train" in err and str(out) in err
        assert first.poll() is None  # the first run was not disturbed
    finally:
        first.kill()
        first.wait()
    # kill -9 leaves the lock file, but the kernel released the lock
    lock = RunLock(out, ["test"])
    assert lock.acquire() and json.loads((out / ".lock").read_text())["pid"] == os.getpid()
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        RunLock(out).acquire()
    lock.release()


# ---------------------------------------------------------------- --fresh is a transaction


def test_fresh_that_fails_keeps_the_finished_run(run_copy, capsys, monkeypatch):
    lists, out = run_copy
    before = _snapshot(out)
    assert {"model.safetensors", "metrics.json", "config.yaml", "checkpoints/step_00000002.pt"} <= set(before)

    # bad values found only once the data is read (8 clips, a batch of 64), or up front
    for bad in (["--batch-size", "64"], ["--batch-size", "0"]):
        assert main(_train_args(lists, out, "--epochs", "1", *bad, "--fresh")) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "batch_size" in err
        assert _snapshot(out) == before, bad

    # a failure (here an interruption) in the new run's first epoch, before its first checkpoint
    from xvit.engine.train.loop import Trainer

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_optimizer_step", interrupted)
    assert main(_train_args(lists, out, "--epochs", "1", "--fresh")) == 130
    assert "restored the previous run" in capsys.readouterr().out
    assert _snapshot(out) == before
    assert not list(out.glob(".previous-*"))


def test_fresh_that_succeeds_replaces_the_run(run_copy, capsys):
    lists, out = run_copy
    old_model = (out / "model.safetensors").read_bytes()
    assert main(_train_args(lists, out, "--epochs", "1", "--seed", "5", "--fresh")) == 0
    assert not list(out.glob(".previous-*"))  # deleted once the new run had a checkpoint
    events = [json.loads(line)["event"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert events.count("start") == 1 and events[-1] == "end"  # the old log is gone
    assert (out / "model.safetensors").read_bytes() != old_model
    assert "seed: 5" in (out / "config.yaml").read_text()


def test_fresh_killed_before_its_first_checkpoint_is_undone_by_the_next_run(run_copy, capsys):
    """kill -9 between setting the old run aside and the new run's first checkpoint: the next
    run on the directory puts the old run back (and resumes it)."""
    from xvit.engine.run.config import load_config
    from xvit.engine.train.loop import Trainer

    lists, out = run_copy
    before = _snapshot(out)
    FreshStart(out, say=lambda _: None).begin()  # what the killed --fresh run had done
    (out / "config.yaml").write_text("partial: new run\n")  # and what it had started writing
    (out / ".metrics.json.x1y2.tmp").write_text("{")  # a write cut short by the kill
    assert not (out / "checkpoints").exists()
    cfg = load_config(
        None,
        [
            *TINY_MODEL,
            f"data.train_list={lists['train']}",
            f"data.val_list={lists['val']}",
            "data.batch_size=4",
            "data.workers=0",
            "train.epochs=1",
            "optim.mixup=0.2",
            "train.tensorboard=false",
            "train.log_every=1",
            "train.keep_checkpoints=0",
            f"train.out={out}",
        ],
    )
    t = Trainer(cfg, echo=True)
    try:
        assert "restored the previous run" in capsys.readouterr().out
        assert t.global_step == 2  # resumed the restored run
        after = _snapshot(out)
        assert after.pop("log.jsonl").startswith(before.pop("log.jsonl"))  # + a resume event
        assert after == before and not list(out.glob(".previous-*"))
    finally:
        t.close()


# ---------------------------------------------------------------- pruning


def test_pruning_never_removes_the_newest_good_checkpoint(run_copy, capsys):
    """keep_checkpoints=1 and an unreadable newest file (step 100): resuming used to delete
    every new good checkpoint and keep only the unreadable one."""
    lists, out = run_copy
    (out / "checkpoints" / "step_00000100.pt").write_bytes(b"not a checkpoint")
    rc = main(_train_args(lists, out, "--epochs", "2", "optim.mixup=0.2", "train.keep_checkpoints=1"))
    printed = capsys.readouterr().out
    assert rc == 0
    assert f"resuming from {out / 'checkpoints' / 'step_00000002.pt'}" in printed
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["step_00000004.pt", "step_00000100.pt.unreadable"]
    assert ckpt.load_checkpoint(out / "checkpoints" / "step_00000004.pt")["global_step"] == 4
    # the warning about the unreadable file is one line
    warning = [line for line in printed.splitlines() if "step_00000100.pt" in line and "warning" in line]
    assert len(warning) == 1 and "moved to step_00000100.pt.unreadable" in warning[0]


# ---------------------------------------------------------------- output locations


def test_unusable_output_directory_fails_before_the_work(finished, tmp_path, capsys, monkeypatch):
    lists, run = finished
    a_file = tmp_path / "a_file"
    a_file.write_text("x")

    import xvit.engine.evaluate.eval_run as ev

    def must_not_run(*args, **kwargs):
        raise AssertionError("evaluated before checking --out")

    monkeypatch.setattr(ev, "evaluate", must_not_run)
    for out in (a_file, a_file / "sub"):
        rc = main(["eval", "--checkpoint", str(run), "--list", str(lists["val"]), "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and str(a_file) in err, err
        assert "not a directory" in err

    for out in (a_file, a_file / "sub"):
        start = time.perf_counter()
        rc = main(_train_args(lists, out, "--epochs", "1"))
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and str(a_file) in err, err
        assert time.perf_counter() - start < 5
    assert a_file.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to a read-only directory")
def test_unwritable_directory_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(RunDirError, match="cannot write"):
            check_output_dir(ro / "out")
    finally:
        ro.chmod(0o755)


# ---------------------------------------------------------------- disk full


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit raises EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_disk_full_while_checkpointing(run_copy):
    lists, out = run_copy
    ckpt_file = out / "checkpoints" / "step_00000002.pt"
    good = ckpt_file.read_bytes()
    limit = len(good) // 2  # log lines fit, a checkpoint does not
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "xvit.cli.main", *_train_args(lists, out, "--epochs", "2", "optim.mixup=0.2")],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        preexec_fn=_limit_file_size(limit),
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "cannot write checkpoint" in proc.stderr and "File too large" in proc.stderr
    assert f"{ckpt_file} is intact" in proc.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002.pt"]
    assert ckpt_file.read_bytes() == good  # the previous checkpoint, untouched
    assert not list(out.rglob("*.tmp"))


# ---------------------------------------------------------------- resuming with other settings


def _lrs(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["lr"] for r in rows if r["event"] == "train"}


def test_changed_lr_on_resume_applies_and_is_recorded(run_copy, tmp_path, capsys):
    """The resumed run follows the schedule of the new peak lr: its learning rates equal
    those of a run that had the new lr from the start."""
    from xvit.engine.run.config import load_config

    lists, out = run_copy
    old = load_config(out / "config.yaml").optim.lr  # the recipe's: null (scaled base_lr)
    ref = tmp_path / "ref"
    assert main(_train_args(lists, ref, "--epochs", "2", "optim.mixup=0.2", "--lr", "0.004")) == 0
    capsys.readouterr()

    assert main(_train_args(lists, out, "--epochs", "2", "optim.mixup=0.2", "--lr", "0.004")) == 0
    printed = capsys.readouterr().out
    assert f"optim.lr: {old!r} -> 0.004" in printed and "train.epochs: 1 -> 2" in printed
    resumed, expected = _lrs(out), _lrs(ref)
    assert sorted(resumed) == [1, 2, 3, 4]
    assert [resumed[s] for s in (3, 4)] == [expected[s] for s in (3, 4)]
    assert load_config(out / "config.yaml").optim.lr == 0.004
    resume = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"resume"' in line]
    assert resume[-1]["changed"]["optim.lr"] == [old, 0.004] and resume[-1]["lr"] == 0.004


@pytest.mark.parametrize(
    "change", [["--batch-size", "2"], ["--seed", "3"], ["data.sampling=dense"], ["optim.weight_decay=0.5"]]
)
def test_changed_identity_on_resume_is_refused(run_copy, capsys, change):
    lists, out = run_copy
    before = _snapshot(out)
    assert main(_train_args(lists, out, "--epochs", "2", "optim.mixup=0.2", *change)) == 2
    err = capsys.readouterr().err
    key = {"--batch-size": "data.batch_size", "--seed": "train.seed"}.get(change[0], change[0].split("=")[0])
    assert err.count("\n") == 1 and key in err and "--fresh" in err, err
    assert _snapshot(out) == before  # nothing trained, nothing rewritten


def test_resuming_past_the_requested_epochs_is_refused(finished, tmp_path, capsys):
    lists, _ = finished
    out = tmp_path / "two"
    assert main(_train_args(lists, out, "--epochs", "2")) == 0
    capsys.readouterr()
    before = _snapshot(out)
    # epochs=1 would present a 2-epoch model as a 1-epoch result
    from xvit.engine.run.config import ConfigError, load_config
    from xvit.engine.train.loop import Trainer

    cfg = load_config(out / "config.yaml", ["train.epochs=1"])
    with pytest.raises(ConfigError, match="past train.epochs=1"):
        Trainer(cfg, echo=False)
    assert _snapshot(out) == before
    # all epochs done, same settings: the run re-finishes (same model)
    model = (out / "model.safetensors").read_bytes()
    assert main(_train_args(lists, out, "--epochs", "2")) == 0
    assert (out / "model.safetensors").read_bytes() == model


def test_zero_epochs_writes_no_result(finished, tmp_path, capsys):
    lists, _ = finished
    for epochs in ("0", "-1"):
        out = tmp_path / f"e{epochs}"
        assert main(_train_args(lists, out, "--epochs", epochs)) == 2
        assert "train.epochs" in capsys.readouterr().err
        assert not (out / "model.safetensors").exists() and not (out / "metrics.json").exists()


# ---------------------------------------------------------------- strict JSON


def test_json_files_are_strict(finished, tmp_path):
    _, out = finished
    doc = strict_load(out / "metrics.json")  # mixup: the training accuracy is NaN
    assert doc["history"][0]["train_top1"] is None
    assert "history[0].train_top1" in doc["non_finite"]["keys"]
    for line in (out / "log.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=_no_constants)

    path = write_metrics(
        tmp_path / "m" / "metrics.json", {"top1": float("nan"), "top5": float("inf"), "num_videos": 3}
    )
    doc = strict_load(path)
    assert doc["top1"] is None and doc["top5"] is None and doc["num_videos"] == 3
    assert doc["non_finite"]["keys"] == ["top1", "top5"] and "NaN or infinite" in doc["non_finite"]["reason"]
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temporary file left


@pytest.mark.parametrize(
    "args, key",
    [
        (["--num-train", "-1"], "num_train"),
        (["--size", "17"], "size must be even"),
        (["--size", "8"], "size must be >= 16"),
        (["--num-frames", "1"], "num_frames"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_data_synth_refuses_bad_sizes_before_writing(tmp_path, capsys, args, key):
    out = tmp_path / "synth"
    assert main(["data", "synth", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xvit data synth: error:") and key in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "error, code, text",
    [
        (KeyboardInterrupt(), 130, "xvit data: interrupted"),
        (
            OSError(28, "No space left on device", "/full/x.mp4"),
            1,
            "xvit data: error: /full/x.mp4: No space left on device",
        ),
    ],
)
def test_unhandled_interrupt_and_os_errors_end_in_one_line(monkeypatch, capsys, error, code, text):
    """Any command: Ctrl-C is 130 and an I/O error is 1, each one line, never a traceback."""
    import xvit.cli.data as data_cli

    def boom(args):
        raise error

    monkeypatch.setattr(data_cli, "_leak_check", boom)
    assert main(["data", "leak-check", "somewhere"]) == code
    err = capsys.readouterr().err
    assert err.strip() == text
