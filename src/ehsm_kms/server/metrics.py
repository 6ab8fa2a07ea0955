"""Prometheus metrics of one node: requests per action and code, latency, core round trips, store latency."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from ehsm_kms.service.node import Node

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
        self.core_seconds = Gauge(
            "ehsm_core_call_seconds_sum", "Time spent in calls to the core (round trips)", registry=self.registry
        )
        self.core_calls = Gauge("ehsm_core_call_seconds_count", "Calls to the core", registry=self.registry)
        self.store_seconds = Gauge(
            "ehsm_store_call_seconds_sum", "Time spent in store calls on the request path", registry=self.registry
        )
        self.store_calls = Gauge(
            "ehsm_store_call_seconds_count", "Store calls on the request path", registry=self.registry
        )
        self.core_restarts = Gauge("ehsm_core_restarts", "Restarts of the isolated core", registry=self.registry)
        self.store_latency = Histogram(
            "ehsm_store_ping_seconds",
            "Store round-trip time measured by /readyz",
            buckets=_BUCKETS,
            registry=self.registry,
        )

        # The labelled children, looked up once each (``labels()`` takes a lock and builds a key per call).
        self._counted: dict[tuple[str, int], Any] = {}
        self._timed: dict[str, Any] = {}

    def observe(self, action: str, code: int, seconds: float) -> None:
        counter = self._counted.get((action, code))
        if counter is None:
            counter = self._counted[(action, code)] = self.requests.labels(action, str(code))
        counter.inc()
        histogram = self._timed.get(action)
        if histogram is None:
            histogram = self._timed[action] = self.latency.labels(action)
        histogram.observe(seconds)

    def render(self, node: Node | None = None) -> bytes:
        if node is not None:
            self.core_seconds.set(node.core_seconds)
            self.core_calls.set(node.core_calls)
            self.store_seconds.set(node.store_seconds)
            self.store_calls.set(node.store_calls)
            self.core_restarts.set(getattr(node.core, "restarts", 0))
        return generate_latest(self.registry)
