"""`--device` that names no device, or a CUDA device this machine has not: every command that
takes it answers with one line and exit 2 before writing anything (no traceback)."""

from __future__ import annotations

import pytest
import torch
from test_engine_utils import make_dataset, one_thread  # noqa: F401

import xvit
from xvit.cli.main import main
from xvit.engine.run.distributed import DeviceError, resolve_device
from xvit.models.storage import save_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")
NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("dev")
    lists = make_dataset(root / "data", n_train=2, n_val=2, frames=8, size=32)
    model = xvit.create_model(
        "xvit_tiny_patch16", num_classes=3, num_frames=4, img_size=32, embed_dim=64, depth=2, num_heads=2
    )
    save_pretrained(model.eval(), root / "ckpt")
    return root, lists


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda:0") if not NO_CUDA else torch.device("cpu"))
    for bad, why in (("foo", "is not a device"), ("meta", "is not supported"), ("cuda:99", "CUDA")):
        with pytest.raises(DeviceError, match=why):
            resolve_device(bad)


def commands(root, lists, out):
    ck, video = str(root / "ckpt"), str(root / "data" / "videos" / "val_0000.mp4")
    train_list, val_list = str(lists["train"]), str(lists["val"])
    return {
        "train": ["train", "--train-list", train_list, "--model", "xvit_tiny_patch16", "--out", str(out)],
        "eval": ["eval", "--checkpoint", ck, "--list", val_list, "--out", str(out)],
        "predict": ["predict", video, "--checkpoint", ck],
        "predict --list": ["predict", "--list", val_list, "--checkpoint", ck, "--out", str(out) + ".csv"],
        "timeline": ["predict", "--timeline", video, "--checkpoint", ck, "--out", str(out) + ".json"],
        "stream": ["predict", "--stream", video, "--checkpoint", ck],
        "extract": ["extract", "--checkpoint", ck, "--list", val_list, "--out", str(out)],
        "serve": ["serve", "--checkpoint", ck, "--port", "0"],
    }


@pytest.mark.parametrize("device", ["foo", *(["cuda", "cuda:0"] if NO_CUDA else ["cuda:99"])])
@pytest.mark.parametrize(
    "command", ["train", "eval", "predict", "predict --list", "timeline", "stream", "extract", "serve"]
)
def test_a_device_this_machine_has_not_is_one_line_and_exit_2(ckpt, tmp_path, capsys, command, device):
    root, lists = ckpt
    out = tmp_path / "out"
    argv = commands(root, lists, out)[command]
    assert main([*argv, "--device", device]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: device" in err[0] and repr(device) in err[0], err
    assert "Traceback" not in err[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_serve_on_a_taken_port_is_one_line_before_the_model_loads(ckpt, capsys, monkeypatch):
    """`xvit serve --port P` where another server listens on P: exit 2 and one line naming
    the address, before the model is loaded (no uvicorn log lines, no warm-up)."""
    import socket

    from xvit.engine.serve import service

    loaded = []
    monkeypatch.setattr(service.ModelService, "__init__", lambda *a, **k: loaded.append(1))
    root, _ = ckpt
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--checkpoint", str(root / "ckpt"), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot listen on 127.0.0.1:{port}" in err[0] and "another --port" in err[0]
    assert loaded == []
    assert main(["serve", "--checkpoint", str(root / "ckpt"), "--host", "no.such.host.invalid"]) == 2
    assert "--host no.such.host.invalid" in capsys.readouterr().err
