"""Optimiser parameter groups, the warm-up + cosine schedule, lr scaling and the weight EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from xvit.engine.run.schema import OptimConfig
from xvit.engine.train.optim import (
    ModelEma,
    WarmupCosine,
    build_optimizer,
    param_groups,
    scaled_lr,
    warmup_cosine,
)


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.pos_embed = nn.Parameter(torch.zeros(1, 3, 4))
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 4)
        self.gate = nn.Parameter(torch.ones(2, 2))  # excluded through no_weight_decay()
        self.frozen = nn.Parameter(torch.ones(2, 2), requires_grad=False)

    def no_weight_decay(self):
        return {"gate"}


def test_param_groups_exclude_norms_biases_embeddings():
    m = Toy()
    decay, no_decay = param_groups(m, 0.05)
    names = {id(p): n for n, p in m.named_parameters()}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {names[id(p)] for p in decay["params"]} == {"fc.weight"}
    assert {names[id(p)] for p in no_decay["params"]} == {
        "cls_token",
        "pos_embed",
        "norm.weight",
        "norm.bias",
        "fc.bias",
        "gate",
    }


def test_build_optimizer_kinds():
    m = Toy()
    sgd = build_optimizer(OptimConfig(name="sgd", momentum=0.8, nesterov=True), m, 0.1)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.8 and sgd.defaults["nesterov"]
    adamw = build_optimizer(OptimConfig(name="adamw", betas=[0.8, 0.9]), m, 0.1)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.8, 0.9)


def test_warmup_cosine_by_hand():
    f = WarmupCosine(warmup_steps=4, total_steps=10)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0)
    assert f(7) == pytest.approx(0.5)  # half-way through the 6 cosine steps
    assert f(10) == pytest.approx(0.0)
    g = WarmupCosine(0, 10, min_ratio=0.1)
    assert g(5) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_scheduler_sets_lr_each_step():
    m = nn.Linear(2, 2)
    opt = torch.optim.SGD(m.parameters(), lr=0.2)
    sched = warmup_cosine(opt, warmup_steps=2, total_steps=6, min_lr=0.02, lr=0.2)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ratio = 0.1
    expected = [0.1, 0.2] + [
        0.2 * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * k / 4))) for k in range(4)
    ]
    assert seen == pytest.approx(expected)


def test_scaled_lr():
    assert scaled_lr(OptimConfig(base_lr=0.03, base_batch_size=64), 16) == pytest.approx(0.0075)
    assert scaled_lr(OptimConfig(base_lr=0.03, base_batch_size=64), 128) == pytest.approx(0.06)
    assert scaled_lr(OptimConfig(lr=0.5), 16) == 0.5


def test_ema_update_by_hand():
    m = nn.Linear(2, 1)
    ema = ModelEma(m, decay=0.99)
    w0 = m.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)  # first update: decay min(0.99, 1/10) = 0.1
    assert torch.allclose(ema.module.weight, 0.1 * w0 + 0.9 * (w0 + 1.0))
    for _ in range(1000):
        ema.update(m)
    assert torch.allclose(ema.module.weight, m.weight, atol=1e-4)
