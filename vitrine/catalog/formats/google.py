"""Google Merchant Center feeds: RSS 2.0 or Atom XML with the `g:` namespace, or tab-separated text.

Items sharing an `item_group_id` are one product in several colours or sizes: they become one
product with a variant each. XML is parsed as a stream (items are dropped once read) by defusedxml,
which refuses entity declarations (no "billion laughs", no external entities).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from vitrine.catalog.formats.base import Platform, ReadOptions, Rows, grouped, kept, present, split_list
from vitrine.catalog.readers import BadRow, Row, read_rows
from vitrine.errors import CatalogError

MAX_FIELD_CHARS = 100_000  # a single field of an item (a description) above this is cut
_REPEATED = {"additional_image_link", "product_type", "size", "shipping", "product_detail", "product_highlight"}
_VARIANT_FIELDS = ("color", "size", "material", "pattern", "age_group", "gender", "size_type")
_USED = ("id", "title", "description", "link", "image_link", "additional_image_link", "price", "item_group_id",
         "product_type", "google_product_category", "color", "availability", "summary", "content", "updated")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _item(element: Element) -> Row:
    """One <item>/<entry> as a dict; `g:` fields win over plain RSS/Atom ones of the same name."""
    item: Row = {}
    google: Row = {}
    for child in element:
        name = _local(child.tag)
        namespaced = child.tag.startswith("{http://base.google.com/ns/1.0}")
        if len(child):
            value: Any = {_local(c.tag): (c.text or "").strip() for c in child}
        elif name == "link" and child.get("href"):
            value = child.get("href")
        else:
            value = (child.text or "").strip()[:MAX_FIELD_CHARS]
        target = google if namespaced else item
        if name in _REPEATED:
            target.setdefault(name, []).append(value)
        else:
            target.setdefault(name, value)
    if "summary" in item and "description" not in item:
        item["description"] = item.pop("summary")
    item.update(google)
    return item


def _xml_items(path: Path) -> Rows:
    stack: list[Element] = []
    number = 0
    try:
        for event, element in iterparse(str(path), events=("start", "end"), forbid_dtd=False, forbid_entities=True,
                                        forbid_external=True):
            if event == "start":
                stack.append(element)
                continue
            stack.pop()
            if _local(element.tag) in ("item", "entry"):
                number += 1
                yield number, _item(element)
                element.clear()
                if stack:
                    stack[-1].remove(element)  # memory stays flat however many items the feed holds
    except DefusedXmlException as exc:
        raise CatalogError(f"the XML feed declares entities or a DTD, which are refused: {exc}", row=number + 1) \
            from None
    except ParseError as exc:
        raise CatalogError(f"malformed XML after item {number}: {exc}", row=number + 1) from None


def _tsv_items(path: Path) -> Rows:
    with path.open(encoding="utf-8-sig", errors="replace") as fh:
        header = fh.readline()
    for number, row in read_rows(path, "tsv" if header.count("\t") > header.count(",") else "csv"):
        if isinstance(row, BadRow):
            yield number, row
            continue
        item = {k.strip().lower(): v for k, v in row.items() if present(v)}
        for name in ("additional_image_link", "product_type"):
            if name in item:
                item[name] = split_list(item[name])
        yield number, item


def _images(item: Row) -> list[str]:
    extra = item.get("additional_image_link") or []
    return [ref for ref in [item.get("image_link"), *(extra if isinstance(extra, list) else [extra])] if present(ref)]


def _categories(item: Row) -> list[str]:
    found = split_list(item.get("product_type") or [])
    if present(item.get("google_product_category")) and not str(item["google_product_category"]).isdigit():
        found.append(str(item["google_product_category"]))
    return found


def _common_title(titles: list[str]) -> str:
    """The words every variant's title starts with ("Hoodie - Red - M", "Hoodie - Blue - S" -> "Hoodie")."""
    if len(titles) < 2:
        return titles[0] if titles else ""
    words = [re.split(r"\s+", t.strip()) for t in titles]
    common = []
    for column in zip(*words, strict=False):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    shared = re.sub(r"[\s,\-–|/]+$", "", " ".join(common))
    return shared if len(shared) >= 3 else titles[0]


def _product(items: list[Row]) -> Row:
    first = items[0]
    if not present(first.get("item_group_id")):
        product: Row = {
            "id": first.get("id"), "title": first.get("title"), "description": first.get("description"),
            "price": first.get("price"), "images": _images(first), "categories": _categories(first),
            "colour": "|".join(split_list(first.get("color"), "/")),
        }
        product.update(kept(first, _USED))
        return {k: v for k, v in product.items() if present(v)}
    variants = []
    for item in items:
        variants.append({
            "sku": item.get("id"), "title": item.get("title"), "price": item.get("price"),
            "sale_price": item.get("sale_price"), "available": item.get("availability"), "images": _images(item),
            "link": item.get("link"), "gtin": item.get("gtin"), "mpn": item.get("mpn"),
            "options": {name.replace("color", "colour"): (value[0] if isinstance(value, list) else value)
                        for name in _VARIANT_FIELDS if present(value := item.get(name))},
        })
    product = {
        "id": first["item_group_id"], "title": _common_title([str(i.get("title") or "") for i in items]),
        "description": first.get("description"), "categories": _categories(first), "variants": variants,
    }
    shared = {k: v for k, v in kept(first, (*_USED, *_VARIANT_FIELDS, "sale_price", "gtin", "mpn", "item_group_id"))
              .items() if all(i.get(k) == v for i in items)}
    product.update(shared)
    return {k: v for k, v in product.items() if present(v)}


def _products(items: Callable[[], Rows]) -> Iterator[tuple[int, Row | BadRow]]:
    def key(item: Row) -> str | None:
        group = item.get("item_group_id")
        return f"group:{group}" if present(group) else None

    for number, group in grouped(items, key):
        yield number, group if isinstance(group, BadRow) else _product(group)


def read_xml(path: Path, options: ReadOptions) -> Rows:
    return _products(lambda: _xml_items(path))


def read_tsv(path: Path, options: ReadOptions) -> Rows:
    return _products(lambda: _tsv_items(path))


_SOURCES = {
    "id": "id (item_group_id for a product with variants)", "title": "title", "description": "description",
    "category": "product_type (else google_product_category)", "colour": "color", "price": "price",
    "images": "image_link, additional_image_link",
}
XML = Platform("google-xml", "Google Merchant Center feed (XML)", _SOURCES, read_xml)
TSV = Platform("google-tsv", "Google Merchant Center feed (tab-separated)", _SOURCES, read_tsv)
