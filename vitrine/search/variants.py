"""Which variant of a found product to show: the one the shopper asked for.

A product is found once; the variant shown is the one that agrees with the filters (colour=Red,
a price range), then the one whose options the query names ("red hoodie"), then the one whose photo
matched the query photo, then the first available one.
"""

from __future__ import annotations

import re

from vitrine.catalog.records import Variant
from vitrine.index.store import Filters, Product, normalise_field

_TEXT_WEIGHT = 2.0  # a named option outweighs a matched photo: words are what the shopper typed
_PHOTO_WEIGHT = 1.0


def _agrees(variant: Variant, filters: Filters) -> bool:
    for name, values in filters.equals.items():
        value = variant.options.get(normalise_field(name))
        if value is not None and value.lower() not in {str(v).strip().lower() for v in values}:
            return False
    bounds = filters.ranges.get("price")
    if bounds is not None and variant.price is not None:
        if (bounds.low is not None and variant.price < bounds.low) or (
                bounds.high is not None and variant.price > bounds.high):
            return False
    return True


def choose_variant(product: Product, *, text: str | None, filters: Filters,
                   matched_image: str | None) -> Variant | None:
    """The variant to show for `product` in a hit; None when it has none."""
    if not product.variants:
        return None
    candidates = [v for v in product.variants if _agrees(v, filters)] or list(product.variants)
    words = set(re.findall(r"\w+", (text or "").lower()))

    def score(item: tuple[int, Variant]) -> tuple[float, int, int]:
        index, variant = item
        named = sum(1 for value in variant.options.values()
                    if value and set(re.findall(r"\w+", value.lower())) <= words)
        photo = matched_image is not None and matched_image in variant.image_refs
        return (_TEXT_WEIGHT * named + _PHOTO_WEIGHT * photo, variant.available is not False, -index)

    return max(enumerate(candidates), key=score)[1]
