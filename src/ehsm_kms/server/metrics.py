"""Prometheus metrics of one node: requests per action and code, latency, core round trips, store latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ehsm_requests_total",
            "Requests by action and wire code",
            ["action", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ehsm_request_seconds",
            "Request latency by action",
            ["action"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.core_round_trip = Gauge(
            "ehsm_core_round_trip_seconds_avg",
            "Mean core round-trip time since start",
            registry=self.registry,
        )
        self.core_restarts = Gauge(
            "ehsm_core_restarts", "Restarts of the isolated core", registry=self.registry
        )
        self.store_latency = Histogram(
            "ehsm_store_ping_seconds",
            "Store round-trip time measured by /readyz",
            buckets=_BUCKETS,
            registry=self.registry,
        )

    def observe(self, action: str, code: int, seconds: float) -> None:
        self.requests.labels(action, str(code)).inc()
        self.latency.labels(action).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
