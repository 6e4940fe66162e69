"""`xvit serve`: answers equal `xvit predict` (and `--timeline`), every bad input's status
code, no temporary file left behind, concurrent requests batched into shared model calls,
503 past the queue limit, 504 past the timeout, graceful shutdown, CORS off by default."""

from __future__ import annotations

import json
import logging
import re
import tempfile
import threading
import time

import pytest
import torch
from _model_helpers import tiny_segmented_xvit
from _video_fixtures import write_video
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine_utils import one_thread  # noqa: F401

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
from fastapi.testclient import TestClient  # noqa: E402

from xvit.cli.main import main  # noqa: E402
from xvit.engine.serve.app import create_app  # noqa: E402
from xvit.engine.serve.service import ModelService, ServeOptions  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["walk", "run", "jump", "sit", "wave"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny X-ViT with random weights that move the output, a 2-second clip, a broken file."""
    root = tmp_path_factory.mktemp("serve")
    torch.manual_seed(0)
    model = tiny_segmented_xvit(CLASSES)
    with torch.no_grad():
        model.patch_embed.proj.weight.mul_(30)
        classifier = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1]
        classifier.weight.normal_(std=2.0)
    model.save_pretrained(root / "model")
    clip = write_video(root / "clip.mp4", num_frames=50, height=48, width=64, fps=25)
    broken = root / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 3)
    truncated = root / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[:1500])
    return root, root / "model", clip, broken, truncated


@pytest.fixture
def tmpdir_count(tmp_path, monkeypatch):
    """The temporary directory the server writes uploads to, and what is in it (but for
    multiprocessing's own directory of this process, removed when it exits)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return lambda: sorted(p.name for p in tmp.iterdir() if not p.name.startswith("pymp-"))


def service(files, **kw):
    return ModelService(files[1], ServeOptions(decode_workers=1, **kw))


def upload(c, path, name=None, **fields):
    with open(path, "rb") as f:
        return c.post("/v1/predict", files={"file": (name or path.name, f, "video/mp4")}, data=fields)


def test_answers_equal_xvit_predict_and_timeline(files, capsys, tmpdir_count, caplog):
    root, ckpt, clip, _, _ = files
    assert main(["predict", str(clip), "--checkpoint", str(ckpt), "--json", "--topk", "5"]) == 0
    expected = json.loads(capsys.readouterr().out)[0]["predictions"]
    out = root / "timeline.json"
    assert main(["predict", str(clip), "--checkpoint", str(ckpt), "--timeline", "--out", str(out)]) == 0
    timeline = json.loads(out.read_text())
    caplog.set_level(logging.INFO, logger="xvit.serve")
    with TestClient(create_app(service(files))) as c:
        r = upload(c, clip, timeline="true", topk="5")
        assert r.status_code == 200, r.text
        got = r.json()
        plain = upload(c, clip).json()  # defaults: no timeline, top-5
        info = c.get("/v1/model").json()
        health = c.get("/v1/health").json()
        metrics = c.get("/metrics").text
    assert [e["index"] for e in got["video"]["top"]] == [e["index"] for e in expected]
    assert [e["label"] for e in got["video"]["top"]] == [e["class"] for e in expected]
    for a, b in zip(got["video"]["top"], expected):
        assert a["prob"] == pytest.approx(b["prob"], abs=1e-5)
    assert plain["video"] == got["video"] and "timeline" not in plain
    assert got["frames"] == 50 and got["duration_s"] == pytest.approx(2.0, abs=1e-3)
    assert got["model"] == "xvit_tiny_patch16" and got["elapsed_ms"] > 0
    windows = timeline["windows"]
    assert len(got["timeline"]) == len(windows) > 5
    for a, b in zip(got["timeline"], windows):
        for key in ("window", "start_frame", "end_frame", "start_s", "end_s"):
            assert a[key] == b[key]
        assert [e["label"] for e in a["top"]] == [e["class"] for e in b["top"]]
        assert [e["prob"] for e in a["top"]] == pytest.approx([e["prob"] for e in b["top"]], abs=1e-5)
    assert info["classes"] == CLASSES and info["frames"] == 8 and info["input_size"] == [3, 8, 32, 32]
    assert info["preprocessing"]["center_crop"] == 32 and len(info["preprocessing"]["mean"]) == 3
    assert health["status"] == "ok" and health["queue"] == 0
    assert 'xvit_serve_requests_total{endpoint="/v1/predict",status="200"} 2.0' in metrics
    for name in (
        "xvit_serve_request_seconds_bucket",
        "xvit_serve_queue_length",
        "xvit_serve_batch_size_count",
    ):
        assert name in metrics
    lines = [r.getMessage() for r in caplog.records if r.name == "xvit.serve"]
    assert len(lines) == 5 and " POST /v1/predict 200 " in lines[0] and "file='clip.mp4'" in lines[0]
    assert tmpdir_count() == []


def test_bad_input_status_codes_and_no_temp_files(files, tmp_path, tmpdir_count):
    _, _, clip, broken, truncated = files
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "clip.mp4").write_bytes(clip.read_bytes())
    (allowed / "out.mp4").symlink_to(clip)  # a link leaving the directory
    (allowed / "in.mp4").symlink_to(allowed / "clip.mp4")  # a link staying inside
    svc = service(files, max_upload_mb=0.05, allow_dir=str(allowed))
    with TestClient(create_app(svc)) as c:
        r = upload(c, broken)
        assert r.status_code == 422 and "broken.mp4: cannot open as a video" in r.json()["error"]
        assert str(tempfile.gettempdir()) not in r.json()["error"]  # names the upload, not the temp file
        r = upload(c, truncated)
        assert r.status_code == 422 and r.json()["error"].startswith("truncated.mp4")
        big = b"\x00" * 80_000
        assert c.post("/v1/predict", files={"file": ("big.mp4", big)}).status_code == 413

        def chunks():  # no Content-Length: the limit stops the read part-way
            yield b"--xx\r\nContent-Disposition: form-data; name=file; filename=a.mp4\r\n\r\n"
            for _ in range(100):
                yield b"\x00" * 8192

        r = c.post(
            "/v1/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xx"}
        )
        assert r.status_code == 413 and "--max-upload-mb" in r.json()["error"]
        assert upload(c, clip, topk="abc").status_code == 400
        assert upload(c, clip, topk="0").status_code == 400
        assert upload(c, clip, timeline="maybe").status_code == 400
        assert c.post("/v1/predict", data={"topk": "3"}, files={"other": ("x", b"1")}).status_code == 400
        assert (
            c.post("/v1/predict", content=b"hello", headers={"content-type": "text/plain"}).status_code == 415
        )
        r = c.post("/v1/predict", content=b"--xx\r\nbroken", headers={"content-type": "multipart/form-data"})
        assert r.status_code == 400
        assert c.post("/v1/predict", json={"path": "../clip.mp4"}).status_code == 403
        assert c.post("/v1/predict", json={"path": str(clip)}).status_code == 403  # outside
        assert c.post("/v1/predict", json={"path": "out.mp4"}).status_code == 403  # link out
        assert c.post("/v1/predict", json={"path": "missing.mp4"}).status_code == 404
        assert c.post("/v1/predict", json={"nope": 1}).status_code == 400
        assert (
            c.post("/v1/predict", content=b"{", headers={"content-type": "application/json"}).status_code
            == 400
        )
        ok = c.post("/v1/predict", json={"path": "in.mp4", "topk": 2})
        assert ok.status_code == 200 and len(ok.json()["video"]["top"]) == 2
        assert c.post("/v1/predict", json={"path": str(allowed / "clip.mp4")}).status_code == 200
        r = c.get("/nowhere")
        assert r.status_code == 404 and r.json() == {"error": "Not Found", "status": 404}
        assert c.get("/v1/predict").status_code == 405
        assert (
            "access-control-allow-origin" not in c.get("/v1/health", headers={"Origin": "http://a.b"}).headers
        )
        assert c.get("/").status_code == 200 and "<html" in c.get("/").text.lower()
        metrics = c.get("/metrics").text
        assert upload(c, clip).status_code == 200  # the server still answers after all that
    assert re.search(r"xvit_serve_decode_failures_total 2\.0", metrics)
    assert tmpdir_count() == []
    with TestClient(create_app(service(files), static_dir=tmp_path)) as c:  # no index.html there
        assert c.get("/").status_code == 200
    no_paths = service(files)
    with TestClient(create_app(no_paths)) as c:
        assert c.post("/v1/predict", json={"path": str(clip)}).status_code == 403  # no --allow-dir
    cors = service(files, cors_origins=("http://a.b",))
    with TestClient(create_app(cors)) as c:
        r = c.get("/v1/health", headers={"Origin": "http://a.b"})
        assert r.headers["access-control-allow-origin"] == "http://a.b"


def test_timeout_gives_504_and_no_temp_file(files, tmpdir_count):
    svc = service(files, timeout_s=0.5, max_wait_ms=30_000)  # the lone clip waits for company
    with TestClient(create_app(svc)) as c:
        t0 = time.monotonic()
        r = upload(c, files[2])
        assert r.status_code == 504 and "--timeout-s" in r.json()["error"]
        assert time.monotonic() - t0 < 10
    assert tmpdir_count() == []


class Server:
    """uvicorn on 127.0.0.1, a free port, in a thread."""

    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(60)
        assert not self.thread.is_alive()


def test_concurrent_requests_share_batches_queue_limit_and_graceful_stop(files, tmpdir_count):
    clip = files[2]
    data = clip.read_bytes()
    svc = service(files, max_batch=8, max_wait_ms=1500, max_queue=3, timeout_s=60)
    svc.warm_up()
    server = Server(create_app(svc))
    results: list[httpx.Response] = []

    def post():
        results.append(httpx.post(f"{server.url}/v1/predict", files={"file": ("c.mp4", data)}, timeout=60))

    try:
        threads = [threading.Thread(target=post) for _ in range(5)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 200, 200, 503, 503], [r.text for r in results]
        busy = [r for r in results if r.status_code == 503]
        assert all(int(r.headers["retry-after"]) >= 1 and "--max-queue" in r.json()["error"] for r in busy)
        answers = [r.json()["video"] for r in results if r.status_code == 200]
        assert all(a == answers[0] for a in answers)
        metrics = httpx.get(f"{server.url}/metrics").text
        count = float(re.search(r"xvit_serve_batch_size_count (\S+)", metrics).group(1))
        total = float(re.search(r"xvit_serve_batch_size_sum (\S+)", metrics).group(1))
        assert total == 3 and count < 3  # three clips, fewer model calls: batched
        # graceful stop: a request in progress when the server is told to stop still gets its answer
        late = threading.Thread(target=post)
        results.clear()
        late.start()
        time.sleep(0.5)  # it waits in the batcher (max_wait_ms=1500)
    finally:
        server.stop()
    late.join()
    assert [r.status_code for r in results] == [200]
    assert tmpdir_count() == []


@pytest.fixture(scope="module")
def property_client(files):
    """One server for every example of the property below, and the clip's answer under its
    own name (all classes ranked)."""
    with TestClient(create_app(service(files, max_topk=len(CLASSES))), raise_server_exceptions=False) as c:
        r = upload(c, files[2], topk=str(len(CLASSES)))
        yield c, [t["label"] for t in r.json()["video"]["top"]]


FILENAMES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["my clip.mp4", "é ü ß.MP4", "../../etc/passwd", "a\\b.mp4", 'q"uote.mp4', ".mp4", "x" * 300]
    ),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=FILENAMES, topk=st.one_of(st.none(), st.text(max_size=6), st.integers(-3, 12).map(str)))
def test_property_an_upload_is_answered_by_its_bytes_whatever_its_name_and_fields(
    files, property_client, tmpdir_count, name, topk
):
    """Any file name and any topk text: the clip's own answer (the name changes nothing but
    the name shown), or 400 with a one-line error for a topk that is not 1..classes; no
    temporary file left behind."""
    c, expected = property_client
    fields = {} if topk is None else {"topk": topk}
    r = c.post("/v1/predict", files={"file": (name, files[2].read_bytes(), "video/mp4")}, data=fields)
    body = r.json()
    try:
        k = 5 if topk is None else int(topk.strip())
    except ValueError:
        k = None
    if name == "":  # httpx sends no filename: a text field, not a file
        assert r.status_code == 400 and "not a file upload" in body["error"], body
    elif k is None or not 1 <= k <= len(CLASSES):
        assert r.status_code == 400 and "\n" not in body["error"], body
    else:
        assert r.status_code == 200, body
        assert [t["label"] for t in body["video"]["top"]] == expected[:k]
    assert tmpdir_count() == []
