"""Shopify: the storefront's `/products.json` (also paged from a store URL) and the admin's product CSV.

In the CSV one product spans several rows: its first row holds the product, the rows after it
(same `Handle`) hold further variants (`Option1 Value`, `Variant Price`...) and further photos
(`Image Src` only). In JSON, variants name their options positionally (`option1`) and the
product's `options[]` says which is "Color" and which "Size".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from vitrine.catalog.formats.base import Platform, ReadOptions, Rows, grouped, kept, present, split_list
from vitrine.catalog.readers import BadRow, Row, read_rows
from vitrine.catalog.records import option_name
from vitrine.errors import CatalogError

_DEFAULT_OPTION = ("title", "default title")  # a product without options has one variant "Default Title"
PAGE_SIZE = 250  # the most Shopify returns per page
MAX_PAGES = 400


def _options(names: list[str], values: list[Any]) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in zip(names, values, strict=False):
        if name and present(value) and not (name.strip().lower() == "title" and str(value).strip().lower()
                                            in _DEFAULT_OPTION):
            options[option_name(name)] = str(value).strip()
    return options


# -- products.json --------------------------------------------------------------------------------

def read_json(path: Path, options: ReadOptions) -> Rows:
    for number, row in read_rows(path, "json"):
        yield number, row if isinstance(row, BadRow) else _json_product(row)


def _json_product(p: Row) -> Row:
    names = [o.get("name", "") for o in sorted(p.get("options") or [], key=lambda o: o.get("position", 0))
             if isinstance(o, dict)]
    images = sorted((im for im in p.get("images") or [] if isinstance(im, dict)), key=lambda im: im.get("position", 0))
    by_id = {im.get("id"): im.get("src") for im in images}
    variants = []
    for v in p.get("variants") or []:
        if not isinstance(v, dict):
            continue
        featured = v.get("featured_image")
        image = (featured.get("src") if isinstance(featured, dict) else None) or by_id.get(v.get("image_id"))
        variants.append({
            "sku": v.get("sku") or v.get("id"), "title": v.get("title") if v.get("title") != "Default Title" else "",
            "options": _options(names, [v.get("option1"), v.get("option2"), v.get("option3")]),
            "price": v.get("price"), "available": v.get("available"), "images": [image] if image else [],
            "compare_at_price": v.get("compare_at_price"), "barcode": v.get("barcode"), "grams": v.get("grams"),
        })
    tags = p.get("tags")
    product: Row = {
        "id": p.get("handle") or p.get("id"), "title": p.get("title"), "description": p.get("body_html"),
        "category": p.get("product_type"), "brand": p.get("vendor"),
        "tags": split_list(tags) if isinstance(tags, str) else tags,
        "images": [im.get("src") for im in images if im.get("src")], "variants": variants,
        "shopify_id": p.get("id"),
    }
    product.update(kept(p, ["id", "handle", "title", "body_html", "product_type", "vendor", "tags", "images",
                            "variants", "options", "image"]))
    return {k: v for k, v in product.items() if present(v)}


def page_url(url: str, page: int) -> str:
    """The store's products.json URL for one page (`?limit=250&page=N`, other parameters kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("limit", "page")]
    query += [("limit", str(PAGE_SIZE)), ("page", str(page))]
    return urlunsplit(parts._replace(query=urlencode(query)))


def is_store_url(url: str) -> bool:
    return urlsplit(url).path.rstrip("/").endswith("/products.json")


def fetch_store(url: str, fetch: Callable[[str], bytes], *, max_bytes: int) -> bytes:
    """Every page of a store's products.json, until one comes back empty, as one products.json."""
    products: list[Any] = []
    total = 0
    for page in range(1, MAX_PAGES + 1):
        data = fetch(page_url(url, page))
        total += len(data)
        if total > max_bytes:
            raise CatalogError(f"the store's products.json pages are over {max_bytes} bytes", field="url")
        try:
            found = json.loads(data).get("products")
        except (ValueError, AttributeError, RecursionError):
            raise CatalogError(f"page {page} of {url} is not a Shopify products.json", field="url") from None
        if not isinstance(found, list):
            raise CatalogError(f"page {page} of {url} holds no products list", field="url")
        if not found:  # not a short page: a store may serve fewer than asked per page
            break
        products += found
    return json.dumps({"products": products}, ensure_ascii=False).encode()


# -- product CSV ----------------------------------------------------------------------------------

_CSV_PRODUCT_COLUMNS = ("Handle", "Title", "Body (HTML)", "Type", "Product Category", "Vendor", "Tags")
_CSV_VARIANT_PREFIX = ("Variant ", "Option", "Image ", "Cost per item")


def read_csv(path: Path, options: ReadOptions) -> Rows:
    for number, group in grouped(lambda: read_rows(path, "csv"),
                                 lambda row: str(row.get("Handle") or "").strip() or None):
        if isinstance(group, BadRow):
            yield number, group
        elif not str(group[0].get("Handle") or "").strip():
            yield number, BadRow("no Handle")
        else:
            yield number, _csv_product(group)


def _csv_product(rows: list[Row]) -> Row:
    first = next((r for r in rows if present(r.get("Title"))), rows[0])
    names = [str(first.get(f"Option{i} Name") or "") for i in (1, 2, 3)]
    images = sorted(((int(r["Image Position"]) if str(r.get("Image Position") or "").isdigit() else 10_000 + i,
                      str(r["Image Src"]).strip()) for i, r in enumerate(rows) if present(r.get("Image Src"))))
    variants = []
    for r in rows:
        if not any(present(r.get(c)) for c in ("Variant SKU", "Variant Price", "Option1 Value")):
            continue  # a photo-only row
        quantity = str(r.get("Variant Inventory Qty") or "").strip().lstrip("-")
        available = None
        if quantity.isdigit():
            available = int(r["Variant Inventory Qty"]) > 0 or r.get("Variant Inventory Policy") == "continue"
        variants.append({
            "sku": r.get("Variant SKU"), "price": r.get("Variant Price"),
            "options": _options(names, [r.get(f"Option{i} Value") for i in (1, 2, 3)]),
            "available": available, "images": [r["Variant Image"]] if present(r.get("Variant Image")) else [],
            "compare_at_price": r.get("Variant Compare At Price"), "barcode": r.get("Variant Barcode"),
        })
    taxonomy = first.get("Product Category") or first.get("Google Shopping / Google Product Category")
    product: Row = {
        "id": str(first["Handle"]).strip(), "title": first.get("Title"), "description": first.get("Body (HTML)"),
        "category": first.get("Type"), "categories": split_list(taxonomy, "|"), "brand": first.get("Vendor"),
        "tags": split_list(first.get("Tags")), "images": list(dict.fromkeys(src for _, src in images)),
        "variants": variants,
    }
    extra = {k: v for k, v in kept(first, _CSV_PRODUCT_COLUMNS).items() if not k.startswith(_CSV_VARIANT_PREFIX)}
    product.update(extra)
    return {k: v for k, v in product.items() if present(v)}


JSON = Platform("shopify-json", "Shopify products.json", {
    "id": "handle", "title": "title", "description": "body_html", "category": "product_type",
    "colour": "variants[].option1..3 (options[] named Color)", "price": "variants[].price", "images": "images[].src",
}, read_json)
CSV = Platform("shopify-csv", "Shopify product CSV", {
    "id": "Handle", "title": "Title", "description": "Body (HTML)", "category": "Type (and Product Category)",
    "colour": "Option1..3 Value (named Color)", "price": "Variant Price", "images": "Image Src, Variant Image",
}, read_csv)
