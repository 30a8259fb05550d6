"""Etsy's listings CSV (Shop Manager > Settings > Options > Download data).

Photos are `IMAGE1`..`IMAGE10`; variations are named option lists (`VARIATION 1 NAME` "Color",
`VARIATION 1 VALUES` "Black,White") without per-value prices, kept as filterable values. Most
listings have no SKU and the export has no listing id, so such a listing's id is derived from its
title and first photo: stable across exports of the same listing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from vitrine.catalog.formats.base import Platform, ReadOptions, Rows, kept, present, split_list
from vitrine.catalog.readers import BadRow, Row, read_rows
from vitrine.catalog.records import option_name

_USED = ("TITLE", "DESCRIPTION", "PRICE", "CURRENCY_CODE", "SKU", "TAGS", "MATERIALS", "QUANTITY")


def listing_id(row: Row) -> str:
    key = f"{row.get('TITLE') or ''}\0{row.get('IMAGE1') or ''}"
    return "etsy-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def read(path: Path, options: ReadOptions) -> Rows:
    for number, row in read_rows(path, "csv"):
        yield number, row if isinstance(row, BadRow) else _product(row)


def _product(row: Row) -> Row:
    images = [str(row[f"IMAGE{i}"]).strip() for i in range(1, 11) if present(row.get(f"IMAGE{i}"))]
    price = row.get("PRICE")
    if present(price) and present(row.get("CURRENCY_CODE")):
        price = f"{price} {row['CURRENCY_CODE']}"
    quantity = str(row.get("QUANTITY") or "").strip()
    product: Row = {
        "id": row["SKU"] if present(row.get("SKU")) else listing_id(row), "title": row.get("TITLE"),
        "description": row.get("DESCRIPTION"), "price": price, "images": images, "tags": split_list(row.get("TAGS")),
        "materials": split_list(row.get("MATERIALS")),
        "available": int(quantity) > 0 if quantity.isdigit() else None,
    }
    used = set(_USED) | {f"IMAGE{i}" for i in range(1, 11)}
    for n in range(1, 4):
        name, values = row.get(f"VARIATION {n} NAME"), split_list(row.get(f"VARIATION {n} VALUES"))
        used |= {f"VARIATION {n} NAME", f"VARIATION {n} VALUES", f"VARIATION {n} TYPE"}
        if present(name) and values:
            product[option_name(str(name))] = "|".join(values)
    product.update(kept(row, used))
    return {k: v for k, v in product.items() if present(v)}


PLATFORM = Platform("etsy", "Etsy listings CSV", {
    "id": "SKU (else derived from TITLE and IMAGE1)", "title": "TITLE", "description": "DESCRIPTION",
    "colour": "VARIATION N VALUES (named Color)", "price": "PRICE (+ CURRENCY_CODE)", "images": "IMAGE1..IMAGE10",
}, read)
