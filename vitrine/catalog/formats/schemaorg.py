"""schema.org Product data as JSON-LD: a file of it, or product pages saved as HTML (their
`<script type="application/ld+json">` blocks).

Products come alone, in an `ItemList`, in an `@graph`, or as a `ProductGroup` whose `hasVariant`
lists its variants. Prices sit in `offers` (an Offer, a list of them, or an AggregateOffer),
brands may be objects, and `color` may list several colours ("Black, Gray").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vitrine.catalog.formats.base import Platform, ReadOptions, Rows, kept, present, split_list
from vitrine.catalog.readers import MAX_DEPTH, BadRow, Row, check_json_text
from vitrine.errors import CatalogError

MAX_FILE_BYTES = 256 * 1024 * 1024
_SCRIPT = re.compile(rb"<script[^>]*type\s*=\s*[\"']application/ld\+json[\"'][^>]*>(.*?)</script\s*>",
                     re.IGNORECASE | re.DOTALL)
_USED = ("@context", "@type", "@id", "name", "description", "sku", "productID", "productGroupID", "image", "offers",
         "brand", "color", "category", "hasVariant", "variesBy", "url", "size", "material")


def _types(node: dict[str, Any]) -> set[str]:
    kind = node.get("@type")
    kinds = kind if isinstance(kind, list) else [kind]
    return {str(k).rsplit("/", 1)[-1] for k in kinds if k}


def _nodes(value: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """Product and ProductGroup nodes, wherever the document holds them (lists, @graph, ItemList)."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, list):
        for item in value:
            yield from _nodes(item, depth + 1)
    elif isinstance(value, dict):
        kinds = _types(value)
        if kinds & {"Product", "ProductGroup", "ProductModel", "IndividualProduct"}:
            yield value
        elif "@graph" in value:
            yield from _nodes(value["@graph"], depth + 1)
        elif "ItemList" in kinds or "itemListElement" in value:
            for element in value.get("itemListElement") or []:
                yield from _nodes(element.get("item", element) if isinstance(element, dict) else element, depth + 1)
        elif "ListItem" in kinds and "item" in value:
            yield from _nodes(value["item"], depth + 1)


def _documents(path: Path) -> Iterator[Any]:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise CatalogError(f"the file is over {MAX_FILE_BYTES} bytes")
    data = path.read_bytes()
    head = data[:4096].lstrip().lower()
    blocks = _SCRIPT.findall(data) if head.startswith((b"<", b"\xef\xbb\xbf<")) else [data]
    if not blocks:
        raise CatalogError("the HTML page holds no JSON-LD (<script type=\"application/ld+json\">)")
    for block in blocks:
        yield check_json_text(block.decode("utf-8-sig", errors="replace"))


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("name") or value.get("@value") or value.get("url") or "")
    if isinstance(value, list):
        return ", ".join(t for t in (_text(v) for v in value) if t)
    return "" if value is None else str(value)


def _offer(found: Any) -> dict[str, Any]:
    """The offer a shopper sees first: a list's first item; an AggregateOffer's low price."""
    offers: Any = found
    if isinstance(offers, list):
        offers = next((o for o in offers if isinstance(o, dict)), {})
    if not isinstance(offers, dict):
        return {}
    if "AggregateOffer" in _types(offers) and "price" not in offers:
        offers = {**offers, "price": offers.get("lowPrice")}
    if "price" not in offers and isinstance(offers.get("priceSpecification"), dict):
        offers = {**offers, **offers["priceSpecification"]}
    return dict(offers)


def _price(offer: dict[str, Any]) -> str | None:
    if not present(offer.get("price")):
        return None
    currency = offer.get("priceCurrency")
    return f"{offer['price']} {currency}" if currency else str(offer["price"])


def _images(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    refs = []
    for item in items:
        ref = item.get("contentUrl") or item.get("url") if isinstance(item, dict) else item
        if present(ref):
            refs.append(str(ref))
    return refs


def _colours(value: Any) -> str:
    return "|".join(split_list(_text(value).replace("/", ",")))


def _id(node: dict[str, Any]) -> Any:
    for key in ("sku", "productGroupID", "productID", "mpn", "gtin13", "gtin", "@id", "url"):
        if present(node.get(key)):
            return node[key]
    return None


def _product(node: dict[str, Any]) -> Row:
    offer = _offer(node.get("offers"))
    product: Row = {
        "id": _id(node), "title": _text(node.get("name")), "description": _text(node.get("description")),
        "category": _text(node.get("category")).replace(" > ", "/"), "colour": _colours(node.get("color")),
        "price": _price(offer), "images": _images(node.get("image")), "brand": _text(node.get("brand")),
        "available": offer.get("availability"), "url": node.get("url") or offer.get("url"),
        "size": _text(node.get("size")), "material": _text(node.get("material")),
    }
    variants = []
    for variant in node.get("hasVariant") or []:
        if not isinstance(variant, dict):
            continue
        voffer = _offer(variant.get("offers"))
        options = {"colour": _text(variant.get("color")), "size": _text(variant.get("size")),
                   "material": _text(variant.get("material")), "pattern": _text(variant.get("pattern"))}
        variants.append({
            "sku": _id(variant), "title": _text(variant.get("name")), "price": _price(voffer),
            "available": voffer.get("availability"), "images": _images(variant.get("image")),
            "options": {k: v for k, v in options.items() if v},
        })
    if variants:
        product["variants"] = variants
    product.update({k: v for k, v in kept(node, _USED).items() if isinstance(v, str | int | float | list)})
    return {k: v for k, v in product.items() if present(v)}


def read(path: Path, options: ReadOptions) -> Rows:
    number = 0
    for document in _documents(path):
        for node in _nodes(document):
            number += 1
            product = _product(node)
            yield number, product if present(product.get("id")) else BadRow(
                "a Product without sku, productID, mpn, gtin, @id or url")


PLATFORM = Platform("schemaorg", "schema.org Product JSON-LD", {
    "id": "sku (else productGroupID, productID, mpn, gtin, @id, url)", "title": "name", "description": "description",
    "category": "category", "colour": "color", "price": "offers.price (+ priceCurrency)", "images": "image",
}, read)

