"""Training options: gradient accumulation equals the larger batch, linear lr scaling, bf16
autocast with activation checkpointing, weight decay groups on the real model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_engine_utils import TINY_MODEL, make_dataset, one_thread  # noqa: F401

from xvit.engine.run.config import load_config
from xvit.engine.train.loop import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("opts") / "data", n_train=8, n_val=2)


def _trainer(lists, out, *overrides, echo=False):
    # the synthetic recipe as a file (given lists, the built-in recipe no longer applies)
    cfg = load_config(
        CONFIGS / "synthetic.yaml",
        [
            *TINY_MODEL,
            f"data.train_list={lists['train']}",
            "train.epochs=1",
            "data.workers=0",
            "train.tensorboard=false",
            f"train.out={out}",
            *overrides,
        ],
    )
    return Trainer(cfg, echo=echo)


def test_accumulation_equals_the_larger_batch(lists, tmp_path):
    big = _trainer(lists, tmp_path / "big", "data.batch_size=4", "optim.accum_steps=1")
    small = _trainer(lists, tmp_path / "acc", "data.batch_size=2", "optim.accum_steps=2")
    assert big.total_batch == small.total_batch == 4 and big.steps_per_epoch == small.steps_per_epoch == 2
    a, b = big.run().model.state_dict(), small.run().model.state_dict()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    init = _trainer(lists, tmp_path / "init", "data.batch_size=4").model.state_dict()
    assert any(not torch.equal(init[k], a[k]) for k in a)  # training moved the weights


def test_lr_scales_with_the_total_batch(lists, tmp_path):
    t = _trainer(
        lists,
        tmp_path / "lr",
        "optim.lr=null",
        "optim.name=sgd",
        "data.batch_size=2",
        "optim.accum_steps=2",
        "optim.base_lr=0.03",
        "optim.base_batch_size=64",
    )
    assert t.lr == pytest.approx(0.03 * 4 / 64)
    assert isinstance(t.optimizer, torch.optim.SGD)
    # warm-up (1 epoch = 2 steps in the synthetic recipe's optim.warmup_epochs) then cosine
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(t.lr * 0.5)


def test_bf16_autocast_and_activation_checkpointing_train(lists, tmp_path):
    t = _trainer(
        lists,
        tmp_path / "bf16",
        "train.amp=bf16",
        "model.grad_checkpointing=true",
        "data.batch_size=4",
        "optim.ema=true",
    )
    assert t.amp_dtype == torch.bfloat16 and t.model.grad_checkpointing
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    res = t.run()
    after = res.model.state_dict()  # the EMA weights
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], t.model.state_dict()[k]) for k in before)
    assert res.history[0]["train_loss"] > 0 and math.isfinite(res.history[0]["train_loss"])


def test_weight_decay_groups_on_the_real_model(lists, tmp_path):
    t = _trainer(lists, tmp_path / "wd", "data.batch_size=4", "optim.weight_decay=0.1")
    names = {id(p): n for n, p in t.model.named_parameters()}
    decayed = {names[id(p)] for g in t.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert "blocks.0.attn.qkv.weight" in decayed and "patch_embed.proj.weight" in decayed
    for n in names.values():
        if n.endswith(("bias", "cls_token", "pos_embed", "temp_embed")) or ".norm" in n or "norm1" in n:
            assert n not in decayed, n


def test_bf16_training_where_bf16_is_slow_says_so(lists, tmp_path, monkeypatch, capsys):
    """train.amp=bf16 on a device whose bf16 products run at a fraction of fp32's (a CPU with
    no native bf16) trains as asked, with a warning naming both rates."""
    import xvit.engine.train.loop as loop

    why = "bf16 products run at 0.5 GFLOP/s against 30 in fp32 on this CPU (1.7%: no native bf16)"
    monkeypatch.setattr(
        loop, "slow_precision", lambda dtype, device: why if dtype == torch.bfloat16 else None
    )
    t = _trainer(lists, tmp_path / "slow", "train.amp=bf16", "data.batch_size=4", echo=True)
    res = t.run()
    assert res.history and math.isfinite(res.history[0]["train_loss"])
    assert f"warning: train.amp=bf16 will be slower than fp32 here: {why}" in capsys.readouterr().out
