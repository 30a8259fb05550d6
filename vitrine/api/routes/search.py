"""Search by text, photo (base64, URL or upload), or both."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile

from vitrine.api.auth import Read
from vitrine.api.deps import EngineDep
from vitrine.api.forms import parse_json_part, read_upload
from vitrine.api.schemas import SearchOptions, SearchOut, SearchRequest
from vitrine.catalog.sources import is_url
from vitrine.engine import Engine
from vitrine.errors import InvalidInput, TooLarge

router = APIRouter(tags=["search"])


def _query(
    request: Request, engine: Engine, options: SearchOptions, *, text: str | None, image: bytes | None
) -> SearchOut:
    if options.collection:
        engine.store(options.collection)  # unknown collection: 404 before any encoding
    query = options.to_query(text=text, image=image)
    response = engine.search(query)
    kind = "hybrid" if text and image else "image" if image else "text" if text and text.strip() else "browse"
    request.app.state.metrics.observe_search(response, kind=kind)
    request.app.state.metrics.cache.labels("hit" if response.cached else "miss").inc()
    out = SearchOut.from_response(response)
    analytics = getattr(request.app.state, "analytics", None)
    if analytics is not None and options.offset == 0:  # one search, however many pages it is read in
        out.search_id = analytics.record_search(
            collection=query.collection, query=query.text, filters=options.model_dump(include={"filters", "ranges"}),
            kind=kind, hits=response.total, latency_ms=response.timing_ms["total"])
    return out


def _decode_base64(data: str, limit: int) -> bytes:
    if len(data) > limit * 4 // 3 + 4:
        raise TooLarge(f"image is over {limit} bytes", field="image_base64")
    try:
        return base64.b64decode(data.split(",", 1)[-1] if data.startswith("data:") else data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"not valid base64: {exc}", field="image_base64") from exc


@router.post(
    "/search", dependencies=[Read], response_model=SearchOut, summary="Search by text, photo (base64 or URL), or both"
)
def search(body: SearchRequest, request: Request, engine: EngineDep) -> SearchOut:
    if body.image_base64 is not None and body.image_url is not None:
        raise InvalidInput("give image_base64 or image_url, not both", field="image_url")
    image = None
    if body.image_base64 is not None:
        image = _decode_base64(body.image_base64, engine.settings.max_download_bytes)
    elif body.image_url is not None:
        if not is_url(body.image_url):
            raise InvalidInput("image_url must be an http(s) URL", field="image_url")
        image = engine.load_query_image(body.image_url)
    return _query(request, engine, body, text=body.text, image=image)


@router.post(
    "/search/upload", dependencies=[Read], response_model=SearchOut, summary="Search with an uploaded photo (multipart)"
)
def search_upload(
    request: Request,
    engine: EngineDep,
    image: Annotated[UploadFile, File(description="The query photo")],
    text: Annotated[str | None, Form(max_length=1000)] = None,
    options: Annotated[str, Form(description="SearchOptions as JSON (collection, alpha, filters...)")] = "{}",
) -> SearchOut:
    data = read_upload(image, engine.settings.max_download_bytes)
    parsed = parse_json_part(SearchOptions, options)
    return _query(request, engine, parsed, text=text, image=data)


@router.get("/suggest", dependencies=[Read], summary="Completions of a partly typed query (search-as-you-type)")
def suggest(
    request: Request,
    engine: EngineDep,
    q: Annotated[str, Query(max_length=200, description="What the shopper has typed so far")],
    collection: Annotated[str | None, Query(description="One collection; all when omitted")] = None,
    limit: Annotated[int, Query(ge=1, le=20)] = 8,
) -> dict[str, list[dict[str, object]]]:
    """Past popular queries that start as typed, then categories, completed words and product titles:
    each `{text, kind, count | id}`."""
    if collection:
        engine.store(collection)
    found = engine.suggest(q, collection=collection, limit=limit)
    analytics = getattr(request.app.state, "analytics", None)
    typed = " ".join(q.lower().split())
    if analytics is not None and typed:
        past = [{"text": text, "kind": "popular", "count": n} for text, n in analytics.popular(collection)
                if text.lower().startswith(typed) and text.lower() != typed][:3]
        known = {p["text"].lower() for p in past}
        found = (past + [s for s in found if s["text"].lower() not in known])[:limit]
    return {"suggestions": found}
