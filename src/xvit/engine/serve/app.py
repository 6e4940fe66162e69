"""`xvit serve`'s HTTP API (FastAPI): predictions, model facts, health, metrics, the page.

Every error is JSON `{"error": "<one line>", "status": <code>}`: 400 a bad field, 403 a path
refused, 404 no such file or route, 413 an upload over the limit, 415 not a multipart upload
(or JSON path request), 422 a file the decoder cannot read (the decoder's message), 500 the
model failed, 503 the queue is full (with `Retry-After`), 504 past `--timeout-s`. One log
line per request (logger `xvit.serve`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from xvit.engine.serve.decode import DecodeError
from xvit.engine.serve.metrics import CONTENT_TYPE_LATEST, ServeMetrics
from xvit.engine.serve.service import ModelService
from xvit.engine.serve.upload import ApiError, parse_fields, read_request

__all__ = ["DEFAULT_STATIC_DIR", "create_app"]

logger = logging.getLogger("xvit.serve")

DEFAULT_STATIC_DIR = Path(__file__).parent / "static"
_ENDPOINTS = ("/", "/v1/predict", "/v1/model", "/v1/health", "/metrics")

_PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xvit serve</title></head>
<body><h1>xvit serve</h1><p>The API is at <code>POST /v1/predict</code>,
<code>GET /v1/model</code>, <code>GET /v1/health</code> and <code>GET /metrics</code>.</p>
</body></html>
"""


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    line = " ".join(str(message).split()) or "error"
    return JSONResponse({"error": line, "status": status}, status_code=status, headers=headers)


class _State:
    def __init__(self) -> None:
        self.inflight = 0
        self.latency_ema = 1.0  # seconds, for Retry-After
        self.started = time.monotonic()
        self.draining = False


def create_app(service: ModelService, static_dir: str | Path | None = None) -> FastAPI:
    """The API around a loaded `ModelService`. `static_dir`: the web page (`index.html` at
    `GET /`, its other files under `/static/`); default the package's `static/`. The
    service is closed when the app shuts down (in-flight requests finish first)."""
    opts = service.options
    state = _State()
    metrics = ServeMetrics(lambda: state.inflight, service.batcher.pending)
    service.on_batch = metrics.batch_size.observe
    max_bytes = int(opts.max_upload_mb * 2**20)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        state.draining = True
        await asyncio.get_running_loop().run_in_executor(None, service.close)

    app = FastAPI(title="xvit serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.metrics = metrics
    app.state.service = service
    if opts.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(opts.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )

    @app.middleware("http")
    async def log_and_count(request: Request, call_next: Any) -> Response:
        t0 = time.perf_counter()
        request.state.note = ""
        response = await call_next(request)
        seconds = time.perf_counter() - t0
        path = request.url.path
        endpoint = path if path in _ENDPOINTS else ("/static" if path.startswith("/static/") else "other")
        metrics.observe(endpoint, response.status_code, seconds)
        client = request.client.host if request.client else "-"
        note = getattr(request.state, "note", "")
        logger.info(
            "%s %s %s %d %.1fms%s", client, request.method, path, response.status_code, seconds * 1000, note
        )
        return response

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, e: ApiError) -> JSONResponse:
        return _error(e.status, e.message, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail), dict(e.headers or {}))

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, e: Exception) -> JSONResponse:
        logger.error("internal error", exc_info=e)
        return _error(500, f"internal error ({type(e).__name__})")

    @app.post("/v1/predict")
    async def predict(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise ApiError(
                413, f"the upload is larger than the limit of {opts.max_upload_mb:g} MB (--max-upload-mb)"
            )
        if state.draining:
            raise ApiError(503, "the server is shutting down", {"Retry-After": "5"})
        if state.inflight >= opts.max_queue:
            retry = max(1, math.ceil(state.latency_ema))
            raise ApiError(
                503,
                f"the queue is full ({opts.max_queue} requests, --max-queue)",
                {"Retry-After": str(retry)},
            )
        state.inflight += 1
        try:
            result = await asyncio.wait_for(_answer(request), opts.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, f"the request took longer than {opts.timeout_s:g} s (--timeout-s)") from None
        finally:
            state.inflight -= 1
        elapsed = time.perf_counter() - t0
        state.latency_ema = 0.9 * state.latency_ema + 0.1 * elapsed
        result["elapsed_ms"] = round(elapsed * 1000, 3)
        return JSONResponse(result)

    async def _answer(request: Request) -> dict[str, Any]:
        upload = await read_request(request, max_bytes, opts.allow_dir)
        try:
            timeline, topk = parse_fields(upload.fields, opts.max_topk)
            request.state.note = f" file={upload.name!r} bytes={upload.size} timeline={str(timeline).lower()}"
            try:
                return await service.predict(upload.path, topk, timeline)
            except DecodeError as e:
                metrics.decode_failures.inc()
                message = str(e).replace(upload.path, upload.name)
                raise ApiError(422, message) from None
            except FloatingPointError as e:
                raise ApiError(500, str(e)) from None
        finally:
            upload.cleanup()

    @app.get("/v1/model")
    async def model_info() -> JSONResponse:
        return JSONResponse(service.info())

    @app.get("/v1/health")
    async def health() -> JSONResponse:
        body = {
            "status": "draining" if state.draining else "ok",
            "model": service.name,
            "queue": state.inflight,
            "max_queue": opts.max_queue,
            "uptime_s": round(time.monotonic() - state.started, 3),
        }
        return JSONResponse(body, status_code=503 if state.draining else 200)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    static = Path(static_dir) if static_dir is not None else DEFAULT_STATIC_DIR
    index = static / "index.html"
    if index.is_file():

        @app.get("/", include_in_schema=False)
        async def page() -> FileResponse:
            return FileResponse(index, media_type="text/html")

        app.mount("/static", StaticFiles(directory=static), name="static")
    else:

        @app.get("/", include_in_schema=False)
        async def placeholder() -> HTMLResponse:
            return HTMLResponse(_PLACEHOLDER)

    return app
