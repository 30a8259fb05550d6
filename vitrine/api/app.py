"""The FastAPI application: `create_app(settings)`; the engine opens in `lifespan`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from vitrine import __version__
from vitrine.analytics.store import SCHEMA as ANALYTICS
from vitrine.analytics.store import Analytics
from vitrine.api.auth import ReadDocs
from vitrine.api.errors import install_error_handlers
from vitrine.api.limits import BodySizeLimit
from vitrine.api.observability import AnalyticsCollector, JobStateCollector, Metrics, RequestContext
from vitrine.api.ratelimit import RateLimit, TokenBuckets
from vitrine.api.routes import (
    analytics,
    collections,
    health,
    jobs,
    looks,
    merchandising,
    metrics,
    models,
    products,
    search,
)
from vitrine.engine import Engine
from vitrine.jobs.runner import JobRunner
from vitrine.jobs.store import SCHEMA as JOBS
from vitrine.jobs.store import JobStore
from vitrine.keys import SCHEMA as KEYS
from vitrine.keys import KeyStore
from vitrine.settings import Settings
from vitrine.web import mount_ui

CATALOG_UPLOAD_PATH = re.compile(r"/collections/[^/]+/ingest")


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """A given `engine` is used and left open (tests share one); otherwise the app owns its own."""
    settings = settings or (engine.settings if engine else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        owned = engine is None
        # Sync routes run in anyio's thread pool (40 threads by default). Searches are CPU-bound, so
        # more threads than search slots only contend for the GIL (measured: 4 threads instead of 2
        # cost a fifth of the searches/s); the rest of a burst waits its turn without a thread.
        # Two at least, so that one slow request (a photo fetched by URL) does not hold up the rest.
        slots = settings.search_concurrency or settings.threads
        anyio.to_thread.current_default_thread_limiter().total_tokens = max(2, slots)
        app.state.engine = engine or Engine(settings)
        app.state.engine.warm()
        app.state.engine.preload()
        home = app.state.engine.home
        job_store = JobStore(app.state.engine.backend.tables("jobs", JOBS))
        # This lifespan stops the runner it started, even if the app is entered again meanwhile (a test
        # client opened twice) and app.state holds another one.
        runner = JobRunner(app.state.engine, jobs=job_store, queue_path=home / "queue.sqlite",
                           workers=settings.job_workers, redis_url=settings.redis_url, lease_s=settings.job_lease_s)
        app.state.jobs = runner
        if settings.run_jobs:
            runner.start()
        app.state.keys = KeyStore(app.state.engine.backend.tables("keys", KEYS))
        collector = JobStateCollector(job_store.counts)
        app.state.metrics.add_collector(collector)
        app.state.analytics = Analytics(app.state.engine.backend.tables("analytics", ANALYTICS),
                                        retention_days=settings.analytics_retention_days,
                                        max_rows=settings.analytics_max_rows) if settings.analytics else None
        analytics_collector = AnalyticsCollector(app.state.analytics.counts) if app.state.analytics else None
        if analytics_collector is not None:
            app.state.metrics.add_collector(analytics_collector)
        app.state.metrics.up.set(1)
        try:
            # Read by the HTTP protocol (api/server.py), which has no settings of its own.
            yield {"header_timeout_s": settings.header_timeout_s, "body_idle_timeout_s": settings.body_idle_timeout_s}
        finally:
            app.state.metrics.up.set(0)
            app.state.metrics.registry.unregister(collector)
            if analytics_collector is not None:
                app.state.metrics.registry.unregister(analytics_collector)
                app.state.analytics.close()
            runner.stop()
            job_store.close()
            app.state.keys.close()
            if owned:
                app.state.engine.close()

    open_docs = settings.docs_public
    app = FastAPI(
        title="Vitrine",
        version=__version__,
        description="Fashion search: text, photo, hybrid and more-like-this over product catalogs.",
        lifespan=lifespan,
        openapi_url="/openapi.json" if open_docs else None,
        docs_url="/docs" if open_docs else None,
        redoc_url="/redoc" if open_docs else None,
    )
    if not open_docs:
        _closed_docs(app)
    install_error_handlers(app)
    app.state.metrics = Metrics()
    per_hour = settings.anonymous_looks_per_hour  # 0: callers without a key make no looks
    app.state.look_quota = TokenBuckets(rate_per_s=max(per_hour, 1e-6) / 3600.0, burst=per_hour)
    if settings.rate_limit_per_minute > 0:
        app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute, burst=settings.rate_limit_burst)
    # Outside the rate limit: refused requests are logged and counted too.
    app.add_middleware(RequestContext, metrics=app.state.metrics)
    for module in (health, analytics, collections, products, search, merchandising, jobs, models, looks, metrics):
        app.include_router(module.router)
    mount_ui(app)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
                           expose_headers=["X-Request-ID", "Retry-After"])
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes,
                       upload_bytes=settings.max_catalog_upload_bytes, upload_path=CATALOG_UPLOAD_PATH)
    return app


def _closed_docs(app: FastAPI) -> None:
    """The API description and its docs page behind a read key (VITRINE_PUBLIC_DOCS=false, or closed reads)."""

    @app.get("/openapi.json", dependencies=[ReadDocs], include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", dependencies=[ReadDocs], include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Vitrine API")


def app_from_environment() -> FastAPI:
    """The app factory for `vitrine serve --workers N`: each worker process builds its own app from the
    settings (environment variables and config file)."""
    return create_app(Settings())
