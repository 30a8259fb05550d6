"""Per-client token buckets: a verified API key is its own client, anyone else is their IP address."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

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


class RateLimit:
    """429 with Retry-After once a client has used its bucket (pure ASGI, as RequestContext)."""

    def __init__(self, app: ASGIApp, *, per_minute: int, burst: int) -> None:
        self.app = app
        self.buckets = TokenBuckets(rate_per_s=per_minute / 60.0, burst=burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        wait_s = self.buckets.take(_client_of(request), time.monotonic())
        if wait_s is None:
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil(wait_s))
        response = JSONResponse(error_body("rate_limited", f"too many requests; retry in {retry_after} s"),
                                status_code=429, headers={"Retry-After": str(retry_after)})
        await response(scope, receive, send)


def _client_of(request: Request) -> str:
    token = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
    if token:
        key = request.app.state.keys.verify(token.strip())
        if key is not None:
            return f"key:{key.id}"
    return f"ip:{request.client.host if request.client else 'unknown'}"
