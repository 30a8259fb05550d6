"""Training texts for a product: the ways a shopper might describe its photo.

Several views per product teach the heads both long and short language: the title, a sentence of
the description, "colour category" captions like the queries people type ("black trousers"), single
words (so zero-shot labels can be read off the space), and short attribute values ("men", "striped")
combined with colour and category.
"""

from __future__ import annotations

import re
from typing import Any

_WORDS = re.compile(r"[^\W_]+(?:['-][^\W_]+)*", re.UNICODE)
_MAX_ATTRIBUTE_WORDS = 3
_MAX_DESCRIPTION_WORDS = 24
# Attribute names whose values say nothing about the photo.
_IGNORED = re.compile(r"(^|_)(id|ids|url|urls|image|images|sku|price|year|date|size|sizes|group)($|_)", re.I)


def clean(text: str) -> str:
    return " ".join(_WORDS.findall(text.lower()))


def short_attribute_values(attributes: dict[str, Any]) -> list[str]:
    """Values of at most three words, not numbers, from attributes that can describe a photo."""
    values: list[str] = []
    for name, value in attributes.items():
        if _IGNORED.search(name):
            continue
        for item in value if isinstance(value, list) else str(value).split("|"):
            if isinstance(item, (int, float)) or item is None:
                continue
            text = clean(str(item))
            if text and not text.replace(" ", "").isdigit() and len(text.split()) <= _MAX_ATTRIBUTE_WORDS:
                values.append(text)
    return list(dict.fromkeys(values))


def product_views(
    *, title: str, description: str, category: str, colour: str, attributes: dict[str, Any]
) -> list[str]:
    """Distinct lower-case texts that describe the product's photos, most specific first."""
    category, colour, title = clean(category), clean(colour), clean(title)
    views: list[str] = []
    if title:
        views.append(title)
    first_sentence = re.split(r"(?<=[.!?])\s", description.strip(), maxsplit=1)[0] if description else ""
    if first_sentence:
        views.append(" ".join(clean(first_sentence).split()[:_MAX_DESCRIPTION_WORDS]))
    if colour and category:
        views.append(f"{colour} {category}")
    for value in short_attribute_values(attributes):
        if value in (colour, category):
            continue
        views.append(f"{value} {colour} {category}".strip() if category else value)
        views.append(value)
    views.extend(v for v in (category, colour) if v)
    return [v for v in dict.fromkeys(views) if v]
