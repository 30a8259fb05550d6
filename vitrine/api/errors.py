"""One JSON error shape, `{"error": {"code", "message", "field"}}`, from one mapping of core errors."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vitrine.api.auth import Forbidden, Unauthorized
from vitrine.errors import (
    Busy,
    Conflict,
    InvalidInput,
    ModelUnavailable,
    NotFound,
    RateLimited,
    ServiceDown,
    TooLarge,
    VitrineError,
)

log = logging.getLogger(__name__)

# Most specific first: the first matching class decides.
STATUS: dict[type[VitrineError], int] = {
    TooLarge: 413, InvalidInput: 422, Conflict: 409, NotFound: 404, ModelUnavailable: 503, RateLimited: 429, Busy: 503,
    ServiceDown: 503,
    Unauthorized: 401, Forbidden: 403,
}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def status_of(exc: VitrineError) -> int:
    return next((status for cls, status in STATUS.items() if isinstance(exc, cls)), 400)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VitrineError)
    async def vitrine_error(_: Request, exc: VitrineError) -> JSONResponse:
        status = status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, Busy):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return JSONResponse(error_body(exc.code, exc.message, exc.field), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "form")]
        return JSONResponse(
            error_body("invalid_request", str(first.get("msg", "invalid request")), ".".join(location) or None),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(error_body("internal", "internal error"), status_code=500)
