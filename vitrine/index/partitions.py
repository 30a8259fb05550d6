"""Graphs of the products of a common filter value, for broad filters above the exact limit.

A filtered query scores every product its filter holds. For a colour held by 56k of a million products
that takes a few milliseconds; for one held by a quarter of them, 90 ms, most of it decoding the graphs'
codes of 250k products for two tables. The collection's own graphs cannot be asked for a filter's
nearest products: a walk with faiss's ID selector stops among the query's nearest products, and a
filter that holds few of them (men's products, for "dress") gets a handful back (recall@10 0.2-0.7
at a million). So each value held by at least SHARE of the products gets graphs of its products alone,
built with the snapshot (a collection built in memory, with snapshots off, has none), and a query
filtered on such values walks those (docs/benchmarks.md). Their candidates are the filter's products
nearest the query; those written since (the tail) are all scored, as with the whole graphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vitrine.arrays import Array, spans
from vitrine.index.store import Facets, Filters, normalise_field

SHARE = 0.1  # a value held by this share of the products or more gets graphs of its own
FIELD_BUDGET = 0.5  # products in one field's partitions, at most this many times the collection's ...
BUDGET = 1.0  # ... and in all of them: a million products' graphs are built again once at most


@dataclass
class Partition:
    field: str
    value: str  # as filters compare values: stripped, lower case
    positions: Array  # the products holding it (ascending positions): the text graph's ids index these
    images: Array  # their photos (ascending): the photo graphs' ids index these
    anns: dict[str, Any]  # "text", "image" and "xmodal" graphs


def norm(value: str) -> str:
    return value.strip().lower()


def choose(facets: Facets, n_products: int) -> list[tuple[str, str, Array]]:
    """(field, value, product positions) of the values worth graphs of their own: held by SHARE of the
    products or more, each field's most held first, while its FIELD_BUDGET lasts (a size held by most
    products would take it all: such a field gets none), taking the fields in turn until BUDGET is spent."""
    by_field: dict[str, list[tuple[str, str, Array]]] = {}
    for field, (positions, codes, values) in facets.items():
        positions, codes = np.asarray(positions), np.asarray(codes)
        counts = np.bincount(codes, minlength=len(values)) if len(codes) else np.zeros(len(values), dtype=np.int64)
        groups: dict[str, list[int]] = {}
        for code, value in enumerate(values):  # "Black" and "black": one value to a filter
            if counts[code]:
                groups.setdefault(norm(value), []).append(code)
        for value, held in groups.items():
            if counts[held].sum() >= max(1, SHARE * n_products):
                by_field.setdefault(field, []).append((field, value, np.unique(positions[np.isin(codes, held)])))
    ranked = [sorted(held, key=lambda f: (-len(f[2]), f[1])) for _, held in sorted(by_field.items())]
    found = [f for rank in range(max(map(len, ranked), default=0))
             for f in sorted((held[rank] for held in ranked if rank < len(held)), key=lambda f: (-len(f[2]), f[0]))]
    chosen, spent, per_field = [], 0, dict.fromkeys(by_field, 0)
    for field, value, positions in found:
        if spent + len(positions) <= BUDGET * n_products and \
                per_field[field] + len(positions) <= FIELD_BUDGET * n_products:
            chosen.append((field, value, positions))
            spent += len(positions)
            per_field[field] += len(positions)
    return chosen


def images_of(positions: Array, image_start: Array, image_count: Array) -> Array:
    """The photos (ascending ids) of the products at `positions` (ascending)."""
    return spans(np.asarray(image_start)[positions], np.asarray(image_count)[positions])


def for_filters(partitions: list[Partition], filters: Filters) -> list[Partition] | None:
    """The partitions that hold exactly a filter's products, when it is one field's values, all of them
    partitioned (other filters, or several fields, are scored whole)."""
    if not partitions or filters.ranges or len(filters.equals) != 1:
        return None
    (field, values), = filters.equals.items()
    field = normalise_field(field)
    wanted = {norm(str(v)) for v in values}
    found = [p for p in partitions if p.field == field and p.value in wanted]
    return found if len(found) == len(wanted) else None
