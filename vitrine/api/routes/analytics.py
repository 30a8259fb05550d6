"""Search analytics: shoppers' clicks (any caller), and the report (a write key)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from vitrine.analytics.store import ALL
from vitrine.api.auth import Read, Write
from vitrine.api.deps import EngineDep
from vitrine.api.schemas import Strict
from vitrine.errors import NotFound

router = APIRouter(tags=["analytics"])
TRAINING_CLICKS = 2


class ShopperClick(Strict):
    search_id: str = Field(..., min_length=1, max_length=64, description="The `search_id` of the search")
    product_id: str = Field(..., min_length=1, max_length=200)
    position: int = Field(..., ge=1, le=10_000, description="Where the product was shown: 1 = first")


def _analytics(request: Request) -> Any:
    analytics = getattr(request.app.state, "analytics", None)
    if analytics is None:
        raise NotFound("analytics are turned off (VITRINE_ANALYTICS=false)")
    return analytics


@router.post("/clicks", dependencies=[Read], status_code=204, summary="Record a shopper's click on a search result")
def click(body: ShopperClick, request: Request, engine: EngineDep) -> Response:
    """A query whose results led shoppers to a product TRAINING_CLICKS times becomes a training pair
    for `vitrine train` (one click alone, from anyone, is too easy to forge)."""
    found = _analytics(request).record_click(search_id=body.search_id, product_id=body.product_id,
                                             position=body.position)
    if found is None:
        raise NotFound(f"no recorded search {body.search_id!r}", field="search_id")
    collection, query, times = found
    if times == TRAINING_CLICKS and collection != ALL and query:
        try:
            engine.get_product(collection, body.product_id)
            engine.store(collection).add_training_pair(body.product_id, query, "click")
        except NotFound:
            pass  # a product or collection deleted since: nothing to learn
    return Response(status_code=204)


@router.get("/analytics", dependencies=[Write], summary="Top queries, queries with no results, CTR, click positions")
def report(
    request: Request,
    engine: EngineDep,
    collection: Annotated[str | None, Query(description="One collection; omitted: searches over all of them")] = None,
    days: Annotated[int, Query(ge=1, le=3650)] = 30,
) -> dict[str, Any]:
    if collection:
        engine.store(collection)
    result: dict[str, Any] = _analytics(request).report(collection, days=days)
    return result
