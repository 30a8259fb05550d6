"""Request ids, one structured log line per request, and Prometheus metrics (one registry per app)."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vitrine.search.query import SearchResponse

log = logging.getLogger("vitrine.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram("vitrine_http_request_duration_seconds", "HTTP request latency",
                                  ["method", "route", "status"], registry=self.registry, buckets=_LATENCY_BUCKETS)
        self.search_stage = Histogram("vitrine_search_stage_seconds", "Search latency per stage",
                                      ["stage"], registry=self.registry, buckets=_LATENCY_BUCKETS)
        self.searches = Counter("vitrine_searches_total", "Searches answered", ["kind"], registry=self.registry)
        self.cache = Counter("vitrine_search_cache_total", "Search result cache lookups", ["result"],
                             registry=self.registry)
        self.ingest_submitted = Counter("vitrine_ingest_jobs_submitted_total", "Ingest jobs accepted",
                                        registry=self.registry)
        self.up = Gauge("vitrine_up", "1 while the API serves", registry=self.registry)

    def observe_search(self, response: SearchResponse, *, kind: str) -> None:
        self.searches.labels(kind).inc()
        if response.cached:
            return  # a cache hit ran no stage
        for stage in ("encode", "index", "fetch"):
            self.search_stage.labels(stage).observe(response.timing_ms.get(stage, 0.0) / 1000)

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class JobStateCollector(Collector):
    """Jobs per state, and the queue depth, read from the job table at scrape time."""

    def __init__(self, count_by_state: Callable[[], dict[str, int]]) -> None:
        self.count_by_state = count_by_state

    def collect(self):  # type: ignore[no-untyped-def]
        counts = self.count_by_state()
        jobs = GaugeMetricFamily("vitrine_jobs", "Jobs per state", labels=["state"])
        for state, n in sorted(counts.items()):
            jobs.add_metric([state], n)
        yield jobs
        yield GaugeMetricFamily("vitrine_job_queue_depth", "Jobs waiting to run", value=counts.get("QUEUED", 0))


class AnalyticsCollector(Collector):
    """Searches (with and without hits) and clicks per collection within the analytics retention, read
    from the analytics table at scrape time: the same numbers from every server process."""

    def __init__(self, counts: Callable[[], dict[tuple[str, str], int]]) -> None:
        self.counts = counts

    def collect(self):  # type: ignore[no-untyped-def]
        searches = GaugeMetricFamily("vitrine_analytics_searches", "Searches recorded, by collection and outcome",
                                     labels=["collection", "outcome"])
        clicks = GaugeMetricFamily("vitrine_analytics_clicks", "Clicks recorded, by collection", labels=["collection"])
        for (collection, outcome), n in sorted(self.counts().items()):
            if outcome == "clicks":
                clicks.add_metric([collection], n)
            else:
                searches.add_metric([collection, outcome], n)
        yield searches
        yield clicks


class RequestContext:
    """A request id (the client's X-Request-ID if well formed), one structured log line and one latency
    observation per request. Pure ASGI: `@app.middleware("http")` costs a task and a stream per
    request, measurable at hundreds of searches per second."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = request_id  # request.state.request_id
        status = 500
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")  # the router sets it on this scope
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).observe(elapsed)
            log.info("request", extra={"request_id": request_id, "method": method, "route": route,
                                       "path": scope["path"], "status": status,
                                       "duration_ms": round(elapsed * 1000, 2)})
