"""Weights by name (`xvit.models.weights`, `download`, `card`, `hub`) without the network.

A threaded HTTP server on loopback, started here, plays both the plain download sites
(`/files/NAME`, with `Range` support, a mode that cuts the connection mid-file and one that
ignores `Range`) and a Hugging Face Hub endpoint (`HF_ENDPOINT`): `HEAD`/`GET
/{repo}/resolve/{rev}/{file}` with the `X-Repo-Commit` / `ETag` / `Content-Length` headers
`hf_hub_download` reads, `X-Error-Code` 404s, and the upload calls `HfApi.create_repo` and
`upload_folder` make (`/api/repos/create`, `/api/validate-yaml`, `preupload` answering
"regular" for every file, and the ndjson `commit`; no LFS). The files it serves are tiny
models in the source layouts: a timm state dict, a transformers `ViTModel` state dict, and
a released X-ViT `.pth` made as `tests/test_convert_official.py` makes one.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
import test_convert_official
import torch
import yaml
from safetensors.torch import save as safetensors_bytes
from test_convert_official import released_cfg, released_forward, released_state, video
from test_engine_utils import TINY_MODEL, make_dataset, one_thread  # noqa: F401

import xvit
from xvit.cli.main import main
from xvit.engine.run.checks import check_config
from xvit.engine.run.config import load_config
from xvit.engine.run.schema import ConfigError
from xvit.models import weights as W
from xvit.models.card import read_card_metadata
from xvit.models.download import DownloadError, WeightsUnavailableError, download_url
from xvit.models.hub import push_to_hub
from xvit.models.storage import CheckpointError

hf = pytest.importorskip("huggingface_hub")
hf_constants = pytest.importorskip("huggingface_hub.constants")
hf_errors = pytest.importorskip("huggingface_hub.errors")

pytestmark = pytest.mark.usefixtures("one_thread")

D, DEPTH, HEADS, PATCH, IMG = 64, 2, 2, 16, 32  # the fake backbones (as TINY_MODEL)
TOKEN = "hf_test_token"


# --------------------------------------------------------------------------------------------
# The local server
# --------------------------------------------------------------------------------------------


class FakeServer:
    """Plain files under /files/ and Hub repos; every request is logged."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.repos: dict[str, dict[str, bytes]] = {}
        self.commits: dict[str, str] = {}
        self.log: list[tuple[str, str, str | None]] = []
        self.cut_at: int | None = None  # cut plain downloads after this many bytes ...
        self.cuts_left = 0  # ... this many times
        self.honour_range = True
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                server.handle(self, head=True)

            def do_GET(self) -> None:
                server.handle(self, head=False)

            def do_POST(self) -> None:
                server.handle_post(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def requests(self, method: str | None = None) -> list[tuple[str, str, str | None]]:
        with self.lock:
            return [r for r in self.log if method is None or r[0] == method]

    # -- helpers used by the tests
    def add_repo_files(self, repo: str, files: dict[str, bytes]) -> None:
        self.repos.setdefault(repo, {}).update(files)
        self.commits[repo] = hashlib.sha1(repr(sorted(self.repos[repo].items())).encode()).hexdigest()

    # -- the handlers
    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, code: int, body: bytes = b"", headers: dict | None = None) -> None:
        h.send_response(code)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _send_bytes(self, h: BaseHTTPRequestHandler, data: bytes, head: bool, extra: dict, cut: bool) -> None:
        rng = h.headers.get("Range")
        start = 0
        if rng and self.honour_range:
            m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
            start = int(m.group(1)) if m else 0
            if start >= len(data):
                return self._reply(h, 416, headers={"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        h.send_response(206 if start else 200)
        for k, v in extra.items():
            h.send_header(k, v)
        h.send_header("Accept-Ranges", "bytes")
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if head:
            return None
        if cut and self.cut_at is not None and start < self.cut_at:
            h.wfile.write(body[: self.cut_at - start])
            h.wfile.flush()
            h.close_connection = True
            return None
        h.wfile.write(body)
        return None

    def handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = unquote(h.path.split("?")[0])
        with self.lock:
            self.log.append((h.command, path, h.headers.get("Range")))
        if path.startswith("/files/"):
            data = self.files.get(path.removeprefix("/files/"))
            if data is None:
                return self._reply(h, 404, b"not found")
            with self.lock:
                cut = not head and self.cuts_left > 0
                if cut:
                    self.cuts_left -= 1
            return self._send_bytes(h, data, head, {}, cut)
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if not m:
            return self._reply(h, 404, b"not found")
        repo, _rev, filename = m.groups()
        if repo not in self.repos:
            return self._reply(
                h, 404, b"", {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}
            )
        commit = self.commits[repo]
        data = self.repos[repo].get(filename)
        if data is None:
            return self._reply(h, 404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit})
        etag = f'"{hashlib.sha256(data).hexdigest()}"'
        return self._send_bytes(h, data, head, {"X-Repo-Commit": commit, "ETag": etag}, cut=False)

    def handle_post(self, h: BaseHTTPRequestHandler) -> None:
        path = unquote(h.path.split("?")[0])
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        with self.lock:
            self.log.append(("POST", path, None))
        if h.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._reply(h, 401, b'{"error": "unauthorized"}', {"X-Error-Message": "Invalid token"})
        if path == "/api/repos/create":
            req = json.loads(body)
            repo = f"{req['organization']}/{req['name']}"
            if repo not in self.repos:
                self.add_repo_files(repo, {})
            return self._reply(h, 200, json.dumps({"url": f"{self.url}/{repo}"}).encode())
        if path == "/api/validate-yaml":
            meta = read_card_metadata(json.loads(body)["content"])
            if meta is None:
                errors = [{"message": "no YAML metadata block"}]
                return self._reply(h, 400, json.dumps({"errors": errors}).encode())
            return self._reply(h, 200, b'{"errors": [], "warnings": []}')
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
        if not m or m.group(1) not in self.repos:
            return self._reply(h, 404, b"", {"X-Error-Code": "RepoNotFound"})
        repo, what = m.group(1), m.group(2)
        if what == "preupload":
            files = [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                for f in json.loads(body)["files"]
            ]
            return self._reply(h, 200, json.dumps({"files": files}).encode())
        added = {}
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                assert item["value"]["encoding"] == "base64"
                added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] != "header":
                return self._reply(h, 400, json.dumps({"error": f"unsupported {item['key']}"}).encode())
        self.add_repo_files(repo, added)
        sha = self.commits[repo]
        reply = {"commitUrl": f"{self.url}/{repo}/commit/{sha}", "commitOid": sha}
        return self._reply(h, 200, json.dumps(reply).encode())


@pytest.fixture(autouse=True)
def released_width(monkeypatch):
    """The fake released X-ViT is ViT-Ti wide (192, 3 heads: a width whose number of heads
    the converter knows) and 2 blocks deep."""
    monkeypatch.setattr(test_convert_official, "D", 192)
    monkeypatch.setattr(test_convert_official, "HEADS", 3)


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.stop()


@pytest.fixture
def env(tmp_path, monkeypatch, server):
    """An empty xvit cache and Hugging Face cache; HF_ENDPOINT at the local server; online."""
    monkeypatch.setenv("XVIT_CACHE", str(tmp_path / "xvit-cache"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def registry():
    """Restores the registry after a test changes it."""
    saved = dict(W.WEIGHTS)
    yield W
    W.WEIGHTS.clear()
    W.WEIGHTS.update(saved)


# --------------------------------------------------------------------------------------------
# Tiny weights in the source layouts
# --------------------------------------------------------------------------------------------


def timm_state(seed: int = 0, classes: int = 5) -> dict[str, torch.Tensor]:
    """A timm ViT state dict (names as timm's VisionTransformer), random, width D."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.05

    sd = {
        "cls_token": r(1, 1, D),
        "pos_embed": r(1, 1 + (IMG // PATCH) ** 2, D),
        "patch_embed.proj.weight": r(D, 3, PATCH, PATCH),
        "patch_embed.proj.bias": r(D),
        "norm.weight": 1 + r(D),
        "norm.bias": r(D),
        "head.weight": r(classes, D),  # the image classifier: dropped for a video model
        "head.bias": r(classes),
    }
    for i in range(DEPTH):
        p = f"blocks.{i}."
        for n, shape in {
            "norm1.weight": (D,),
            "norm1.bias": (D,),
            "attn.qkv.weight": (3 * D, D),
            "attn.qkv.bias": (3 * D,),
            "attn.proj.weight": (D, D),
            "attn.proj.bias": (D,),
            "norm2.weight": (D,),
            "norm2.bias": (D,),
            "mlp.fc1.weight": (4 * D, D),
            "mlp.fc1.bias": (4 * D,),
            "mlp.fc2.weight": (D, 4 * D),
            "mlp.fc2.bias": (D,),
        }.items():
            sd[p + n] = r(*shape)
    return sd


def hf_vit_state(seed: int = 0, classifier: bool = False) -> dict[str, torch.Tensor]:
    """A transformers ViT state dict in the layout of the google/vit-* files on the Hub
    (`ViTModel` with its pooler; with `classifier`, `ViTForImageClassification`: `vit.`
    prefix and `classifier.*`), random, width D."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.05

    sd = {
        "embeddings.cls_token": r(1, 1, D),
        "embeddings.position_embeddings": r(1, 1 + (IMG // PATCH) ** 2, D),
        "embeddings.patch_embeddings.projection.weight": r(D, 3, PATCH, PATCH),
        "embeddings.patch_embeddings.projection.bias": r(D),
        "layernorm.weight": 1 + r(D),
        "layernorm.bias": r(D),
    }
    for i in range(DEPTH):
        p = f"encoder.layer.{i}."
        for n in ("attention.attention.query", "attention.attention.key", "attention.attention.value"):
            sd[f"{p}{n}.weight"], sd[f"{p}{n}.bias"] = r(D, D), r(D)
        sd[p + "attention.output.dense.weight"], sd[p + "attention.output.dense.bias"] = r(D, D), r(D)
        sd[p + "intermediate.dense.weight"], sd[p + "intermediate.dense.bias"] = r(4 * D, D), r(4 * D)
        sd[p + "output.dense.weight"], sd[p + "output.dense.bias"] = r(D, 4 * D), r(D)
        for n in ("layernorm_before", "layernorm_after"):
            sd[f"{p}{n}.weight"], sd[f"{p}{n}.bias"] = 1 + r(D), r(D)
    if not classifier:
        sd["pooler.dense.weight"], sd["pooler.dense.bias"] = r(D, D), r(D)
        return sd
    out = {"vit." + k: v for k, v in sd.items()}
    out["classifier.weight"], out["classifier.bias"] = r(5, D), r(5)
    return out


def torch_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def released_bytes(classes: int = 7, seed: int = 0) -> tuple[bytes, dict[str, torch.Tensor]]:
    state = released_state(classes, seed=seed)
    ckpt = {"epoch": 30, "model_state": state, "cfg": released_cfg(classes, segments=8, div=8)}
    return torch_bytes(ckpt), state


def serve_entry(server: FakeServer, registry, name: str) -> tuple[object, dict[str, torch.Tensor]]:
    """Make the server hold entry `name`'s file (tiny, in its source layout); URL entries are
    pointed at the server with the file's size and sha256. Returns (entry, reference)."""
    w = registry.get_weights(name)
    if isinstance(w.source, W.HubSource):
        if w.source.repo_id.startswith("google/"):  # transformers layout, pytorch_model.bin only
            ref = hf_vit_state(classifier=w.source.repo_id.endswith("-224"))
            server.add_repo_files(w.source.repo_id, {"pytorch_model.bin": torch_bytes(ref)})
            ref = {k.removeprefix("vit."): v for k, v in ref.items()}
        else:  # timm layout, model.safetensors
            ref = timm_state()
            server.add_repo_files(w.source.repo_id, {"model.safetensors": safetensors_bytes(ref)})
        return w, ref
    data, ref = released_bytes()
    server.files[w.source.filename] = data
    src = dataclasses.replace(
        w.source,
        url=f"{server.url}/files/{w.source.filename}",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    registry.register_weights(dataclasses.replace(w, source=src), replace=True)
    return registry.get_weights(name), ref


def tiny_video_model(**kw) -> torch.nn.Module:
    return xvit.create_model(
        "vit_tiny_patch16",
        num_classes=3,
        num_frames=2,
        img_size=IMG,
        embed_dim=D,
        depth=DEPTH,
        num_heads=HEADS,
        **kw,
    )


def cache_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------
# Every registry name
# --------------------------------------------------------------------------------------------


def test_registry_entries_are_complete():
    names = W.list_weights()
    assert {"xvit-b16-k600", "xvit-b16-ssv2", "vit-b16-in21k", "vit-l16-in21k", "vit-b16-in1k"} <= set(names)
    for size in ("t", "s", "b", "l"):  # every size has ImageNet-21k and -1k weights
        assert f"vit-{size}16-augreg-in21k" in names and f"vit-{size}16-augreg-in21k-ft-in1k" in names
    for name in names:
        w = W.get_weights(name)
        assert w.license and w.paper and w.dataset and w.preprocessing
        assert (w.top1 is None) == (w.top5 is None) and (w.top1 is None or w.accuracy_note)
    # the default tag per width: google's where it exists, else timm's augreg
    assert W.resolve_pretrained("in21k", 768, 12).name == "vit-b16-in21k"
    assert W.resolve_pretrained("in21k", 192, 12).name == "vit-t16-augreg-in21k"
    assert W.resolve_pretrained("in1k", 384, 12).name == "vit-s16-augreg-in21k-ft-in1k"
    assert W.get_weights("xvit-b16-k600").top1 == 84.51 and W.get_weights("xvit-b16-ssv2").top1 == 67.19


@pytest.mark.parametrize("name", W.list_weights())
def test_each_name_downloads_converts_and_loads(name, env, server, registry):
    w, ref = serve_entry(server, registry, name)
    path = W.fetch_weights(name, progress=False)
    if w.is_video_model:
        model = xvit.load_model(name)
        x = video(batch=1)
        expected = released_forward(ref, x, segments=8, div=8)
        torch.testing.assert_close(model(x).double(), expected, atol=1e-4, rtol=0)
        assert path == W.converted_path(w) and (path / "config.json").is_file()
        return
    model = tiny_video_model()
    report = xvit.models.hub.load_pretrained(model, path)
    sd = model.state_dict()
    if "embeddings.patch_embeddings.projection.weight" in ref:  # transformers layout
        q, k, v = (ref[f"encoder.layer.1.attention.attention.{n}.weight"] for n in ("query", "key", "value"))
        torch.testing.assert_close(sd["blocks.1.attn.qkv.weight"], torch.cat([q, k, v]))
        torch.testing.assert_close(
            sd["patch_embed.proj.weight"], ref["embeddings.patch_embeddings.projection.weight"]
        )
        torch.testing.assert_close(sd["norm.weight"], ref["layernorm.weight"])
    else:
        for key in ("blocks.1.attn.qkv.weight", "patch_embed.proj.weight", "pos_embed", "norm.bias"):
            torch.testing.assert_close(sd[key], ref[key])
    assert "blocks.0.mlp.fc1.weight" in report.loaded
    assert path.name == "model.safetensors" and path.parent.name == name


def test_one_line_create_model_by_tag_and_name(env, server, registry):
    """create_model(..., pretrained="in21k") with a registered tag for this width."""
    ref = timm_state(seed=3)
    server.add_repo_files("test/vit-tiny64", {"model.safetensors": safetensors_bytes(ref)})
    registry.register_weights(
        dataclasses.replace(
            W.get_weights("vit-t16-augreg-in21k"),
            name="test-vit64-in21k",
            source=W.HubSource("test/vit-tiny64"),
            embed_dim=D,
            depth=DEPTH,
            tags=("in21k",),
        )
    )
    kw = dict(num_classes=3, num_frames=2, img_size=IMG, embed_dim=D, depth=DEPTH, num_heads=HEADS)
    model = xvit.create_model("xvit_tiny_patch16", pretrained="in21k", **kw)
    torch.testing.assert_close(
        model.state_dict()["blocks.0.attn.qkv.weight"], ref["blocks.0.attn.qkv.weight"]
    )
    again = xvit.create_model("xvit_tiny_patch16", pretrained="test-vit64-in21k", **kw)
    torch.testing.assert_close(again.state_dict()["pos_embed"], ref["pos_embed"])
    # hf-hub: the repo's weights file directly
    third = xvit.create_model("xvit_tiny_patch16", pretrained="hf-hub:test/vit-tiny64", **kw)
    torch.testing.assert_close(third.state_dict()["norm.weight"], ref["norm.weight"])
    # wrong width / unknown names: errors before anything is built or downloaded
    n = len(server.requests())
    with pytest.raises(ValueError, match=r"do not fit .*width 64"):
        xvit.create_model("xvit_tiny_patch16", pretrained="vit-b16-in21k", **kw)
    with pytest.raises(ValueError, match="did you mean in21k"):
        xvit.create_model("xvit_tiny_patch16", pretrained="in22k", **kw)
    with pytest.raises(ValueError, match="no 'in1k' weights"):
        xvit.create_model("xvit_tiny_patch16", pretrained="in1k", **kw)
    assert len(server.requests()) == n
    with pytest.raises(ValueError, match="image backbone weights, not a video model"):
        xvit.load_model("vit-b16-in21k")


# --------------------------------------------------------------------------------------------
# Downloads: resume, corruption, cache hits, offline
# --------------------------------------------------------------------------------------------


def _payload(n: int = 300_000) -> bytes:
    return bytes(
        torch.randint(0, 256, (n,), generator=torch.Generator().manual_seed(1), dtype=torch.uint8).tolist()
    )


def test_resume_after_cut_connection(env, server):
    data = _payload()
    server.files["w.bin"] = data
    digest = hashlib.sha256(data).hexdigest()
    dest = env / "dl" / "w.bin"
    # cut once: the same call resumes with a Range request from where it stopped
    server.cut_at, server.cuts_left = 100_000, 1
    assert download_url(f"{server.url}/files/w.bin", dest, len(data), digest, progress=False) == dest
    assert dest.read_bytes() == data and not dest.with_name("w.bin.part").exists()
    gets = server.requests("GET")
    assert [g[2] for g in gets] == [None, "bytes=100000-"]

    # cut every time: the call fails, keeps the .part, and the next call resumes from it
    dest2 = env / "dl" / "w2.bin"
    server.files["w2.bin"] = data
    server.cut_at, server.cuts_left = 120_000, 10
    with pytest.raises(DownloadError, match=r"cut after 120000 of 300000 bytes.*the next try resumes"):
        download_url(f"{server.url}/files/w2.bin", dest2, len(data), digest, retries=0, progress=False)
    part = dest2.with_name("w2.bin.part")
    assert part.stat().st_size == 120_000 and not dest2.exists()
    server.cuts_left = 0
    download_url(f"{server.url}/files/w2.bin", dest2, len(data), digest, progress=False)
    assert dest2.read_bytes() == data and not part.exists()
    assert server.requests("GET")[-1][2] == "bytes=120000-"


def test_server_without_range_restarts_from_zero(env, server):
    data = _payload(50_000)
    server.files["w.bin"] = data
    server.honour_range = False
    dest = env / "w.bin"
    dest.with_name("w.bin.part").write_bytes(b"\0" * 1000)  # a leftover the server cannot resume
    download_url(
        f"{server.url}/files/w.bin", dest, len(data), hashlib.sha256(data).hexdigest(), progress=False
    )
    assert dest.read_bytes() == data


def test_corrupted_download_is_refused_and_nothing_stays(env, server, registry):
    w, _ = serve_entry(server, registry, "xvit-b16-k600")
    wrong = "0" * 64
    registry.register_weights(
        dataclasses.replace(w, source=dataclasses.replace(w.source, sha256=wrong)), replace=True
    )
    with pytest.raises(CheckpointError) as err:
        xvit.load_model("xvit-b16-k600")
    msg = str(err.value)
    assert (
        "xvit_b16_16_k600.pth" in msg
        and wrong in msg
        and hashlib.sha256(server.files[w.source.filename]).hexdigest() in msg
    )
    assert "\n" not in msg
    root = env / "xvit-cache"
    assert cache_files(root) == []
    # a wrong size is refused the same way
    registry.register_weights(
        dataclasses.replace(w, source=dataclasses.replace(w.source, size=12)), replace=True
    )
    with pytest.raises(CheckpointError, match=r"xvit_b16_16_k600.pth .*bytes, expected 12"):
        W.fetch_weights("xvit-b16-k600", progress=False)
    assert cache_files(root) == []


def test_cache_hit_makes_no_request(env, server, registry):
    serve_entry(server, registry, "xvit-b16-ssv2")
    serve_entry(server, registry, "vit-s16-augreg-in21k")
    first = xvit.load_model("xvit-b16-ssv2")
    W.fetch_weights("vit-s16-augreg-in21k", progress=False)
    n = len(server.requests())
    second = xvit.load_model("xvit-b16-ssv2")
    W.fetch_weights("vit-s16-augreg-in21k", progress=False)
    assert len(server.requests()) == n
    x = video()
    torch.testing.assert_close(first(x), second(x))
    # the converted files are what is used; the download is kept beside them
    files = cache_files(env / "xvit-cache")
    assert "weights/xvit-b16-ssv2/model.safetensors" in files
    assert "weights/downloads/xvit-b16-ssv2/xvit_b16_16_ss2.pth" in files
    assert "weights/vit-s16-augreg-in21k/model.safetensors" in files
    assert not [f for f in files if f.endswith((".part", ".tmp"))]


def test_offline_with_nothing_cached_says_what_to_download_and_where(
    env, server, registry, monkeypatch, capsys
):
    w, _ = serve_entry(server, registry, "xvit-b16-k600")
    serve_entry(server, registry, "vit-b16-in21k")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    target = env / "xvit-cache" / "weights" / "downloads" / "xvit-b16-k600" / "xvit_b16_16_k600.pth"
    with pytest.raises(WeightsUnavailableError) as err:
        xvit.load_model("xvit-b16-k600")
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and w.source.url in msg and str(target) in msg and "\n" not in msg
    with pytest.raises(WeightsUnavailableError) as err:
        W.fetch_weights("vit-b16-in21k")
    msg = str(err.value)
    assert "google/vit-base-patch16-224-in21k/resolve/main/model.safetensors" in msg
    assert str(env / "xvit-cache" / "weights" / "downloads" / "vit-b16-in21k") in msg
    assert server.requests() == []  # offline: nothing was asked
    # the command line: one line, exit 2
    lists = make_dataset(env / "data", n_train=2, n_val=1)
    rc = main(
        ["train", *TINY_MODEL, "--train-list", str(lists["train"]), "--epochs", "1", "--workers", "0"]
        + ["--pretrained", "hf-hub:org/none", "--out", str(env / "run")]
    )
    err_text = capsys.readouterr().err
    assert rc == 2 and "HF_HUB_OFFLINE" in err_text and "Traceback" not in err_text
    # the file put where the error says is used, still offline
    target.parent.mkdir(parents=True)
    target.write_bytes(server.files[w.source.filename])
    assert xvit.load_model("xvit-b16-k600").config.num_classes == 7
    assert server.requests() == []


def test_hub_repo_and_file_errors(env, server):
    with pytest.raises(FileNotFoundError, match="no such Hugging Face Hub repository: org/missing"):
        xvit.load_model("hf-hub:org/missing")
    server.add_repo_files("org/empty", {"other.txt": b"x"})
    with pytest.raises(FileNotFoundError, match=r"org/empty has none of \['config.json'\]"):
        xvit.load_model("hf-hub:org/empty")
    with pytest.raises(ValueError, match="expected hf-hub:ORG/NAME"):
        xvit.load_model("hf-hub:just-a-name")


# --------------------------------------------------------------------------------------------
# Configs and the command line
# --------------------------------------------------------------------------------------------


def test_config_checks_accept_names_and_refuse_misfits(registry):
    ok = load_config(None, [*TINY_MODEL[:1], "model.pretrained=vit-t16-augreg-in21k"])  # checked inside
    check_config(ok)  # xvit_tiny_patch16 at its registered width: fits
    with pytest.raises(ConfigError, match=r"model.pretrained='in21k'.*no 'in21k' weights .*width 64"):
        load_config(None, [*TINY_MODEL, "model.pretrained=in21k"])  # width 64: nothing fits
    with pytest.raises(ConfigError, match="did you mean vit-t16-augreg-in21k"):
        load_config(None, ["model.pretrained=vit-t16-augreg-in22k"])


def test_cli_models_weights(capsys):
    assert main(["models", "--weights"]) == 0
    out = capsys.readouterr().out
    for name in W.list_weights():
        assert name in out
    assert "apache-2.0" in out and "84.51" in out and "adrianbulat.com" in out
    assert main(["models", "--weights", "xvit-*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["xvit-b16-k600", "xvit-b16-ssv2"]
    assert rows[1]["source"]["kind"] == "url" and rows[1]["dataset"] == "Something-Something-v2"
    assert main(["models", "--weights", "nothing-*"]) == 1


def test_train_with_pretrained_by_name(env, server, registry, capsys):
    """`xvit train --pretrained NAME` downloads, converts and initialises from it."""
    ref = timm_state(seed=5)
    server.add_repo_files("test/vit64", {"model.safetensors": safetensors_bytes(ref)})
    registry.register_weights(
        dataclasses.replace(
            W.get_weights("vit-t16-augreg-in21k"),
            name="test-vit64",
            source=W.HubSource("test/vit64"),
            embed_dim=D,
            depth=DEPTH,
            tags=("test21k",),
        )
    )
    lists = make_dataset(env / "data", n_train=4, n_val=2)
    out = env / "run"
    rc = main(
        ["train", *TINY_MODEL, "--train-list", str(lists["train"]), "--val-list", str(lists["val"])]
        + [
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--pretrained",
            "test21k",
            "--out",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert (env / "xvit-cache" / "weights" / "test-vit64" / "model.safetensors").is_file()
    assert "test/vit64/resolve/main/model.safetensors" in " ".join(p for _, p, _ in server.requests())


# --------------------------------------------------------------------------------------------
# Model cards, push_to_hub and hf-hub: loading
# --------------------------------------------------------------------------------------------


def test_trained_model_pushed_and_loaded_back_with_its_card(env, server, capsys):
    lists = make_dataset(env / "data", n_train=4, n_val=3)
    run = env / "run"
    rc = main(
        ["train", *TINY_MODEL, "--train-list", str(lists["train"]), "--val-list", str(lists["val"])]
        + ["--epochs", "1", "--batch-size", "4", "--workers", "0", "--out", str(run)]
    )
    assert rc == 0
    capsys.readouterr()
    metrics = json.loads((run / "metrics.json").read_text())
    assert (run / "README.md").is_file()  # save_pretrained wrote a card

    url = push_to_hub(run, "org/tiny-xvit", token=TOKEN)
    assert url.startswith(f"{server.url}/org/tiny-xvit/commit/")
    repo = server.repos["org/tiny-xvit"]
    assert sorted(repo) == ["README.md", "config.json", "model.safetensors"]  # no predictions, logs
    assert repo["model.safetensors"] == (run / "model.safetensors").read_bytes()

    card = repo["README.md"].decode()
    meta = read_card_metadata(card)
    assert meta["library_name"] == "xvit" and meta["pipeline_tag"] == "video-classification"
    assert {"xvit", "video-classification", "xvit_tiny_patch16"} <= set(meta["tags"])
    assert meta["datasets"] == ["data"]  # the folder of the training list
    assert meta["metrics"] == ["accuracy", "top_5_accuracy", "mean_class_accuracy"]
    values = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert values == {
        "accuracy": metrics["top1"],
        "top_5_accuracy": metrics["top5"],
        "mean_class_accuracy": metrics["mean_class_accuracy"],
    }
    assert f"| top-1 accuracy | {metrics['top1']:.2f} |" in card
    assert metrics["command"] in card and "`class_0`, `class_1`, `class_2`" in card
    assert 'xvit.load_model("hf-hub:org/tiny-xvit")' in card
    assert "## Intended use and limitations" in card and "mean [0.5, 0.5, 0.5]" in card

    loaded = xvit.load_model("hf-hub:org/tiny-xvit")
    local = xvit.load_model(run)
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded(x), local(x), atol=0, rtol=0)
    assert loaded.config.class_names == ["class_0", "class_1", "class_2"]

    # model.push_to_hub: a second repo, loaded back equal; a wrong token -> refused by the server
    local.push_to_hub("org/tiny-xvit-2", token=TOKEN)
    again = xvit.load_model("hf-hub:org/tiny-xvit-2")
    torch.testing.assert_close(again(x), local(x), atol=0, rtol=0)
    assert read_card_metadata(server.repos["org/tiny-xvit-2"]["README.md"].decode())["library_name"] == "xvit"
    with pytest.raises(hf_errors.HfHubHTTPError):
        local.push_to_hub("org/tiny-xvit-3", token="wrong")
    assert "org/tiny-xvit-3" not in server.repos


def test_save_pretrained_card_and_a_users_readme(tmp_path):
    model = tiny_video_model()
    model.save_pretrained(tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    meta = read_card_metadata(card)
    assert meta["library_name"] == "xvit" and "model-index" not in meta  # no run, no figures
    assert "## Results" not in card and "3 classes" in card
    own = tmp_path / "mine"
    own.mkdir()
    (own / "README.md").write_text("# my notes\n")
    model.save_pretrained(own)
    assert (own / "README.md").read_text() == "# my notes\n"
    assert yaml.safe_load(json.dumps(meta)) == meta  # plain data only
