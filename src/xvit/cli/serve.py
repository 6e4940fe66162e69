"""`xvit serve --checkpoint DIR`: the model behind an HTTP API and a web page (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import logging

from xvit.cli._common import error

PROG = "xvit serve"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `serve` sub-command."""
    p = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP (POST /v1/predict, a web page at /)",
        description=(
            "Load a model once and answer predictions over HTTP: POST /v1/predict (a multipart "
            'video upload, or {"path": ...} inside --allow-dir), GET /v1/model, GET /v1/health, '
            "GET /metrics (Prometheus) and a web page at /. Concurrent requests share model calls "
            "(--max-batch clips gathered for at most --max-wait-ms). Needs the serve extra: "
            "pip install 'xvit[serve]'. Ctrl-C or SIGTERM stops accepting requests and finishes "
            "the ones in progress."
        ),
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a run directory, a save_pretrained directory, a released model's registry name or hf-hub:ORG/NAME",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free port)"
    )
    p.add_argument("--max-batch", type=int, default=8, help="clips per model call at most (default 8)")
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=10.0,
        help="how long the first request of a batch waits for others (default 10)",
    )
    p.add_argument(
        "--decode-workers",
        type=int,
        help="decoding worker processes (default: one core of this process's share left for the model, "
        "at most 4, at least 1: 1 on 2 cores)",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=64,
        help="prediction requests in progress at most; more get 503 with Retry-After (default 64)",
    )
    p.add_argument("--timeout-s", type=float, default=60.0, help="a request over this gets 504 (default 60)")
    p.add_argument("--max-upload-mb", type=float, default=100.0, help="larger uploads get 413 (default 100)")
    p.add_argument("--allow-dir", help='accept {"path": ...} requests for files inside this directory')
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow cross-origin requests from ORIGIN (repeatable; default: none)",
    )
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--static-dir", help="serve this directory's index.html at / instead of the built-in page")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def check_listen(host: str, port: int) -> None:
    """A ValueError (one line) when ``host:port`` cannot be listened on: the port is taken or
    the address is not this machine's. Bound and released at once, as uvicorn binds it
    (``SO_REUSEADDR``), so a port in TIME_WAIT still passes."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ValueError(f"--host {host}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            raise ValueError(
                f"cannot listen on {host}:{port}: {e.strerror or e} (another server there? give another --port)"
            ) from None


def run(args: argparse.Namespace) -> int:
    """Entry point of `xvit serve`."""
    try:
        import uvicorn

        from xvit.engine.serve.app import create_app
    except ImportError as e:
        return error(
            PROG, f"{e.name or e} is not installed; install the serve extra: pip install 'xvit[serve]'", 2
        )
    from xvit.engine.run.schema import ConfigError
    from xvit.engine.serve.service import (
        ModelService,
        ServeOptions,
        check_serve_options,
        default_decode_workers,
    )

    options = ServeOptions(
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        decode_workers=default_decode_workers() if args.decode_workers is None else args.decode_workers,
        max_queue=args.max_queue,
        timeout_s=args.timeout_s,
        max_upload_mb=args.max_upload_mb,
        allow_dir=args.allow_dir,
        cors_origins=tuple(args.cors_origin),
    )
    try:
        check_serve_options(options)
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port must be in 0..65535, got {args.port}")
        check_listen(args.host, args.port)  # before the model loads and warms up
        logging.basicConfig(
            level=getattr(logging, args.log_level.upper()),
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
        service = ModelService(
            args.checkpoint, options, [f"train.device={args.device}"] if args.device else []
        )
    except (ConfigError, FileNotFoundError, ValueError) as e:
        return error(PROG, e, 2)
    try:
        service.warm_up()
        app = create_app(service, args.static_dir)
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,  # one line per request comes from the app (logger xvit.serve)
            timeout_graceful_shutdown=int(options.timeout_s) + 5,
        )
        server = uvicorn.Server(config)
        server.run()
        if not server.started:
            return error(PROG, f"could not listen on {args.host}:{args.port}", 1)
    except SystemExit as e:  # uvicorn exits on a failed bind
        return error(PROG, f"could not listen on {args.host}:{args.port}", 1) if e.code else 0
    finally:
        service.close()
    return 0
