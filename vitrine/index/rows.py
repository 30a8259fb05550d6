"""What a product row is made of, the same in every backend: its filter values, the texts its
keyword index holds, and whether it is in stock. Kept here so both stores find the same products."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vitrine.catalog.records import ProductRecord, Variant, category_segments, derived_genders, parse_availability
from vitrine.index.store import Filters, Product, ProductImage, normalise_field

_MAX_VALUE_LEN = 120
_OWN_AVAILABILITY = ("availability", "in_stock", "available", "stock_status")


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if np.isfinite(number) else None


def _values(field: str, raw: Any) -> Iterator[tuple[str, str, str, float | None]]:
    """Filterable values of one field: list cells (`a|b`, JSON lists) give one value each."""
    items = raw if isinstance(raw, list) else str(raw).split("|") if isinstance(raw, str) else [raw]
    for item in items:
        if isinstance(item, dict | list) or item is None:
            continue
        text = str(item).strip()
        if text and len(text) <= _MAX_VALUE_LEN:
            yield field, text, text.lower(), _number(text)


def filter_values(r: ProductRecord) -> list[tuple[str, str, str, float | None]]:
    """Every (field, value, normalised value, number) a filter or facet can find the product by: its own
    fields and attributes, each category path's leaf, and each variant's options, sku and price (a
    `colour=Red` filter finds a hoodie that comes in red). Each value once per product."""
    values: list[tuple[str, Any]] = [("category", r.category), ("colour", r.colour)]
    values += [(normalise_field(k), v) for k, v in r.attributes.items()]
    values += [("category", segments[-1]) for segments in map(category_segments, r.categories) if segments]
    if not any(normalise_field(k) == "gender" for k in r.attributes):
        paths = list(r.categories) or [str(r.attributes.get("category_path", r.category))]
        values += [("gender", g) for g in derived_genders(paths, r.attributes)]
    for variant in r.variants:
        values += [(normalise_field(k), v) for k, v in variant.options.items()]
        values.append(("sku", variant.sku))
    found = {(f, v[2]): v for f, raw in values if raw not in (None, "") for v in _values(f, raw)}
    prices = {r.price} | {v.price for v in r.variants}
    for price in sorted(p for p in prices if p is not None):
        found[("price", repr(price))] = ("price", repr(price), repr(price), price)
    return list(found.values())


def stored_genders(products: Iterable[tuple[int, str, str]]) -> list[tuple[int, str]]:
    """(row, gender) for stored products without one, from (row, category, attributes as JSON): what a
    store migration adds so that older rows are found by gender as `filter_values` finds new ones."""
    found = []
    for row, category, attributes in products:
        try:
            parsed = json.loads(attributes)
        except ValueError:
            continue
        parsed = parsed if isinstance(parsed, dict) else {}
        path = str(parsed.get("category_path", category))
        found += [(row, g) for g in derived_genders([path], parsed)]
    return found


@dataclass(frozen=True)
class SearchTexts:
    """The columns of a product's keyword index. The first four are strong: a query word found there
    counts fully, one found only in the description or attributes counts half."""

    id: str
    title: str
    category: str
    colour: str
    description: str
    attributes: str

    @classmethod
    def of(cls, r: ProductRecord) -> SearchTexts:
        category_text = " ".join(r.categories) or str(r.attributes.get("category_path", r.category))
        return cls(
            id=r.id, title=r.title,
            category=f"{category_text} {r.category}" if r.categories else category_text,
            colour=" ".join(r.colours), description=r.description,
            attributes=" ".join(str(v) for v in r.attributes.values() if isinstance(v, str | int | float)),
        )

    @property
    def strong(self) -> str:
        return f"{self.id} {self.title} {self.category} {self.colour}"

    @property
    def weak(self) -> str:
        return f"{self.description} {self.attributes}"


def attributes_json(r: ProductRecord) -> str:
    return json.dumps(r.attributes, ensure_ascii=False, default=str)


def variants_json(r: ProductRecord) -> str:
    return json.dumps([v.as_dict() for v in r.variants], ensure_ascii=False, default=str)


def in_stock(attributes: str, variants: str) -> bool | None:
    """Whether a stored product is in stock: any variant available, else its own availability; None
    when the catalog does not say."""
    states = {Variant.from_dict(v).available for v in json.loads(variants)} - {None}
    if not states:
        attrs = json.loads(attributes)
        own = next((attrs[k] for k in _OWN_AVAILABILITY if k in attrs), None)
        states = {parse_availability(own)} - {None}
    return (True in states) if states else None


def filter_sql(filters: Filters, mark: str) -> tuple[str, list[Any]] | None:
    """The query (over `product_values`) of the rows matching every filter, with `mark` as the
    placeholder, and its parameters; None without filters."""
    clauses: list[str] = []
    params: list[Any] = []
    for field, values in filters.equals.items():
        marks = ",".join([mark] * len(values))
        clauses.append(f"SELECT product_row FROM product_values WHERE field={mark} AND value_norm IN ({marks})")
        params += [normalise_field(field), *[str(v).strip().lower() for v in values]]
    for field, bounds in filters.ranges.items():
        clause = f"SELECT product_row FROM product_values WHERE field={mark} AND num IS NOT NULL"
        params.append(normalise_field(field))
        if bounds.low is not None:
            clause += f" AND num >= {mark}"
            params.append(bounds.low)
        if bounds.high is not None:
            clause += f" AND num <= {mark}"
            params.append(bounds.high)
        clauses.append(clause)
    return (" INTERSECT ".join(clauses), params) if clauses else None


def products_in_order(ids: Sequence[str], rows: Sequence[Sequence[Any]],
                      images: dict[int, list[ProductImage]]) -> list[Product]:
    """Products from stored rows (row, id, title, description, category, colour, price, attributes,
    variants) and their photos by row, in the order of `ids`; ids without a row are left out."""
    products = {
        r[1]: Product(id=r[1], title=r[2], description=r[3], category=r[4], colour=r[5], price=r[6],
                      attributes=json.loads(r[7]), images=tuple(images.get(r[0], ())),
                      variants=tuple(Variant.from_dict(v) for v in json.loads(r[8])))
        for r in rows
    }
    return [products[i] for i in ids if i in products]
