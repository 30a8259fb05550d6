"""WooCommerce's built-in product CSV export.

Variable products list their variations as separate rows of `Type` "variation" whose `Parent` is
`id:<parent ID>` or the parent's SKU; a variation's own attributes are one value each
(`Attribute 1 value(s)`: "Red"), the parent's are all values ("Blue, Green, Red"). `Images` and
`Categories` hold comma-separated lists; categories nest with " > ".
"""

from __future__ import annotations

import re
from pathlib import Path

from vitrine.catalog.formats.base import Platform, ReadOptions, Rows, kept, present, split_list
from vitrine.catalog.readers import BadRow, Row, read_rows
from vitrine.catalog.records import option_name

_ATTRIBUTE = re.compile(r"^Attribute (\d+) (name|value\(s\)|visible|global|default)$")
_USED = ("ID", "Type", "SKU", "Name", "Description", "Regular price", "Categories", "Images", "Parent", "In stock?",
         "Tags", "Stock")


def _types(row: Row) -> set[str]:
    return {t.strip().lower() for t in str(row.get("Type") or "").split(",")}


def _attributes(row: Row) -> dict[str, list[str]]:
    """`Attribute N name` / `Attribute N value(s)` pairs -> {option name: values}."""
    found: dict[str, list[str]] = {}
    for key in row:
        match = _ATTRIBUTE.match(key)
        if match and match.group(2) == "name" and present(row[key]):
            values = split_list(row.get(f"Attribute {match.group(1)} value(s)"))
            if values:
                found[option_name(str(row[key]))] = values
    return found


def _categories(cell: object) -> list[str]:
    # Names may hold escaped commas ("Shirts\, Tops"); paths nest with " > ".
    text = str(cell or "").replace("\\,", "\0")
    return [part.replace("\0", ",").strip() for part in text.split(",") if part.strip()]


def _available(row: Row) -> bool | None:
    stock = str(row.get("In stock?") or "").strip().lower()
    if stock in ("1", "yes", "true"):
        return True
    if stock in ("0", "no", "false"):
        return False
    return None


def read(path: Path, options: ReadOptions) -> Rows:
    products: dict[str, tuple[int, Row]] = {}  # by "id:<ID>" and by SKU
    order: list[tuple[int, Row | BadRow]] = []
    orphans: list[tuple[int, Row]] = []
    variations: list[tuple[int, Row]] = []
    for number, row in read_rows(path, "csv"):
        if isinstance(row, BadRow):
            order.append((number, row))
        elif "variation" in _types(row):
            variations.append((number, row))
        else:
            product = _product(row)
            order.append((number, product))
            if present(row.get("ID")):
                products[f"id:{str(row['ID']).strip()}"] = (number, product)
            if present(row.get("SKU")):
                products[str(row["SKU"]).strip()] = (number, product)
    for number, row in variations:
        parent = products.get(str(row.get("Parent") or "").strip())
        if parent is None:
            orphans.append((number, row))
            continue
        parent[1]["variants"].append(_variant(row, parent[1]))
    order += [(number, _product(row)) for number, row in orphans]  # a variation without its parent stands alone
    order.sort(key=lambda item: item[0])
    for number, item in order:
        yield number, item if isinstance(item, BadRow) else {k: v for k, v in item.items() if present(v)}


def _product(row: Row) -> Row:
    attributes = _attributes(row)
    product: Row = {
        "id": row.get("SKU") if present(row.get("SKU")) else row.get("ID"), "title": row.get("Name"),
        "description": row.get("Description") or row.get("Short description"),
        "categories": _categories(row.get("Categories")), "images": split_list(row.get("Images")),
        "price": row.get("Regular price"), "tags": split_list(row.get("Tags")), "available": _available(row),
        "woocommerce_id": row.get("ID"), "variants": [],
    }
    for name, values in attributes.items():
        product[name] = "|".join(values)
    product.update({k: v for k, v in kept(row, _USED).items() if not _ATTRIBUTE.match(k)})
    return product


def _variant(row: Row, parent: Row) -> Row:
    options = {name: values[0] for name, values in _attributes(row).items()}
    return {
        "sku": row.get("SKU") or row.get("ID"), "title": row.get("Name"), "options": options,
        "price": row.get("Regular price"), "sale_price": row.get("Sale price"), "available": _available(row),
        "images": split_list(row.get("Images")), "stock": row.get("Stock"),
    }


PLATFORM = Platform("woocommerce", "WooCommerce product CSV", {
    "id": "SKU (else ID)", "title": "Name", "description": "Description", "category": "Categories (most specific)",
    "colour": "Attribute N value(s) (named Color)", "price": "Regular price", "images": "Images (comma-separated)",
}, read)
