"""Which source column feeds which product field: auto-detected by common names, or mapped explicitly."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vitrine.errors import CatalogError

FIELDS = ("id", "title", "description", "category", "colour", "price", "images")

# Aliases by priority; compared after lower-casing and dropping everything but letters and digits.
ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "sku", "productid", "product_id", "itemid", "articleid", "code", "handle", "gtin", "uid"),
    "title": ("title", "name", "productname", "productdisplayname", "displayname", "producttitle", "label"),
    "description": ("description", "desc", "longdescription", "detaildesc", "details", "bodyhtml", "body"),
    "category": (
        "category", "categories", "articletype", "producttype", "type", "categoryname", "productcategory",
    ),
    "colour": ("colour", "color", "colours", "colors", "basecolour", "basecolor", "colourname", "colorname"),
    # The regular price first: a sale price column is empty for most rows.
    "price": ("price", "regularprice", "variantprice", "currentprice", "priceusd", "priceeur", "listprice",
              "amount", "saleprice"),
    "images": (
        "images", "image", "imageurl", "imageurls", "imagelink", "imagesrc", "imagepath", "imagepaths", "photos",
        "photo", "pictures", "picture", "img", "mainimage", "baseimage", "thumbnail",
    ),
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class ColumnMap:
    """Product field -> source column. Columns not named here are kept as attributes."""

    columns: Mapping[str, str]

    def source(self, field: str) -> str | None:
        return self.columns.get(field)

    @property
    def mapped(self) -> frozenset[str]:
        return frozenset(self.columns.values())


def lookup(row: Mapping[str, Any], column: str) -> Any:
    """The value of `column` in a row; a dotted path (`variants.0.price`, `offers.price`) walks into
    nested objects and lists when no column has that exact name. Missing -> None."""
    if column in row:
        return row[column]
    if "." not in column:
        return None
    value: Any = row
    for part in column.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            value = value[0].get(part)  # `offers.price` on a list of offers: the first one's
        else:
            return None
        if value is None:
            return None
    return value


def detect_columns(header: Iterable[str], explicit: Mapping[str, str] | None = None) -> ColumnMap:
    """Explicit mappings win and are checked (a dotted path by its first name); the other fields are
    found by alias."""
    header = list(header)
    explicit = dict(explicit or {})
    for field, column in explicit.items():
        if field not in FIELDS:
            raise CatalogError(f"unknown product field {field!r}; fields are {', '.join(FIELDS)}", field=field)
        if column not in header and column.split(".", 1)[0] not in header:
            raise CatalogError(f"column {column!r} is not in the catalog (columns: {', '.join(header)})", field=field)
    by_norm: dict[str, str] = {}
    for column in header:
        by_norm.setdefault(_norm(column), column)
    taken = set(explicit.values())
    columns = dict(explicit)
    for field in FIELDS:
        if field in columns:
            continue
        for alias in ALIASES[field]:
            found = by_norm.get(_norm(alias))
            if found is not None and found not in taken:
                columns[field] = found
                taken.add(found)
                break
    if "id" not in columns:
        raise CatalogError(
            f"no id column found (looked for {', '.join(ALIASES['id'][:4])}...); map one explicitly", field="id"
        )
    return ColumnMap(columns)


def parse_mapping(pairs: Iterable[str]) -> dict[str, str]:
    """`field=column` strings (CLI --map) to a dict."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise CatalogError(f"mapping {pair!r} is not of the form field=column", field="map")
        mapping[field.strip()] = column.strip()
    return mapping
