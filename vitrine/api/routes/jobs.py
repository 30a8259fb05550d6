"""Ingest as a background job, and the jobs themselves: list, inspect, cancel."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from pydantic import BaseModel, Field

from vitrine.api.auth import Read, Write
from vitrine.api.deps import EngineDep
from vitrine.api.schemas import Strict
from vitrine.catalog.formats import FORMATS
from vitrine.engine import check_collection_name
from vitrine.errors import InvalidInput
from vitrine.jobs.runner import JobRunner

router = APIRouter(tags=["jobs"])


class JobOut(BaseModel):
    id: str
    kind: str
    collection: str | None
    state: str = Field(description="QUEUED, RUNNING (look jobs: DETECTING, ANALYZING, MATCHING), COMPLETE, "
                       "FAILED or CANCELLED")
    done: int
    total: int
    rate_per_s: float | None
    eta_s: float | None
    result: dict[str, Any] | None = Field(description="The validation report, once complete")
    error: str | None
    cancel_requested: bool
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None


FORMAT_PATTERN = "^(" + "|".join(FORMATS) + ")$"
# Over HTTP the media root can only be a base URL: a server folder named by a client could be any folder.
MEDIA_ROOT_PATTERN = "^https?://"


class IngestByUrl(Strict):
    url: str = Field(..., max_length=2048, description="http(s) URL of a catalog or a zip; a Shopify store's "
                     "/products.json is read page by page")
    mapping: dict[str, str] = Field(default_factory=dict, description="product field -> column or dotted path")
    format: str | None = Field(None, pattern=FORMAT_PATTERN, description="detected from the content when left out")
    prune: bool = False
    media_root: str | None = Field(None, max_length=2048, pattern=MEDIA_ROOT_PATTERN,
                                   description="base URL of a Magento export's image paths")


def _runner(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.jobs
    return runner


def _mapping(text: str) -> dict[str, str]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not JSON: {exc.msg}", field="mapping") from exc
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidInput("mapping must be a JSON object of field -> column", field="mapping")
    return value


@router.post(
    "/collections/{name}/ingest",
    dependencies=[Write],
    status_code=202,
    response_model=JobOut,
    summary="Upload a catalog (CSV, JSON, JSONL, or a zip with its photos): starts an ingest job",
)
def ingest_upload(
    name: str,
    request: Request,
    engine: EngineDep,
    file: Annotated[UploadFile, File(description="The catalog, or a zip of it with its photos")],
    mapping: Annotated[str, Form(description='JSON object, e.g. {"id": "sku"}')] = "{}",
    format: Annotated[str | None, Form(pattern=FORMAT_PATTERN)] = None,  # noqa: A002
    prune: Annotated[bool, Form()] = False,
    media_root: Annotated[str | None, Form(max_length=2048, pattern=MEDIA_ROOT_PATTERN)] = None,
) -> dict[str, Any]:
    check_collection_name(name)
    columns = _mapping(mapping)
    # A malformed file is a 4xx here, not a failed job.
    catalog = engine.save_catalog_upload(file.file, file.filename or "catalog", mapping=columns or None, fmt=format)
    request.app.state.metrics.ingest_submitted.inc()
    return _runner(request).submit_ingest(name, catalog, mapping=columns, fmt=format, prune=prune,
                                          media_root=media_root, shared=engine.share_upload(catalog)).as_dict()


@router.post(
    "/collections/{name}/ingest/url",
    dependencies=[Write],
    status_code=202,
    response_model=JobOut,
    summary="Ingest a catalog from an http(s) URL: starts an ingest job",
)
def ingest_url(name: str, body: IngestByUrl, request: Request, engine: EngineDep) -> dict[str, Any]:
    check_collection_name(name)
    catalog = engine.fetch_catalog(body.url, mapping=body.mapping or None, fmt=body.format)
    request.app.state.metrics.ingest_submitted.inc()
    job = _runner(request).submit_ingest(name, catalog, mapping=body.mapping, fmt=body.format, prune=body.prune,
                                         media_root=body.media_root)
    return job.as_dict()


@router.get("/jobs", dependencies=[Read], response_model=list[JobOut], summary="Recent jobs, newest first")
def list_jobs(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    state: Annotated[str | None, Query(pattern="^(QUEUED|RUNNING|COMPLETE|FAILED|CANCELLED)$")] = None,
) -> list[dict[str, Any]]:
    return [job.as_dict() for job in _runner(request).jobs.recent(limit=limit, state=state)]


@router.get("/jobs/{job_id}", dependencies=[Read], response_model=JobOut, summary="A job's state, counts, rate and ETA")
def get_job(job_id: str, request: Request) -> dict[str, Any]:
    return _runner(request).jobs.get(job_id).as_dict()


@router.post(
    "/jobs/{job_id}/cancel",
    dependencies=[Write],
    response_model=JobOut,
    summary="Ask a job to stop after its current batch",
)
def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    return _runner(request).cancel(job_id).as_dict()
