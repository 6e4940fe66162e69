"""The page of `xvit serve` (GET /) in a real headless Chromium (Debian's `chromium`, driven by
Playwright): a synthetic video is chosen, plays, and the labels the page draws (the timeline's
bands, the tooltip of a focused band, the whole video's top-5 bars) are checked against the
API's own answer for the same file; keyboard use, seeking, a broken file's message, no request
leaving the server. A screenshot goes to the test's temporary folder, and to the path in
XVIT_SCREENSHOT when set (`XVIT_SCREENSHOT=docs/serve_screenshot.png pytest
tests/test_serve_browser.py` refreshes the one in docs/).

Without chromium the test is skipped, except in CI (CI=true), where it fails: `.ci/run`
installs it."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
import torch
from _model_helpers import randomise, tiny_segmented_xvit

CLASSES = ["walking", "running", "jumping", "sitting", "waving", "clapping"]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + ": in CI the browser test must run")
        pytest.skip(message)
    return path


def _tiny_model(out: Path) -> Path:
    """A tiny X-ViT with random weights (every parameter), whose top class changes with the
    scenes of `_scene_video`."""
    torch.manual_seed(0)
    model = tiny_segmented_xvit(CLASSES)
    randomise(model, seed=0, std=0.2)
    model.save_pretrained(out)
    return out


def _scene_video(path: Path, seconds: int = 3, fps: int = 25, height: int = 120, width: int = 160) -> Path:
    """H.264 video of four scenes of a different colour, a white square moving across them."""
    colours = [(220, 40, 40), (30, 160, 60), (40, 60, 220), (230, 200, 30)]
    n = seconds * fps
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n):
            img = np.empty((height, width, 3), np.uint8)
            img[:] = colours[i * len(colours) // n]
            x = (i * 4) % (width - 30)
            img[45:75, x : x + 30] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real app (`create_app` around a `ModelService`) under uvicorn on 127.0.0.1, any port."""
    pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
    import uvicorn

    from xvit.engine.serve.app import create_app
    from xvit.engine.serve.service import ModelService, ServeOptions

    root = tmp_path_factory.mktemp("serve_browser")
    service = ModelService(
        _tiny_model(root / "model"), ServeOptions(decode_workers=1, timeout_s=30, max_upload_mb=0.5)
    )
    service.warm_up()
    app = create_app(service)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", root
    finally:
        uv.should_exit = True
        thread.join(30)
        sock.close()
        service.close()


@pytest.fixture(scope="module")
def browser():
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        profile = Path(tempfile.mkdtemp(prefix="xvit-chromium-"))
        try:
            context = p.chromium.launch_persistent_context(
                str(profile),  # a new, empty --user-data-dir
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1280, "height": 800},
            )
            try:
                yield context
            finally:
                context.close()
        finally:
            shutil.rmtree(profile, ignore_errors=True)


# Records whether the busy indicator was shown (a fast answer may hide it before a poll).
BUSY_WATCH = """() => {
  window.busySeen = false;
  const busy = document.getElementById('busy');
  new MutationObserver(() => { if (!busy.hidden) window.busySeen = true; })
    .observe(busy, { attributes: true });
}"""

# Drops a file on the drop zone, as a drag from the desktop does.
DROP = """({ name, bytes, size }) => {
  const data = new DataTransfer();
  const body = bytes ? new Uint8Array(bytes) : new Uint8Array(size);  // size: that many zeros
  data.items.add(new File([body], name, { type: 'video/mp4' }));
  const zone = document.getElementById('drop-zone');
  for (const type of ['dragenter', 'dragover', 'drop']) {
    zone.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
  }
}"""


def _api(base: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/predict",
        files={"file": (name, data, "video/mp4")},
        data={"timeline": "true", "topk": "5"},
        timeout=60,
    )


def _pct(p: float) -> str:
    return f"{100 * p:.1f}%"


def _shown_top(locator) -> list[tuple[str, str, float]]:
    """(label, percentage text, data-prob) of each entry of a top-k list on the page."""
    return [
        (
            li.get_attribute("data-label"),
            li.locator(".pct, .bar-value").inner_text(),
            float(li.get_attribute("data-prob")),
        )
        for li in locator.all()
    ]


def _expected_top(top: list[dict]) -> list[tuple[str, str, float]]:
    return [(t["label"], _pct(t["prob"]), t["prob"]) for t in top]


def _same_top(shown, expected) -> bool:
    return [s[:2] for s in shown] == [e[:2] for e in expected] and all(
        abs(s[2] - e[2]) < 1e-4 for s, e in zip(shown, expected)
    )


def test_page_shows_the_api_answer(browser, server, tmp_path):
    base, root = server
    video = _scene_video(root / "clip.mp4")
    broken = root / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"this is not a video " * 200)

    page = browser.new_page()
    requests: list[str] = []
    page_errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.goto(base + "/")

    # The model, from GET /v1/model, in the header.
    model = httpx.get(f"{base}/v1/model", timeout=30).json()
    page.wait_for_function("document.getElementById('model-info').dataset.name !== undefined")
    header = page.locator("#model-info").inner_text()
    assert model["name"] in header and f"Classes: {len(CLASSES)}" in header and "Frames: 8" in header
    assert "32×32 px" in header

    # Choose the video: it plays, the busy indicator shows, then the timeline.
    page.evaluate(BUSY_WATCH)
    page.locator("#file-input").set_input_files(str(video))
    page.wait_for_selector("#timeline .band", timeout=30_000)
    assert page.evaluate("window.busySeen") is True
    assert page.locator("#busy").is_hidden()
    assert page.locator("#message").is_hidden()
    assert page.evaluate("document.getElementById('video').src").startswith("blob:")
    page.wait_for_function("document.getElementById('video').readyState >= 1", timeout=10_000)
    assert abs(page.evaluate("document.getElementById('video').duration") - 3.0) < 0.1

    # The API's answer for the same file.
    answer = _api(base, video.name, video.read_bytes())
    assert answer.status_code == 200, answer.text
    api = answer.json()
    windows = api["timeline"]
    assert len(windows) >= 10 and api["frames"] == 75

    # Bands: one per window, labelled with its top-1 class, tiling the windows' span.
    bands = page.locator("#timeline .band")
    assert bands.count() == len(windows)
    top1 = [w["top"][0]["label"] for w in windows]
    assert [b.get_attribute("data-label") for b in bands.all()] == top1
    assert len(set(top1)) >= 2, "the test video should show more than one label"
    for i, (b, w) in enumerate(zip(bands.all(), windows)):
        label = b.get_attribute("aria-label")
        assert label.startswith(f"Window {i + 1} of {len(windows)}, ") and label.endswith(
            f"{top1[i]} {_pct(w['top'][0]['prob'])}"
        )
    track = page.locator("#timeline").bounding_box()
    boxes = [b.bounding_box() for b in bands.all()]
    duration = api["duration_s"]
    assert abs(boxes[0]["x"] - (track["x"] + 1 + windows[0]["start_s"] / duration * (track["width"] - 2))) < 2
    for left, right in itertools.pairwise(boxes):
        assert abs(left["x"] + left["width"] - right["x"]) < 1.5  # contiguous
    end = boxes[-1]["x"] + boxes[-1]["width"]
    assert abs(end - (track["x"] + 1 + windows[-1]["end_s"] / duration * (track["width"] - 2))) < 2
    # One colour per class, the legend names each top-1 class once, with the band's colour.
    colour = {}
    for b in bands.all():
        c = b.evaluate("e => getComputedStyle(e).backgroundColor")
        assert colour.setdefault(b.get_attribute("data-label"), c) == c
    assert len(set(colour.values())) == len(colour)
    legend = page.locator("#legend li")
    assert sorted(li.get_attribute("data-label") for li in legend.all()) == sorted(colour)
    for li in legend.all():
        swatch = li.locator(".swatch").evaluate("e => getComputedStyle(e).backgroundColor")
        assert swatch == colour[li.get_attribute("data-label")]

    # The whole video's top-5 bars.
    bars = page.locator("#video-top li")
    expected = _expected_top(api["video"]["top"])
    assert len(expected) == 5 and _same_top(_shown_top(bars), expected)
    widths = [li.locator(".bar-fill").bounding_box()["width"] for li in bars.all()]
    full = bars.first.locator(".bar-track").bounding_box()["width"]
    for w, (_, _, p) in zip(widths, expected):
        assert abs(w - max(p * full, 2)) < 1.5
    for li in bars.all():  # a class leading some window keeps its timeline colour
        fill = li.locator(".bar-fill").evaluate("e => getComputedStyle(e).backgroundColor")
        label = li.get_attribute("data-label")
        assert fill == colour[label] if label in colour else fill not in colour.values()

    # Keyboard: Tab reaches the timeline; arrows move between bands; the focused band's
    # top-5 is shown, with a visible focus ring; End, then Enter seeks the video.
    page.locator("#file-input").focus()
    for _ in range(20):
        if page.evaluate("document.activeElement.classList.contains('band')"):
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.window") == "0"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.dataset.window") == "2"
    tooltip = page.locator("#tooltip")
    assert tooltip.is_visible() and tooltip.get_attribute("data-window") == "2"
    assert _same_top(_shown_top(tooltip.locator("li")), _expected_top(windows[2]["top"]))
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineWidth")
    assert ring == "3px"
    assert [b.get_attribute("tabindex") for b in bands.all()].count("0") == 1  # one tab stop
    page.keyboard.press("End")
    last = len(windows) - 1
    assert page.evaluate("document.activeElement.dataset.window") == str(last)
    assert _same_top(_shown_top(tooltip.locator("li")), _expected_top(windows[last]["top"]))
    page.keyboard.press("Enter")
    centre = [(w["start_s"] + w["end_s"]) / 2 for w in windows]
    seek_to = (centre[-2] + centre[-1]) / 2  # the last band's left edge
    page.wait_for_function(f"Math.abs(document.getElementById('video').currentTime - {seek_to}) < 0.05")
    playhead = page.locator("#playhead").bounding_box()
    assert abs(playhead["x"] + playhead["width"] / 2 - boxes[-1]["x"]) < 2

    # Hover shows that band's window.
    bands.nth(5).hover()
    assert tooltip.get_attribute("data-window") == "5"
    assert _same_top(_shown_top(tooltip.locator("li")), _expected_top(windows[5]["top"]))

    # The screenshot: a band in focus with its top-5.
    page.mouse.move(5, 5)
    bands.nth(13).focus()
    shot = tmp_path / "serve_screenshot.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("XVIT_SCREENSHOT"):
        target = Path(os.environ["XVIT_SCREENSHOT"])
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(shot, tmp)
        os.replace(tmp, target)

    # A broken file, dropped on the drop zone: the API's 422 message, no timeline, no bars.
    page.evaluate(DROP, {"name": broken.name, "bytes": list(broken.read_bytes())})
    page.wait_for_selector("#message:not([hidden])", timeout=30_000)
    assert page.locator("#file-name").inner_text() == broken.name
    refused = _api(base, broken.name, broken.read_bytes())
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error and "\n" not in error
    message = page.locator("#message")
    assert message.locator("strong").inner_text() == "This file could not be read as a video."
    assert message.locator(".detail").inner_text() == error
    assert page.locator("#timeline-section").is_hidden()
    assert page.locator("#video-top li").count() == 0
    assert page.locator("#busy").is_hidden()

    # Over the server's --max-upload-mb (0.5 here): the page says so without posting it.
    posts = sum(u == base + "/v1/predict" for u in requests)
    page.evaluate(DROP, {"name": "big.mp4", "size": 600_000})
    page.wait_for_function("document.getElementById('file-name').textContent === 'big.mp4'")
    assert message.locator("strong").inner_text() == "The file is larger than this server accepts."
    assert "0.6 MB" in message.inner_text() and "0.5 MB" in message.inner_text()
    assert sum(u == base + "/v1/predict" for u in requests) == posts

    # Every asset came from the server; nothing threw.
    outside = [u for u in requests if not (u.startswith(base + "/") or u.startswith(("blob:", "data:")))]
    assert outside == []
    assert {base + "/static/app.js", base + "/static/app.css"} <= set(requests)
    assert page_errors == []
    page.close()
