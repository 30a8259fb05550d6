"""Catalog formats: plain CSV / TSV / JSON / JSONL, and the exports of shop platforms, told apart by
their content (the file name is only a tie-break; `--format` overrides)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from vitrine.catalog.formats import etsy, google, magento, schemaorg, shopify, woocommerce
from vitrine.catalog.formats.base import Platform, ReadOptions, Rows
from vitrine.catalog.readers import FORMATS as GENERIC
from vitrine.catalog.readers import detect_format as detect_plain_format
from vitrine.catalog.readers import read_rows
from vitrine.errors import CatalogError

PLATFORMS: dict[str, Platform] = {p.name: p for p in (
    shopify.JSON, shopify.CSV, woocommerce.PLATFORM, magento.PLATFORM, google.XML, google.TSV, schemaorg.PLATFORM,
    etsy.PLATFORM,
)}
FORMATS = (*GENERIC, *PLATFORMS)
_HEAD_BYTES = 64 * 1024

__all__ = ["FORMATS", "PLATFORMS", "Platform", "ReadOptions", "detect_format", "read_catalog"]


def detect_format(path: Path) -> str:
    """The catalog's format from its first 64 KB: markup, JSON shape, or the header's column names."""
    if not path.is_file():
        raise CatalogError(f"catalog file not found: {path}", field="path")
    with path.open("rb") as fh:
        head = fh.read(_HEAD_BYTES)
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    lowered = text.lower()
    if text.startswith(b"<"):
        if b"application/ld+json" in lowered:
            return "schemaorg"
        if b"<rss" in lowered or b"<feed" in lowered or b"base.google.com/ns" in lowered:
            return "google-xml"
        raise CatalogError("an XML or HTML file that is neither a Google Merchant feed (RSS or Atom) nor a page "
                           "with schema.org JSON-LD", field="format")
    if text.startswith((b"{", b"[")):
        if b"schema.org" in lowered and b'"@type"' in text:
            return "schemaorg"
        if b'"body_html"' in text and b'"variants"' in text:
            return "shopify-json"
        return detect_plain_format(path)  # JSON or JSON lines, by name, else by the first line
    return _table_format(head.decode("utf-8-sig", errors="replace"))


def _table_format(head: str) -> str:
    header_line = head.split("\n", 1)[0]
    delimiter = "\t" if header_line.count("\t") > header_line.count(",") else ","
    try:
        header = next(csv.reader(io.StringIO(header_line), delimiter=delimiter), [])
    except csv.Error:
        header = []
    columns = {c.strip() for c in header}
    lowered = {c.lower() for c in columns}
    if {"Handle", "Title"} <= columns and ("Variant Price" in columns or "Body (HTML)" in columns):
        return "shopify-csv"
    if {"Type", "SKU", "Name"} <= columns and ("Regular price" in columns or "Parent" in columns):
        return "woocommerce"
    if {"sku", "product_type"} <= columns and ({"store_view_code", "attribute_set_code"} & columns):
        return "magento"
    if {"TITLE", "PRICE", "IMAGE1"} <= columns:
        return "etsy"
    if {"id", "title"} <= lowered and ({"image_link", "item_group_id"} & lowered):
        return "google-tsv"
    return "tsv" if delimiter == "\t" else "csv"


def read_catalog(path: Path, fmt: str | None = None, options: ReadOptions | None = None) -> tuple[str, Rows]:
    """(format, rows): the file's rows (plain formats), or one canonical row per product (platforms)."""
    fmt = fmt or detect_format(path)
    if fmt in PLATFORMS:
        if not path.is_file():
            raise CatalogError(f"catalog file not found: {path}", field="path")
        return fmt, PLATFORMS[fmt].read(path, options or ReadOptions())
    if fmt not in GENERIC:
        raise CatalogError(f"unknown catalog format {fmt!r}; expected one of {', '.join(FORMATS)}", field="format")
    return fmt, read_rows(path, fmt)
