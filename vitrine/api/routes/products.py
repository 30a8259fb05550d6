"""Products: read, delete, their photos, and "more like this"."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse

from vitrine.api.auth import Read, Write
from vitrine.api.deps import EngineDep
from vitrine.api.forms import parse_json_part, read_upload
from vitrine.api.schemas import ImageOut, ProductIn, ProductOut, SearchOut, SimilarRequest, VariantOut
from vitrine.catalog.records import record_from_fields
from vitrine.engine import check_collection_name
from vitrine.errors import NotFound
from vitrine.index.store import Product
from vitrine.models.imaging import sniff_image_type
from vitrine.storage import S3

router = APIRouter(prefix="/collections/{collection}/products", tags=["products"])


@router.get("/{product_id}", dependencies=[Read], response_model=ProductOut, summary="One product with its photos")
def get_product(collection: str, product_id: str, engine: EngineDep) -> ProductOut:
    return _product_out(collection, engine.get_product(collection, product_id))


@router.get("/{product_id}/complete", dependencies=[Read], summary="Complete the look: items of other groups that "
            "go with the product")
def complete(collection: str, product_id: str, engine: EngineDep, request: Request,
             limit: Annotated[int, Query(ge=1, le=50)] = 8) -> dict[str, list[dict[str, object]]]:
    """Products of the same indexed look and products clicked in the same searches first; then by
    garment groups worn together, gender, colour harmony, price tier and style. Each item names its
    group (bottom, shoes, outerwear...)."""
    analytics = getattr(request.app.state, "analytics", None)
    together = analytics.clicked_together(collection, product_id) if analytics is not None else None
    found = engine.complete_the_look(collection, product_id, limit, clicked_together=together)
    return {"items": [{"group": group, **_product_out(collection, p).model_dump(
        include={"id", "title", "category", "colour", "price"}),
        "main_image_url": f"/collections/{collection}/products/{p.id}/images/{p.main_image.position}"
        if p.main_image else None} for p, group in found]}


def _product_out(collection: str, p: Product) -> ProductOut:
    base = f"/collections/{collection}/products/{p.id}/images"
    return ProductOut(
        collection=collection,
        id=p.id,
        title=p.title,
        description=p.description,
        category=p.category,
        colour=p.colour,
        price=p.price,
        attributes=p.attributes,
        images=[ImageOut(position=im.position, ref=im.ref, url=f"{base}/{im.position}") for im in p.images],
        variants=[VariantOut(**v.as_dict()) for v in p.variants],
    )


@router.put(
    "/{product_id}",
    dependencies=[Write],
    response_model=ProductOut,
    summary="Add or replace a product with its photos (multipart)",
)
def put_product(
    collection: str,
    product_id: str,
    engine: EngineDep,
    images: Annotated[list[UploadFile], File(description="One or more photos; the first is the main one")],
    product: Annotated[str, Form(description="ProductIn as JSON")] = "{}",
) -> ProductOut:
    check_collection_name(collection)
    fields = parse_json_part(ProductIn, product, field="product")
    record = record_from_fields(product_id, fields.model_dump())  # the checks a catalog row gets
    photos = [read_upload(upload, engine.settings.max_download_bytes, field="images") for upload in images]
    return _product_out(collection, engine.put_product(collection, record, photos))


@router.delete("/{product_id}", dependencies=[Write], status_code=204, summary="Delete a product")
def delete_product(collection: str, product_id: str, engine: EngineDep) -> Response:
    engine.get_product(collection, product_id)
    engine.store(collection).delete([product_id])
    return Response(status_code=204)


@router.get(
    "/{product_id}/images/{position}",
    dependencies=[Read],
    summary="A product photo",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}}},
)
def get_image(collection: str, product_id: str, position: int, engine: EngineDep) -> Response:
    product = engine.get_product(collection, product_id)
    image = next((im for im in product.images if im.position == position), None)
    if image is None:
        raise NotFound(f"product {product_id!r} has no photo {position}", field="position")
    headers = {"Cache-Control": "public, max-age=3600"}
    if image.path.startswith(S3):  # in object storage (VITRINE_STORAGE_URL): any replica serves it
        data = engine.photos.get(image.path)
        return Response(data, media_type=_media_type(data[:16]), headers=headers)
    path = Path(image.path)
    if not path.is_file():
        raise NotFound(f"product {product_id!r} has no photo {position}", field="position")
    with path.open("rb") as fh:
        media = _media_type(fh.read(16))
    return FileResponse(path, media_type=media, headers=headers)


def _media_type(head: bytes) -> str:
    kind = sniff_image_type(head)
    return f"image/{kind}" if kind else "application/octet-stream"


@router.post("/{product_id}/similar", dependencies=[Read], response_model=SearchOut, summary="More like this product")
def similar(
    collection: str, product_id: str, request: Request, engine: EngineDep, body: SimilarRequest | None = None
) -> SearchOut:
    options = body or SimilarRequest()
    response = engine.search(options.to_query(collection=collection, product_id=product_id))
    request.app.state.metrics.observe_search(response, kind="similar")
    return SearchOut.from_response(response)
