"""Collections: create, list, inspect, delete."""

from __future__ import annotations

from fastapi import APIRouter, Response

from vitrine.api.auth import Admin, Read, Write
from vitrine.api.deps import EngineDep
from vitrine.api.schemas import CollectionCreate, CollectionOut

router = APIRouter(prefix="/collections", tags=["collections"])


@router.get("", dependencies=[Read], response_model=list[CollectionOut], summary="List collections")
def list_collections(engine: EngineDep) -> list[dict[str, object]]:
    return engine.collections()


@router.post(
    "", dependencies=[Write], response_model=CollectionOut, status_code=201, summary="Create an empty collection"
)
def create_collection(body: CollectionCreate, engine: EngineDep) -> dict[str, object]:
    engine.create_collection(body.name)
    return engine.collection_info(body.name)


@router.get("/{name}", dependencies=[Read], response_model=CollectionOut, summary="A collection's counts and settings")
def get_collection(name: str, engine: EngineDep) -> dict[str, object]:
    return engine.collection_info(name)


@router.delete("/{name}", dependencies=[Admin], status_code=204, summary="Delete a collection and everything in it")
def delete_collection(name: str, engine: EngineDep) -> Response:
    engine.delete_collection(name)
    return Response(status_code=204)
