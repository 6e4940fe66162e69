"""DDP on CPU: two gloo processes train in lockstep and score every video exactly once."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from test_engine_utils import TINY_MODEL, make_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, overrides: list[str], val_list: str, results: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    from xvit.engine.evaluate.eval_run import evaluate_checkpoint
    from xvit.engine.run.config import load_config
    from xvit.engine.run.distributed import cleanup
    from xvit.engine.train.loop import train

    cfg = load_config(None, overrides)
    res = train(cfg, echo=False)
    state = {k: v.detach().contiguous().clone() for k, v in res.model.state_dict().items()}
    save_file(state, os.path.join(results, f"rank{rank}.safetensors"))
    evaluate_checkpoint(
        cfg.train.out,
        val_list,
        overrides=["eval.views=2x3", "data.workers=0"],
        out=os.path.join(results, "ddp_eval"),
    )
    cleanup()


def test_two_process_training_and_evaluation(tmp_path):
    from xvit.engine.evaluate.eval_run import evaluate_checkpoint

    lists = make_dataset(tmp_path / "data", n_train=12, n_val=4, broken_val=1)  # 5 videos: 3 + 2
    out = tmp_path / "run"
    overrides = [
        *TINY_MODEL,
        f"data.train_list={lists['train']}",
        f"data.val_list={lists['val']}",
        "train.epochs=2",
        "data.batch_size=2",
        "data.workers=0",
        "train.tensorboard=false",
        "train.device=cpu",
        f"train.out={out}",
    ]
    mp.spawn(_worker, args=(2, _free_port(), overrides, str(lists["val"]), str(tmp_path)), nprocs=2)

    # both ranks hold the same weights, and they are the saved model's
    r0, r1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    saved = load_file(out / "model.safetensors")
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
        assert torch.equal(r0[k], saved[k]), k
    train_metrics = json.loads((out / "metrics.json").read_text())
    assert train_metrics["world_size"] == 2 and train_metrics["global_step"] == 6  # 12 / (2 x 2) x 2
    assert train_metrics["num_videos"] == 5 and train_metrics["num_failed"] == 1

    # distributed evaluation == single-process evaluation of the same checkpoint
    single = evaluate_checkpoint(
        out, lists["val"], overrides=["eval.views=2x3", "data.workers=0"], out=tmp_path / "single_eval"
    )
    ddp = json.loads((tmp_path / "ddp_eval" / "metrics.json").read_text())
    for key in ("top1", "top5", "mean_class_accuracy", "clip_top1", "num_videos", "num_failed"):
        assert ddp[key] == single[key], key
    assert ddp["num_videos"] == 5 and ddp["num_failed"] == 1
    single_doc = json.loads((tmp_path / "single_eval" / "metrics.json").read_text())
    assert [p["index"] for p in ddp["predictions"]] == [0, 1, 2, 3, 4]  # each video once
    for a, b in zip(ddp["predictions"], single_doc["predictions"], strict=True):
        assert {k: v for k, v in a.items() if k != "top"} == {k: v for k, v in b.items() if k != "top"}
        if "top" in a:  # batches differ between the runs: equal up to float rounding
            assert [c for c, _ in a["top"]] == [c for c, _ in b["top"]]
            assert [p for _, p in a["top"]] == pytest.approx([p for _, p in b["top"]], abs=1e-5)
    assert [f["path"] for f in ddp["failed"]] == [str(lists["val"].parent / "broken_0.mp4")]
