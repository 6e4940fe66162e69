"""Multi-label data (``data.multi_label=true``): list files with label sets, multi-hot targets,
binary cross-entropy, mixup of multi-hot targets, mAP in training, `xvit eval` and `xvit predict`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_engine_utils import TINY_MODEL, make_dataset, one_thread  # noqa: F401

import xvit
from xvit.cli.main import main
from xvit.data.annotations import (
    AnnotationError,
    Sample,
    read_annotations,
    read_list_file,
    write_list_file,
)
from xvit.data.dataset import VideoDataset, collate
from xvit.engine.run.config import ConfigError, load_config
from xvit.engine.train.mixing import MultiHotMixup

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["left", "right", "down", "square"]  # the moves of make_dataset + a shared tag


def _strict_json(text: str):
    def refuse(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


# ----------------------------------------------------------------------------- list files


def test_multi_label_list_file(tmp_path):
    (tmp_path / "classes.txt").write_text("walk\nrun\nair drumming\nsit\n")
    (tmp_path / "list.txt").write_text(
        "# Charades style\n"
        "a/v1.mp4 0,2\n"
        "my videos/v 3.mp4 1\n"  # a path with spaces, one label
        "b/v2.mp4 walk, air drumming\n"  # class names, one with a space
        "frames/v4 120 3,1,3\n"  # rawframes dir num_frames labels; a repeated label counts once
    )
    ann = read_list_file(
        tmp_path / "list.txt", root="/data", class_names=tmp_path / "classes.txt", multi_label=True
    )
    assert [s.path for s in ann.samples] == [
        "/data/a/v1.mp4",
        "/data/my videos/v 3.mp4",
        "/data/b/v2.mp4",
        "/data/frames/v4",
    ]
    assert [s.label for s in ann.samples] == [(0, 2), (1,), (0, 2), (1, 3)]
    # written back and read again
    write_list_file(tmp_path / "again.txt", ann.samples, root="/data")
    again = read_list_file(tmp_path / "again.txt", root="/data", multi_label=True)
    assert [s.label for s in again.samples] == [s.label for s in ann.samples]


@pytest.mark.parametrize(
    "line, message",
    [
        ("v.mp4 0,9", ":2: label 9 is outside the class list [0, 4)"),
        ("v.mp4 0,", ":2: empty label in 'v.mp4 0,'"),
        ("v.mp4 dance", ":2: label 'dance' is not in the class list"),
        ("justapath", ":2: expected 'path label1,label2,...'"),
    ],
)
def test_multi_label_list_errors_name_file_and_line(tmp_path, line, message):
    (tmp_path / "list.txt").write_text(f"ok.mp4 0,1\n{line}\n")
    with pytest.raises(AnnotationError) as err:
        read_list_file(tmp_path / "list.txt", class_names=["a", "b", "c", "d"], multi_label=True)
    assert str(err.value).startswith(str(tmp_path / "list.txt")) and message in str(err.value)


def test_label_sets_without_multi_label_are_an_error(tmp_path):
    (tmp_path / "list.txt").write_text("ok.mp4 0\nv.mp4 1,2\n")
    with pytest.raises(AnnotationError, match=r":2: .*looks like several labels.*data.multi_label=true"):
        read_list_file(tmp_path / "list.txt")
    csv_file = tmp_path / "k.csv"
    csv_file.write_text("label,youtube_id,time_start,time_end,split\nabc,x,0,10,train\n")
    with pytest.raises(AnnotationError, match="multi-label annotations are read from list files"):
        read_annotations(csv_file, multi_label=True)


def test_multi_label_needs_list_files(tmp_path):
    from xvit.engine.run.data import read_split

    (tmp_path / "train.json").write_text("[]")
    cfg = load_config(None, ["data.multi_label=true", "data.format=ssv2"])
    with pytest.raises(ConfigError, match="data.multi_label=true reads list files"):
        read_split(cfg, str(tmp_path / "train.json"))


# ----------------------------------------------------------------------------- targets


def test_dataset_returns_multi_hot_targets(tmp_path):
    lists = make_dataset(tmp_path / "data", n_train=2, n_val=0)
    root = lists["train"].parent
    samples = [Sample(str(root / "train_000.mp4"), (0, 3)), Sample(str(root / "train_001.mp4"), (2,))]
    ds = VideoDataset(samples, num_frames=4, mode="eval", num_classes=4)
    items = [ds[0], ds[1]]
    assert items[0]["label"].tolist() == [1.0, 0.0, 0.0, 1.0]
    batch = collate(items)
    assert batch["label"].dtype == torch.float32
    assert batch["label"].tolist() == [[1, 0, 0, 1], [0, 0, 1, 0]]
    with pytest.raises(ValueError, match="needs num_classes"):
        VideoDataset(samples, num_frames=4, mode="eval")
    with pytest.raises(ValueError, match=r"labels \[3\] outside \[0, 3\)"):
        VideoDataset(samples, num_frames=4, mode="eval", num_classes=3)


@pytest.mark.parametrize("mixup, cutmix", [(0.8, 0.0), (0.0, 1.0)])
def test_multi_hot_mixup_blends_targets_like_the_clips(mixup, cutmix):
    # every clip a constant value, so the share of each source in a mixed clip can be read off
    values = torch.tensor([1.0, 10.0, 100.0, 1000.0])
    videos = values[:, None, None, None, None].expand(4, 3, 2, 16, 16).clone()
    targets = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    torch.manual_seed(3)
    mixed, soft = MultiHotMixup(mixup, cutmix)(videos, targets)
    for i in range(4):
        j = 3 - i  # mixed with the reversed batch
        if mixup:
            lam = float((mixed[i, 0, 0, 0, 0] - values[j]) / (values[i] - values[j]))
        else:
            lam = float((mixed[i] == values[i]).float().mean())
        assert 0 <= lam <= 1
        assert torch.allclose(soft[i], lam * targets[i] + (1 - lam) * targets[j], atol=1e-5)
    with pytest.raises(ValueError, match="multi-hot targets"):
        MultiHotMixup(0.8, 0.0)(videos, torch.tensor([0, 1, 2, 0]))


def test_training_loss_is_binary_cross_entropy(tmp_path):
    """With a zeroed classifier every logit is 0: BCE is ln 2 whatever the targets (cross-entropy
    over the 4 classes would be ln 4); mixup of multi-hot targets runs."""
    from xvit.engine.run.data import build_datasets
    from xvit.engine.run.model import build_model
    from xvit.engine.train.loop import Trainer

    lists = _multi_label_lists(tmp_path, n_train=4, n_val=0)
    cfg = load_config(
        None,
        [
            *TINY_MODEL,
            f"data.train_list={lists['train']}",
            "data.multi_label=true",
            f"data.class_names={lists['classnames']}",
            "optim.mixup=0.4",
            "optim.label_smoothing=0.1",
            "train.epochs=1",
            "data.batch_size=2",
            "data.workers=0",
            "train.log_every=1",
            "train.tensorboard=false",
            f"train.out={tmp_path / 'run'}",
        ],
    )
    data = build_datasets(cfg, (1, 1))
    model = build_model(cfg, len(data.class_names), data.class_names)
    with torch.no_grad():
        model.head.fc.weight.zero_()
        model.head.fc.bias.zero_()
    trainer = Trainer(cfg, data=data, model=model, echo=False)
    assert isinstance(trainer.mixer, MultiHotMixup)
    trainer.run()
    events = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    first = next(e for e in events if e["event"] == "train")
    assert first["step"] == 1 and first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert xvit.load_model(tmp_path / "run").config.multi_label is True


# ----------------------------------------------------------------------------- end to end


def _multi_label_lists(tmp_path, n_train=8, n_val=4, broken_val=0):
    """make_dataset's videos (a square moving left/right/down), each labelled with its move and,
    for every other video, the shared class "square"."""
    plain = make_dataset(tmp_path / "data", n_train=n_train, n_val=n_val, broken_val=broken_val)
    root = plain["train"].parent
    (root / "classnames.txt").write_text("\n".join(CLASSES) + "\n")
    out = {"classnames": root / "classnames.txt"}
    for split in ("train", "val"):
        lines = []
        for k, line in enumerate(plain[split].read_text().split("\n")):
            if line:
                name, label = line.rsplit(" ", 1)
                lines.append(f"{name} {label},3" if k % 2 == 0 else line)
        out[split] = root / f"ml_{split}.txt"
        out[split].write_text("\n".join(lines) + "\n")
    return out


def _expected_map(records, num_failed_positives):
    """Macro / micro mAP (percent) from the per-video probabilities with scikit-learn; the
    positives of failed videos are never retrieved, which scales each AP by the ranked share."""
    from sklearn.metrics import average_precision_score

    ok = [r for r in records if "error" not in r]
    probs = np.array([r["probs"] for r in ok])
    targets = np.array([[1 if c in r["labels"] else 0 for c in CLASSES] for r in ok])
    aps = []
    for k in range(len(CLASSES)):
        total = targets[:, k].sum() + num_failed_positives[k]
        if total:
            ranked = average_precision_score(targets[:, k], probs[:, k]) if targets[:, k].any() else 0.0
            aps.append(ranked * targets[:, k].sum() / total)
    micro = average_precision_score(targets.ravel(), probs.ravel())
    micro *= targets.sum() / (targets.sum() + sum(num_failed_positives))
    return 100 * np.mean(aps), 100 * micro


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("mlrun")
    lists = _multi_label_lists(root, n_train=8, n_val=4, broken_val=1)
    out = root / "run"
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(
            [
                "train",
                *TINY_MODEL,
                "--train-list",
                str(lists["train"]),
                "--val-list",
                str(lists["val"]),
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--workers",
                "0",
                "--out",
                str(out),
                "data.multi_label=true",
                "optim.cutmix=1.0",
                "train.tensorboard=false",
            ]
        )
    torch.set_num_threads(threads)
    assert rc == 0
    return root, lists, out, printed.getvalue()


def test_train_reports_map(run):
    pytest.importorskip("sklearn")
    _root, _lists, out, printed = run
    epoch_line = next(line for line in printed.splitlines() if line.startswith("epoch 1/1"))
    assert "val mAP " in epoch_line and "micro mAP" in epoch_line and "top1" not in epoch_line
    assert "validation (1x1 views, 5 videos, 1 failed): mAP " in printed
    assert load_config(out / "config.yaml").data.multi_label is True
    model = xvit.load_model(out)
    assert model.config.multi_label is True and model.config.class_names == CLASSES

    m = _strict_json((out / "metrics.json").read_text())
    assert (m["num_videos"], m["num_failed"]) == (5, 1) and "top1" not in m
    assert m["fuse"] == "mean of sigmoid over views"
    records = m["predictions"]
    assert records[-1]["error"] and records[-1]["labels"] == ["left", "square"]  # broken_0.mp4 0,3
    assert [r["labels"] for r in records[:4]] == [["left", "square"], ["right"], ["down", "square"], ["left"]]
    for r in records[:4]:
        assert len(r["probs"]) == 4 and all(0 < p < 1 for p in r["probs"])
        assert r["predicted"] == [c for c, p in zip(CLASSES, r["probs"]) if p >= 0.5]
    macro, micro = _expected_map(records, [1, 0, 0, 1])
    assert m["mAP"] == pytest.approx(macro, abs=1e-6) and m["micro_mAP"] == pytest.approx(micro, abs=1e-6)
    val = m["history"][0]["val"]
    assert val["mAP"] == pytest.approx(m["mAP"], abs=1e-6)  # 1x1 views both times


def test_eval_reports_map_over_views(run, capsys):
    pytest.importorskip("sklearn")
    root, lists, out, _ = run
    eval_dir = root / "eval21"
    rc = main(
        [
            "eval",
            "--checkpoint",
            str(out),
            "--list",
            str(lists["val"]),
            "--views",
            "2x1",
            "--views-curve",
            "--workers",
            "0",
            "--out",
            str(eval_dir),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 1  # the broken video
    assert "mean of sigmoid over views: mAP " in printed and "failed 1" in printed
    m = _strict_json((eval_dir / "metrics.json").read_text())
    macro, micro = _expected_map(m["predictions"], [1, 0, 0, 1])
    assert m["mAP"] == pytest.approx(macro, abs=1e-6) and m["micro_mAP"] == pytest.approx(micro, abs=1e-6)
    assert [r["views"] for r in m["views_curve"]] == [1, 2]
    assert m["views_curve"][-1]["mAP"] == pytest.approx(m["mAP"], abs=1e-3)
    assert "mAP" in (eval_dir / "views_curve.csv").read_text().splitlines()[0]


def test_predict_multi_label(run, capsys, tmp_path):
    _root, lists, out, _ = run
    video = str(lists["val"].parent / "val_000.mp4")
    # independent: the model's own sigmoid on the evaluation clip
    from xvit.engine.run.data import build_eval_dataset
    from xvit.engine.run.saved import load_run

    model, cfg = load_run(out)
    clip = build_eval_dataset(cfg, [Sample(video, (0,))], (1, 1), num_classes=4)[0]["video"]
    with torch.no_grad():
        expected = model.eval()(clip[None])[0].sigmoid()

    rc = main(["predict", video, "--checkpoint", str(out), "--json", "--topk", "2", "--threshold", "0"])
    result = json.loads(capsys.readouterr().out)[0]
    assert rc == 0 and result["threshold"] == 0
    assert [e["class"] for e in result["labels"]] == [CLASSES[i] for i in expected.argsort(descending=True)]
    assert [e["prob"] for e in result["labels"]] == pytest.approx(
        expected.sort(descending=True).values.tolist(), abs=1e-5
    )
    assert result["predictions"] == result["labels"][:2]

    # default threshold 0.5, text mode; the same model from a save_pretrained copy (no run config)
    copy = tmp_path / "copy"
    xvit.load_model(out).save_pretrained(copy)
    rc = main(["predict", video, "--checkpoint", str(copy)])
    line = capsys.readouterr().out.strip()
    above = (
        ", ".join(
            f"{CLASSES[i]} {float(expected[i]):.3f}"
            for i in expected.argsort(descending=True)
            if expected[i] >= 0.5
        )
        or "none"
    )
    assert rc == 0 and line.startswith(f"{video}: labels (p >= 0.5): {above}; top 4: ")

    rc = main(["predict", video, "--checkpoint", str(out), "--json", "--threshold", "1"])
    assert rc == 0 and json.loads(capsys.readouterr().out)[0]["labels"] == []


def test_old_model_configs_load_as_single_label(tmp_path):
    model = xvit.create_model("vit_tiny_patch16", num_classes=2, num_frames=2, img_size=32)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config.pop("multi_label") is False
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert xvit.load_model(tmp_path).config.multi_label is False
