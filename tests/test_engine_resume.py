"""Resumable training: a run killed with SIGKILL and started again with the same command ends
with exactly the weights of an uninterrupted run (CPU, bit for bit)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from test_engine_utils import TINY_MODEL, make_dataset, one_thread, run_xvit  # noqa: F401

from xvit.cli.main import main
from xvit.engine.train import checkpoint as ckpt

pytestmark = pytest.mark.usefixtures("one_thread")


def _args(lists, out):
    return [
        "train",
        *TINY_MODEL,
        f"data.train_list={lists['train']}",
        f"data.val_list={lists['val']}",
        "train.epochs=3",
        "data.batch_size=4",
        "data.workers=1",
        "train.checkpoint_every=3",
        "train.keep_checkpoints=0",
        "train.tensorboard=false",
        # exercise every source of randomness and every piece of state
        "optim.mixup=0.4",
        "optim.label_smoothing=0.1",
        "model.drop_path_rate=0.1",
        "optim.ema=true",
        "optim.ema_decay=0.9",
        "data.train_scale=[32,40]",
        f"--out={out}",
    ]


def test_sigkill_then_same_command_matches_uninterrupted_run(tmp_path, capsys):
    lists = make_dataset(tmp_path / "data", n_train=16, n_val=4)
    ref, killed = tmp_path / "ref", tmp_path / "killed"

    assert main(_args(lists, ref)) == 0  # the uninterrupted reference, in this process
    printed = capsys.readouterr().out
    assert "val top1" in printed and "validation (1x1 views" in printed

    # 4 steps per epoch, 12 in all; checkpoints every 3 steps and at each epoch end.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "xvit.cli.main", *_args(lists, killed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    deadline = time.time() + 120
    target = killed / "checkpoints" / "step_00000006.pt"  # in the middle of epoch 2
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "model.safetensors").exists()
    newest = ckpt.list_checkpoints(killed / "checkpoints")[-1]
    assert ckpt.load_checkpoint(newest)["global_step"] < 12

    again = run_xvit(*_args(lists, killed))
    assert again.returncode == 0, again.stderr
    assert f"resuming from {newest}" in again.stdout

    a, b = load_file(ref / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _two_epochs_in_process(tmp_path):
    """The tiny model on a 12-video list for 2 epochs of 3 steps, a checkpoint every 2 steps."""
    lists = make_dataset(tmp_path / "data", n_train=12, n_val=3)
    return [
        *TINY_MODEL,
        f"data.train_list={lists['train']}",
        f"data.val_list={lists['val']}",
        "train.epochs=2",
        "data.batch_size=4",
        "data.workers=0",
        "train.checkpoint_every=2",
        "train.keep_checkpoints=0",
        "train.tensorboard=false",
    ]


def test_resume_from_every_checkpoint_in_process(tmp_path):
    """Each saved position (mid-epoch and epoch end) continues to the same final weights."""
    from xvit.engine.run.config import load_config
    from xvit.engine.train.loop import train

    base = [
        *_two_epochs_in_process(tmp_path),
        "model.drop_path_rate=0.2",
        "optim.accum_steps=1",
    ]
    ref = train(load_config(None, base + [f"train.out={tmp_path / 'ref'}"]), echo=False)
    saved = ckpt.list_checkpoints(tmp_path / "ref" / "checkpoints")
    assert [p.name for p in saved] == [f"step_{s:08d}.pt" for s in (2, 3, 4, 6)]
    for path in saved[:2]:  # mid-epoch (step 2 of 3) and an epoch end (step 3)
        out = tmp_path / f"from_{path.stem}"
        (out / "checkpoints").mkdir(parents=True)
        (out / "checkpoints" / path.name).write_bytes(path.read_bytes())
        res = train(load_config(None, base + [f"train.out={out}"]), echo=False)
        for (k, v), (_, w) in zip(ref.model.state_dict().items(), res.model.state_dict().items()):
            assert torch.equal(v, w), (path.name, k)


def test_fresh_starts_over(tmp_path):
    from xvit.engine.run.config import load_config
    from xvit.engine.train.loop import Trainer

    lists = make_dataset(tmp_path / "data", n_train=8, n_val=2)
    cfg = load_config(
        None,
        [
            *TINY_MODEL,
            f"data.train_list={lists['train']}",
            "train.epochs=1",
            "data.batch_size=4",
            "data.workers=0",
            "train.tensorboard=false",
            f"train.out={tmp_path / 'run'}",
        ],
    )
    Trainer(cfg, echo=False).run()
    again = Trainer(cfg, echo=False)
    assert again.global_step == 2  # resumes at the end
    again.close()
    fresh = Trainer(cfg, fresh=True, echo=False)
    assert fresh.global_step == 0 and not ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")
    # closed before its first checkpoint: the --fresh start is undone
    fresh.close()
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step_00000002.pt"]
    fresh = Trainer(cfg, fresh=True, echo=False)
    res = fresh.run()
    assert res.global_step == 2 and not list((tmp_path / "run").glob(".previous-*"))
    log = (tmp_path / "run" / "log.jsonl").read_text()
    assert log.count('"event": "start"') == 1  # the first run's log went with it


def test_a_checkpoint_from_before_head_cls_resumes_with_the_token_alone(tmp_path, capsys):
    """A temporal-attention run checkpointed before `head_cls` existed (its head took the CLS
    token alone, its classifier was the MLP; the checkpoint holds no model config) resumes
    computing what it trained, not this version's defaults, and ends with the weights of the
    run that never stopped."""
    from xvit.engine.run.config import load_config
    from xvit.engine.train.loop import train

    base = [*_two_epochs_in_process(tmp_path), "model.head=ta"]
    token = ["model.overrides.head_cls=token", "model.overrides.head_classifier=mlp"]
    ref = train(load_config(None, base + token + [f"train.out={tmp_path / 'ref'}"]), echo=False)
    assert ref.model.config.head_cls == "token" and not ref.model.head.cls_mean
    path = ckpt.list_checkpoints(tmp_path / "ref" / "checkpoints")[0]
    state = torch.load(path, weights_only=True)
    assert state["model_config"]["head_cls"] == "token"
    # as written before the field: no model config, and the run's config without the overrides
    del state["model_config"]
    del state["config"]["model"]["overrides"]["head_cls"]
    del state["config"]["model"]["overrides"]["head_classifier"]
    out = tmp_path / "old"
    (out / "checkpoints").mkdir(parents=True)
    torch.save(state, out / "checkpoints" / path.name)
    capsys.readouterr()
    res = train(load_config(None, base + [f"train.out={out}"]), echo=True)
    assert (
        "the checkpoint's temporal-attention head was trained with head_cls='token', "
        "head_classifier='mlp': resumed so" in capsys.readouterr().out
    )
    assert res.model.config.head_cls == "token" and res.model.config.head_classifier == "mlp"
    for (k, v), (_, w) in zip(ref.model.state_dict().items(), res.model.state_dict().items()):
        assert torch.equal(v, w), k
    # the saved model says so, and loads as it was trained
    import xvit

    assert xvit.load_model(out).config.head_cls == "token"
    assert xvit.load_model(out).config.head_classifier == "mlp"
