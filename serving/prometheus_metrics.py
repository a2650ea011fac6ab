"""Prometheus metrics for one app: requests, latency, batch sizes, queue depth, verdicts, the challenger in
shadow; and the ASGI recorder."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from serving.engine import InferenceEngine, Verdict
    from serving.shadow_scorer import ShadowScorer

# The real-time budget is 1-200 ms per frame; the tail buckets catch what blows it.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)
UNMATCHED_ROUTE = "<unmatched>"  # one label for every path no route matched: raw paths would be unbounded


class _QueueDepthCollector(Collector):
    """Reads each engine's queue depth at scrape time, so the gauge is never stale and costs nothing per request."""

    def __init__(self, engines: Callable[[], Mapping[str, InferenceEngine]]) -> None:
        self._engines = engines

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The family without samples, so registering never calls the engines."""
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per served product."""
        family = self._family()
        for product, engine in sorted(self._engines().items()):
            family.add_metric([product], engine.queue_depth)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "inspection_queue_depth", "Frames waiting for an inference batch, per product.", labels=["product"]
        )


class _ShadowQueueDepthCollector(Collector):
    """Frames waiting for each product's challenger in shadow, read at scrape time like the engines' depth."""

    def __init__(self, shadows: Callable[[], Mapping[str, ShadowScorer]]) -> None:
        self._shadows = shadows

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The family without samples, so registering never calls the shadows."""
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per product with a challenger in shadow."""
        family = self._family()
        for product, shadow in sorted(self._shadows().items()):
            family.add_metric([product, str(shadow.model_version)], shadow.queue_depth)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "inspection_shadow_queue_depth",
            "Frames waiting for the challenger in shadow, per product and challenger version.",
            labels=["product", "version"],
        )


class ServingMetrics:
    """Every metric of one app, in its own registry (tests build several apps in one process)."""

    def __init__(
        self,
        engines: Callable[[], Mapping[str, InferenceEngine]],
        shadows: Callable[[], Mapping[str, ShadowScorer]] = dict,
    ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "inspection_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "inspection_http_request_duration_seconds",
            "Time from request received to response sent, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        # Observed once per frame, so it weights a batch by the frames in it: "how many frames shared my batch".
        self.batch_size = Histogram(
            "inspection_inference_batch_size",
            "Size of the inference batch each answered frame was scored in, per product.",
            ["product"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.verdicts = Counter(
            "inspection_verdicts",
            "Answered verdicts by product, verdict (pass/defect) and defect type ('none' on a pass).",
            ["product", "verdict", "defect_type"],
            registry=self.registry,
        )
        self.shadow_scored = Counter(
            "inspection_shadow_scored",
            "Frames scored by the challenger in shadow and stored, per product.",
            ["product"],
            registry=self.registry,
        )
        # Every answered frame is either scored in shadow or counted here, so the two add up to the frames offered.
        self.shadow_skipped = Counter(
            "inspection_shadow_skipped",
            "Frames the challenger in shadow skipped, per product and reason (queue_full, late, stopped, error).",
            ["product", "reason"],
            registry=self.registry,
        )
        self.registry.register(_QueueDepthCollector(engines))
        self.registry.register(_ShadowQueueDepthCollector(shadows))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_verdict(self, product: str, verdict: Verdict) -> None:
        """Count one verdict and the batch size it was scored in."""
        label = "defect" if verdict.is_defect else "pass"
        self.verdicts.labels(product, label, verdict.defect_type or "none").inc()
        self.batch_size.labels(product).observe(verdict.batch_size)

    def observe_shadow_scored(self, product: str, count: int) -> None:
        """Count frames the challenger scored in shadow (called from the shadow thread; counters are thread-safe)."""
        self.shadow_scored.labels(product).inc(count)

    def observe_shadow_skipped(self, product: str, reason: str, count: int) -> None:
        """Count frames that got no shadow score, and why."""
        self.shadow_skipped.labels(product, reason).inc(count)


def route_template(scope: Scope) -> str:
    """The matched route's path template ('/v1/inspect/{product}'), set in the scope by the router."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED_ROUTE


class RequestMetricsMiddleware:
    """Pure ASGI (no per-request task or body buffering, unlike BaseHTTPMiddleware): status, route, latency."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through, noting the status sent; record it however the request ends."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # An exception before any response start is answered 500 by the outer ServerErrorMiddleware.
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            # The router has filled scope["route"] by now (the same dict travels down the stack).
            self.metrics.observe_request(scope["method"], route_template(scope), status, time.perf_counter() - started)
