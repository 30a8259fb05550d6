"""What a search asks and what it answers: frozen dataclasses, validated at construction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vitrine.catalog.records import Variant, has_lone_surrogate
from vitrine.errors import InvalidInput
from vitrine.index.store import Filters
from vitrine.search.understanding import KINDS as UNDERSTOOD_KINDS

MAX_TOP_K = 1000
MAX_OFFSET = 10_000
MAX_TEXT_CHARS = 1000
MAX_FILTER_FIELDS = 32  # each field is one SQL subquery; SQLite refuses compound selects past ~500
MAX_FILTER_VALUES = 100
MAX_FILTER_CHARS = 200
MAX_FACETS = 10
# "relevance" ranks by score; the others order the whole result set (not a page) by price or by
# when the product was first added, relevance breaking ties.
SORTS = ("relevance", "price_asc", "price_desc", "newest")


def check_text(value: str, field: str) -> str:
    """Refuses text that cannot be stored or served (lone surrogates, from JSON's "\\ud800")."""
    if has_lone_surrogate(value):
        raise InvalidInput("not valid Unicode text (a lone surrogate)", field=field)
    return value


@dataclass(frozen=True)
class Query:
    """A text, an image (bytes), or both; or a product id for "more like this"."""

    text: str | None = None
    image: bytes | None = None
    product_id: str | None = None
    collection: str | None = None  # None: every collection
    alpha: float | None = None  # 1 = image only, 0 = text only; default 0.5 when both are given
    # Within the text side: 0 = product text only, 1 = the photos' cross-modal match only; None = default
    cross_modal_weight: float | None = None
    filters: Filters = field(default_factory=Filters)
    facets: tuple[str, ...] = ("category", "colour")
    top_k: int = 10
    offset: int = 0
    min_score: float | None = None
    sort: str = "relevance"
    understand: bool = True  # price phrases, facet words, typos and synonyms (vitrine.search.understanding)
    ignore_understood: tuple[str, ...] = ()  # kinds taken back by the shopper: "price", "colour", ...

    def __post_init__(self) -> None:
        text = (self.text or "").strip()
        object.__setattr__(self, "text", text or None)
        if self.sort not in SORTS:
            raise InvalidInput(f"sort must be one of {', '.join(SORTS)}", field="sort")
        if self.browsing and self.sort == "relevance":  # nothing to be relevant to: the newest first
            object.__setattr__(self, "sort", "newest")
        unknown = [k for k in self.ignore_understood if k not in UNDERSTOOD_KINDS]
        if unknown:
            raise InvalidInput(f"cannot ignore {unknown[0]!r}: the kinds are {', '.join(UNDERSTOOD_KINDS)}",
                               field="ignore_understood")
        if self.text is not None and len(self.text) > MAX_TEXT_CHARS:
            raise InvalidInput(f"text is over {MAX_TEXT_CHARS} characters", field="text")
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise InvalidInput("alpha must be between 0 and 1", field="alpha")
        if self.cross_modal_weight is not None and not 0.0 <= self.cross_modal_weight <= 1.0:
            raise InvalidInput("cross_modal_weight must be between 0 and 1", field="cross_modal_weight")
        if not 1 <= self.top_k <= MAX_TOP_K:
            raise InvalidInput(f"top_k must be between 1 and {MAX_TOP_K}", field="top_k")
        if not 0 <= self.offset <= MAX_OFFSET:
            raise InvalidInput(f"offset must be between 0 and {MAX_OFFSET}", field="offset")
        if self.min_score is not None and not -1.0 <= self.min_score <= 1.0:
            raise InvalidInput("min_score must be between -1 and 1", field="min_score")
        if self.text is not None:
            check_text(self.text, "text")
        fields = len(self.filters.equals) + len(self.filters.ranges)
        if fields > MAX_FILTER_FIELDS:
            raise InvalidInput(f"{fields} filter fields; at most {MAX_FILTER_FIELDS}", field="filters")
        if len(self.facets) > MAX_FACETS:
            raise InvalidInput(f"at most {MAX_FACETS} facets", field="facets")
        for name in self.facets:
            check_text(name, "facets")
        for name, values in self.filters.equals.items():
            check_text(name, "filters")
            if len(values) > MAX_FILTER_VALUES:
                raise InvalidInput(f"{name!r} has over {MAX_FILTER_VALUES} values", field=f"filters.{name}")
            for value in values:
                if len(str(value)) > MAX_FILTER_CHARS:
                    raise InvalidInput(f"a value is over {MAX_FILTER_CHARS} characters", field=f"filters.{name}")
                check_text(str(value), f"filters.{name}")
        for name, bounds in self.filters.ranges.items():
            check_text(name, "ranges")
            if bounds.low is not None and bounds.high is not None and bounds.low > bounds.high:
                raise InvalidInput(f"range of {name!r} has its minimum above its maximum", field="filters")

    @property
    def browsing(self) -> bool:
        """No text, photo or product: the query lists the collection (with its filters and facets)."""
        return self.text is None and self.image is None and self.product_id is None

    @property
    def effective_alpha(self) -> float:
        return 0.5 if self.alpha is None else self.alpha


@dataclass(frozen=True)
class Hit:
    collection: str
    id: str
    title: str
    price: float | None
    category: str
    colour: str
    main_image: str | None
    matched_image: str | None
    matched_image_position: int | None
    score: float
    scores: dict[str, float]
    main_image_position: int | None = None
    variant: Variant | None = None  # the variant shown: price, colour and photo are its own
    variants: int = 0
    pinned: bool = False  # placed by a merchandising rule, not by its score

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection, "id": self.id, "title": self.title, "price": self.price,
            "category": self.category, "colour": self.colour, "main_image": self.main_image,
            "main_image_position": self.main_image_position,
            "matched_image": self.matched_image, "matched_image_position": self.matched_image_position,
            "score": round(self.score, 6), "scores": {k: round(v, 6) for k, v in self.scores.items()},
            "variant": self.variant.as_dict() if self.variant else None, "variants": self.variants,
            "pinned": self.pinned,
        }


@dataclass(frozen=True)
class SearchResponse:
    hits: list[Hit]
    total: int  # products that matched the filters (and min_score)
    facets: dict[str, dict[str, int]]
    timing_ms: dict[str, float]
    offset: int
    top_k: int
    cached: bool = False
    understood: dict[str, Any] = field(default_factory=dict)  # what the query asked beyond its words
    searched_text: str | None = None  # the text searched once understood (None: a browse)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cached": self.cached,
            "understood": self.understood,
            "searched_text": self.searched_text,
            "hits": [h.as_dict() for h in self.hits],
            "total": self.total,
            "offset": self.offset,
            "top_k": self.top_k,
            "facets": self.facets,
            "timing_ms": {k: round(v, 2) for k, v in self.timing_ms.items()},
        }
