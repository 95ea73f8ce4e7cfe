"""Metrics port on Prometheus, one registry per application (tests never clash).

metrics = PrometheusMetrics()
metrics.incr("images_processed", 35)
metrics.render()   # the text exposition format for GET /metrics
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["PrometheusMetrics"]


class PrometheusMetrics:
    """Known metric names get their labels; everything is prefixed ``imgpipe_``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "imgpipe_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "imgpipe_http_request_seconds", "HTTP request latency", ["method", "route"], registry=r
        )
        self.images = Counter("imgpipe_images_processed", "Images processed", ["kind"], registry=r)
        self.failures = Counter(
            "imgpipe_failures", "Failures by reason", ["kind", "reason"], registry=r
        )
        self.batches = Histogram(
            "imgpipe_batch_duration_seconds", "Batch durations", registry=r,
            buckets=(1, 5, 15, 60, 300, 900, 3600, float("inf")),
        )  # fmt: skip

    def incr(self, name: str, value: float = 1.0, **labels: str) -> None:
        if name == "images_processed":
            self.images.labels(kind=labels.get("kind", "collage")).inc(value)
        elif name == "failures":
            self.failures.labels(
                kind=labels.get("kind", "collage"), reason=labels.get("reason", "unknown")
            ).inc(value)
        else:
            raise ValueError(f"unknown counter {name!r}")

    def observe(self, name: str, value: float, **labels: str) -> None:
        if name == "batch_duration":
            self.batches.observe(value)
        elif name == "http_request":
            method, route = labels.get("method", ""), labels.get("route", "")
            self.latency.labels(method=method, route=route).observe(value)
            self.requests.labels(method=method, route=route, status=labels.get("status", "")).inc()
        else:
            raise ValueError(f"unknown observation {name!r}")

    def render(self) -> bytes:
        return generate_latest(self.registry)
