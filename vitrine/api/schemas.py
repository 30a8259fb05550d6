"""Request and response models of the HTTP API (pydantic lives at this edge only)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vitrine.index.store import Filters, RangeFilter
from vitrine.search.query import (
    MAX_FACETS,
    MAX_FILTER_FIELDS,
    MAX_OFFSET,
    MAX_TEXT_CHARS,
    MAX_TOP_K,
    Hit,
    Query,
    SearchResponse,
)
from vitrine.search.understanding import KINDS as UNDERSTOOD_KINDS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Range(Strict):
    gte: float | None = Field(None, description="Minimum, inclusive.")
    lte: float | None = Field(None, description="Maximum, inclusive.")


class QueryOptions(Strict):
    """What every search takes besides its signals."""

    alpha: float | None = Field(None, ge=0, le=1, description="Image weight when text and image are both given.")
    cross_modal_weight: float | None = Field(
        None, ge=0, le=1,
        description="Within text scores: 0 = product text only, 1 = how well the photos match the words only. "
                    "Default: the server's VITRINE_CROSS_MODAL_WEIGHT.",
    )
    filters: dict[str, str | list[str]] = Field(
        default_factory=dict, max_length=MAX_FILTER_FIELDS,
        description="Attribute -> value or list of values (one of), case-insensitive.",
    )
    ranges: dict[str, Range] = Field(default_factory=dict, max_length=MAX_FILTER_FIELDS,
                                     description="Numeric ranges, e.g. price.")
    facets: list[str] = Field(default_factory=lambda: ["category", "colour"], max_length=MAX_FACETS)
    top_k: int = Field(10, ge=1, le=MAX_TOP_K)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    min_score: float | None = Field(None, ge=-1, le=1)
    sort: Literal["relevance", "price_asc", "price_desc", "newest"] = Field(
        "relevance", description="relevance, or the whole result set by price (either way) or newest first; "
                                 "a search with no text, photo or product lists the collection, newest first")
    understand: bool = Field(
        True, description="Read price phrases (\"under 50\"), facet words (colours, categories, gender, brand, "
                          "\"size M\"), typos and synonyms in the text; the response's `understood` says what was read")
    ignore_understood: list[Literal[UNDERSTOOD_KINDS]] = Field(  # type: ignore[valid-type]
        default_factory=list, max_length=len(UNDERSTOOD_KINDS),
        description="Kinds of understanding to leave as plain words, e.g. [\"price\"]: a removed chip")

    def to_query(self, *, collection: str | None = None, text: str | None = None, image: bytes | None = None,
                 product_id: str | None = None) -> Query:
        """The core query; `collection` (a path parameter) overrides the body's."""
        collection = collection or getattr(self, "collection", None)
        return Query(text=text, image=image, product_id=product_id, collection=collection,
                     alpha=self.alpha, cross_modal_weight=self.cross_modal_weight, filters=self.to_filters(),
                     facets=tuple(self.facets), top_k=self.top_k, offset=self.offset, min_score=self.min_score,
                     sort=self.sort, understand=self.understand,
                     ignore_understood=tuple(dict.fromkeys(self.ignore_understood)))

    def to_filters(self) -> Filters:
        equals = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in self.filters.items()}
        ranges = {k: RangeFilter(r.gte, r.lte) for k, r in self.ranges.items()}
        return Filters(equals=equals, ranges=ranges)


class SearchOptions(QueryOptions):
    collection: str | None = Field(None, description="Collection to search; all collections when omitted.")


class SearchRequest(SearchOptions):
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    image_base64: str | None = Field(None, description="A query photo, base64-encoded.")
    image_url: str | None = Field(None, max_length=2048, description="A query photo by http(s) URL.")


class SimilarRequest(QueryOptions):
    """More like a product: its collection is in the path."""


class VariantOut(BaseModel):
    sku: str
    title: str
    options: dict[str, str] = Field(description="colour, size, ... of this variant")
    price: float | None
    available: bool | None
    images: list[str]
    attributes: dict[str, Any]


class HitOut(BaseModel):
    collection: str
    id: str
    title: str
    price: float | None = Field(description="The shown variant's price when the product has variants")
    category: str
    colour: str
    main_image: str | None
    main_image_position: int | None = None
    matched_image: str | None
    matched_image_position: int | None
    main_image_url: str | None = Field(None, description="Where the API serves the main photo.")
    matched_image_url: str | None = None
    score: float
    scores: dict[str, float]
    variant: VariantOut | None = Field(None, description="The variant that best matches the query and filters")
    variants: int = Field(0, description="How many variants the product has")
    pinned: bool = Field(False, description="Placed by a merchandising rule (pin), not by its score")

    @classmethod
    def from_hit(cls, hit: Hit) -> HitOut:
        base = f"/collections/{hit.collection}/products/{hit.id}/images"
        return cls(
            **hit.as_dict(),
            main_image_url=f"{base}/{hit.main_image_position or 0}" if hit.main_image else None,
            matched_image_url=f"{base}/{hit.matched_image_position}" if hit.matched_image_position is not None
            else None,
        )


class SearchOut(BaseModel):
    cached: bool = Field(description="Answered from the result cache")
    hits: list[HitOut]
    total: int
    offset: int
    top_k: int
    facets: dict[str, dict[str, int]]
    timing_ms: dict[str, float]
    understood: dict[str, Any] = Field(
        default_factory=dict,
        description="What the text asked beyond its words: price (low/high), facet values boosted "
                    "(colour, category, gender, brand, size), spelling fixes and synonyms used")
    searched_text: str | None = Field(None, description="The text searched once understood; null for a browse")
    search_id: str | None = Field(None, description="Names this search in a click (`POST /clicks`), for analytics")

    @classmethod
    def from_response(cls, response: SearchResponse) -> SearchOut:
        data = response.as_dict()
        data["hits"] = [HitOut.from_hit(h) for h in response.hits]
        return cls(**data)


class ImageOut(BaseModel):
    position: int
    ref: str
    url: str


class ProductOut(BaseModel):
    collection: str
    id: str
    title: str
    description: str
    category: str
    colour: str
    price: float | None
    attributes: dict[str, Any]
    images: list[ImageOut]
    variants: list[VariantOut] = Field(default_factory=list)


class CollectionOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    products: int
    images: int


class CollectionCreate(Strict):
    name: str = Field(..., min_length=1, max_length=64)


class ProductIn(Strict):
    """A product sent with its photos (multipart: this as JSON in `product`, photos as `images`)."""

    title: str = Field("", max_length=1000)
    description: str = Field("", max_length=20_000)
    category: str = Field("", max_length=200)
    colour: str = Field("", max_length=200)
    price: float | None = Field(None, ge=0, allow_inf_nan=False)
    attributes: dict[str, str | float | int | bool | list[str]] = Field(default_factory=dict, max_length=100)
