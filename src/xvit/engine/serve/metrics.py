"""`xvit serve`'s Prometheus metrics (`GET /metrics`), in a registry of their own per app."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ServeMetrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128)


class ServeMetrics:
    """Requests by endpoint and status, latency, queue length, batch sizes, decode failures."""

    def __init__(self, queue_length: Callable[[], float], pending: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "xvit_serve_requests",
            "HTTP requests answered, by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "xvit_serve_request_seconds",
            "time from a request's arrival to its answer, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "xvit_serve_batch_size", "clips per model call", buckets=BATCH_BUCKETS, registry=r
        )
        self.decode_failures = Counter(
            "xvit_serve_decode_failures", "uploads the decoder could not read (answered 422)", registry=r
        )
        queue = Gauge(
            "xvit_serve_queue_length", "prediction requests admitted and not yet answered", registry=r
        )
        queue.set_function(queue_length)
        waiting = Gauge("xvit_serve_model_pending", "requests waiting for a model call", registry=r)
        waiting.set_function(pending)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
