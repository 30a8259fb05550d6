"""Shop the look over HTTP: upload a street photo (a job), read the look with its boxes, labels, crops
and matches, correct a garment, add one it missed or remove one it found wrongly, add the garments to a
collection."""

from __future__ import annotations

import math
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from pydantic import BaseModel, Field

from vitrine.api.auth import Read, Write, demand
from vitrine.api.deps import EngineDep
from vitrine.api.forms import parse_json_part, read_upload
from vitrine.api.routes.jobs import JobOut
from vitrine.api.schemas import QueryOptions, Strict
from vitrine.errors import RateLimited
from vitrine.jobs.runner import JobRunner
from vitrine.keys import ApiKey

router = APIRouter(tags=["shop the look"])


class Correction(Strict):
    labels: dict[str, str] | None = Field(None, description="category / colour / pattern -> the right value")
    box: list[int] | None = Field(None, min_length=4, max_length=4, description="[x0, y0, x1, y1] in photo pixels")


class DrawnGarment(Strict):
    box: list[int] = Field(..., min_length=4, max_length=4, description="[x0, y0, x1, y1] in photo pixels")
    group: Literal["top", "bottom", "dress", "outerwear", "shoes", "bag"] | None = Field(
        None, description="what it is; read from the crop when left out (less sure: say it when you know)")
    labels: dict[str, str] | None = Field(None, description="category / colour / pattern, when known")


class IndexLook(Strict):
    collection: str = Field(..., min_length=1, max_length=64)


class Indexed(BaseModel):
    collection: str
    products: list[str]


def _runner(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.jobs
    return runner


def _with_urls(record: dict[str, Any]) -> dict[str, Any]:
    look_id = record["id"]
    record["photo_url"] = f"/looks/{look_id}/photo"
    for garment in record.get("garments", []):
        _with_crop_url(look_id, garment)
    return record


def _with_crop_url(look_id: str, garment: dict[str, Any]) -> dict[str, Any]:
    garment["crop_url"] = f"/looks/{look_id}/garments/{garment['index']}/crop"
    return garment


@router.post("/looks", status_code=202, response_model=JobOut,
             summary="Upload a street photo: a job finds each garment, labels it and matches it in a collection")
def create_look(
    request: Request,
    engine: EngineDep,
    key: Annotated[ApiKey | None, Read],
    image: Annotated[UploadFile, File(description="A photo of one or more people")],
    collection: Annotated[str | None, Form(max_length=64, description="where to find matches")] = None,
    top_k: Annotated[int, Form(ge=1, le=50)] = 5,
    options: Annotated[str, Form(description='Filters as JSON: {"filters": {...}, "ranges": {...}}')] = "{}",
) -> dict[str, Any]:
    data = read_upload(image, engine.settings.max_download_bytes)
    parsed = parse_json_part(QueryOptions, options)
    if collection:
        engine.store(collection)
    runner = _runner(request)
    if key is None:  # stored photos and queued work: a quota and an expiry for callers without a key
        client = request.client.host if request.client else "unknown"
        wait_s = request.app.state.look_quota.take(client, time.monotonic())
        if wait_s is not None:
            raise RateLimited("the looks quota of this address is used up; retry later or use an API key",
                              retry_after_s=math.ceil(wait_s))
    look_id, _ = runner.looks.save_photo(data, anonymous=key is None)
    return runner.submit_look(look_id, collection=collection or None, top_k=top_k,
                              filters=parsed.to_filters().as_plain()).as_dict()


@router.get("/looks/{look_id}", dependencies=[Read], summary="A look: garments with boxes, labels, crops, matches")
def get_look(look_id: str, request: Request) -> dict[str, Any]:
    return _with_urls(_runner(request).looks.get(look_id))


@router.get("/looks/{look_id}/photo", dependencies=[Read], response_class=Response, summary="The original photo")
def look_photo(look_id: str, request: Request) -> Response:
    data, kind = _runner(request).looks.photo(look_id)
    return Response(data, media_type=f"image/{kind}", headers={"Cache-Control": "public, max-age=86400"})


@router.get("/looks/{look_id}/garments/{index}/crop", dependencies=[Read], response_class=Response,
            summary="A garment's crop, on white")
def look_crop(look_id: str, index: int, request: Request) -> Response:
    return Response(_runner(request).looks.crop(look_id, index), media_type="image/png")


# Drawing, removing or moving a garment changes only that look (no collection, no training pair), so a shopper may
# do it wherever they may make a look: without a key where reads are public. A label correction becomes a training
# pair once the look is indexed: that is curation, and needs the write scope.
@router.patch("/looks/{look_id}/garments/{index}",
              summary="Correct a garment's box (cut again; as a look is made) or labels (write scope; a training "
                      "pair once indexed); matched again")
def correct_garment(look_id: str, index: int, body: Correction, request: Request,
                    key: Annotated[ApiKey | None, Read]) -> dict[str, Any]:
    if body.labels:
        demand("write", key, request.app.state.engine.settings)
    return _with_crop_url(look_id, _runner(request).looks.correct(look_id, index, labels=body.labels, box=body.box))


@router.post("/looks/{look_id}/garments", status_code=201, dependencies=[Read],
             summary="Add a garment the look missed (a bag): draw its box; it is labelled and matched like the others")
def add_garment(look_id: str, body: DrawnGarment, request: Request) -> dict[str, Any]:
    return _with_crop_url(look_id, _runner(request).looks.add(look_id, body.box, group=body.group, labels=body.labels))


@router.delete("/looks/{look_id}/garments/{index}", dependencies=[Read], response_class=Response, status_code=204,
               summary="Remove a garment the look found wrongly (kept as removed, so the others keep their indices)")
def remove_garment(look_id: str, index: int, request: Request) -> Response:
    _runner(request).looks.remove(look_id, index)
    return Response(status_code=204)


@router.post("/looks/{look_id}/index", dependencies=[Write], response_model=Indexed,
             summary="Add the look's garments to a collection as products (build a wardrobe from photos)")
def index_look(look_id: str, body: IndexLook, request: Request) -> Indexed:
    products = _runner(request).looks.index(look_id, body.collection)
    return Indexed(collection=body.collection, products=products)
