"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from vitrine.api.deps import EngineDep
from vitrine.api.errors import error_body

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: models loaded, the home writable, database and job queue reachable",
            response_model=None)
def readyz(engine: EngineDep, request: Request) -> dict[str, object] | JSONResponse:
    checks = {"models": engine.models_loaded(), "store": engine.home_writable()}
    if engine.settings.database_url:
        checks["database"] = engine.backend.ready()
    if engine.settings.redis_url:
        checks["job_queue"] = request.app.state.jobs.queue_reachable()
    if all(checks.values()):
        return {"status": "ready", "checks": checks}
    body = error_body("not_ready", f"not ready: {', '.join(k for k, ok in checks.items() if not ok)}")
    return JSONResponse(body | {"checks": checks}, status_code=503)
