"""Per-client token buckets: a verified API key is its own client, anyone else is their IP address."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from vitrine.api.errors import error_body

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
MAX_CLIENTS = 100_000  # least recently seen clients are forgotten beyond this


class TokenBuckets:
    """`rate_per_s` tokens refill continuously up to `burst`; each request takes one."""

    def __init__(self, *, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, client: str, now: float) -> float | None:
        """None if allowed, else the seconds until a token is free."""
        with self._lock:
            tokens, at = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > MAX_CLIENTS:
                self._buckets.popitem(last=False)
        return None if allowed else (1.0 - tokens) / self.rate_per_s


def install_rate_limit(app: FastAPI, *, per_minute: int, burst: int) -> None:
    if per_minute <= 0:
        return
    buckets = TokenBuckets(rate_per_s=per_minute / 60.0, burst=burst)

    @app.middleware("http")
    async def rate_limit(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path in EXEMPT_PATHS:
            return await call_next(request)
        wait_s = buckets.take(_client_of(request), time.monotonic())
        if wait_s is None:
            return await call_next(request)
        retry_after = max(1, math.ceil(wait_s))
        return JSONResponse(error_body("rate_limited", f"too many requests; retry in {retry_after} s"),
                            status_code=429, headers={"Retry-After": str(retry_after)})


def _client_of(request: Request) -> str:
    token = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
    if token:
        key = request.app.state.keys.verify(token.strip())
        if key is not None:
            return f"key:{key.id}"
    return f"ip:{request.client.host if request.client else 'unknown'}"
