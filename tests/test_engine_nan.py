"""A NaN or infinite loss stops the run with a clear message; the last good checkpoint stays."""

from __future__ import annotations

import pytest
import torch
from test_engine_utils import TINY_MODEL, make_dataset, one_thread  # noqa: F401
from torch import nn

from xvit.engine import checkpoint as ckpt
from xvit.engine.config import load_config
from xvit.engine.data import build_datasets
from xvit.engine.train import NonFiniteLossError, Trainer, build_model

pytestmark = pytest.mark.usefixtures("one_thread")


class PoisonAt(nn.Module):
    """The real model, except that forward call number ``at`` (1-based) returns ``value``."""

    def __init__(self, model: nn.Module, at: int, value: float) -> None:
        super().__init__()
        self.model, self.at, self.value, self.calls = model, at, value, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.model(x)
        return out * self.value if self.calls == self.at else out


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, value):
    lists = make_dataset(tmp_path / "data", n_train=12, n_val=2)
    cfg = load_config(None, [*TINY_MODEL, f"data.train_list={lists['train']}",
                             "train.epochs=2", "data.batch_size=2", "data.workers=0",
                             "train.checkpoint_every=2", "train.tensorboard=false",
                             f"train.out={tmp_path / 'run'}"])
    data = build_datasets(cfg, (1, 1))
    model = PoisonAt(build_model(cfg, len(data.class_names)), at=5, value=value)
    trainer = Trainer(cfg, data=data, model=model, echo=False)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.run()
    msg = str(err.value)
    assert "non-finite loss" in msg and "step 5" in msg and "step_00000004.pt" in msg

    saved = ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [p.name for p in saved] == ["step_00000002.pt", "step_00000004.pt"]
    state = ckpt.load_checkpoint(saved[-1])
    assert state["global_step"] == 4
    # the checkpoint holds the weights the run had when it stopped: the poisoned step never
    # reached the optimiser
    for k, v in trainer.model.state_dict().items():
        assert torch.isfinite(v).all() if v.is_floating_point() else True
        assert torch.equal(state["model"][k], v), k
    assert not (tmp_path / "run" / "model.safetensors").exists()
