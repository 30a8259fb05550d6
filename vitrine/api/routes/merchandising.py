"""A collection's merchandising: its rules (pin, boost, bury, hide) and its own synonyms."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import Field

from vitrine.api.auth import Read, Write
from vitrine.api.deps import EngineDep
from vitrine.api.schemas import Strict

router = APIRouter(prefix="/collections/{name}", tags=["merchandising"])


class RuleIn(Strict):
    action: Literal["pin", "boost", "bury", "hide"]
    query: str | None = Field(None, max_length=200,
                              description="Applies to searches for this text (folded, singular); omitted: to all")
    product_id: str | None = Field(None, max_length=200, description="pin / hide: the product")
    position: int | None = Field(None, ge=1, le=100, description="pin: where the product shows, 1 = first")
    field: str | None = Field(None, max_length=64,
                              description="boost / bury / hide: an attribute, or `in_stock` (availability)")
    value: str | None = Field(None, max_length=200, description="The field's value (in_stock: true or false)")
    weight: float | None = Field(None, gt=0, le=1, description="boost / bury: how far (default 0.1)")


class RuleOut(RuleIn):
    id: str


class Synonyms(Strict):
    synonyms: list[list[str]] = Field(
        ..., max_length=1000,
        description="Groups of phrases that mean the same here, e.g. [[\"parka\", \"jacket\"]]; a query word the "
                    "collection never uses is searched as a group member it does use")


@router.get("/rules", dependencies=[Read], response_model=list[RuleOut], response_model_exclude_none=True,
            summary="The collection's rules")
def list_rules(name: str, engine: EngineDep) -> list[dict[str, Any]]:
    return [r.as_dict() for r in engine.rules(name)]


@router.post("/rules", dependencies=[Write], response_model=RuleOut, status_code=201, response_model_exclude_none=True,
             summary="Add a merchandising rule; searches apply it at once")
def add_rule(name: str, body: RuleIn, engine: EngineDep) -> dict[str, Any]:
    return engine.add_rule(name, body.model_dump(exclude_none=True)).as_dict()


@router.delete("/rules/{rule_id}", dependencies=[Write], status_code=204, summary="Remove a rule")
def delete_rule(name: str, rule_id: str, engine: EngineDep) -> Response:
    engine.delete_rule(name, rule_id)
    return Response(status_code=204)


@router.get("/synonyms", dependencies=[Read], response_model=Synonyms, summary="The collection's own synonyms")
def get_synonyms(name: str, engine: EngineDep) -> Synonyms:
    return Synonyms(synonyms=engine.synonyms(name))


@router.put("/synonyms", dependencies=[Write], response_model=Synonyms,
            summary="Replace the collection's synonyms (the built-in ones always apply)")
def put_synonyms(name: str, body: Synonyms, engine: EngineDep) -> Synonyms:
    return Synonyms(synonyms=engine.set_synonyms(name, body.synonyms))
