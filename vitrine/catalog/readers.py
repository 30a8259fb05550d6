"""Stream rows out of CSV, JSON (an array, or an object holding one) and JSONL files in bounded memory."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ijson

from vitrine.errors import CatalogError

Row = dict[str, Any]
FORMATS = ("csv", "tsv", "json", "jsonl")
# Keys under which shop APIs (DummyJSON, Shopify, ...) return their product arrays, most likely first.
_ARRAY_KEYS = ("products", "items", "data", "results", "records", "rows")

csv.field_size_limit(16 * 1024 * 1024)


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in FORMATS:
        return suffix
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith((b"[", b"{")):
        first_line = head.split(b"\n", 1)[0].strip()
        return "jsonl" if first_line.startswith(b"{") and first_line.endswith(b"}") else "json"
    return "csv"


def read_rows(path: Path, fmt: str | None = None) -> Iterator[tuple[int, Row]]:
    """Yields (row number, row) pairs; row numbers are 1-based data rows. Raises CatalogError."""
    if not path.is_file():
        raise CatalogError(f"catalog file not found: {path}", field="path")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise CatalogError(f"unknown catalog format {fmt!r}; expected one of {', '.join(FORMATS)}", field="format")
    if fmt in ("csv", "tsv"):
        return _read_csv(path, delimiter="\t" if fmt == "tsv" else ",")
    if fmt == "jsonl":
        return _read_jsonl(path)
    return _read_json(path)


def _read_csv(path: Path, *, delimiter: str) -> Iterator[tuple[int, Row]]:
    with path.open(newline="", encoding="utf-8-sig", errors="strict") as fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        number = 0
        try:
            header = next(reader, None)
            if not header or not any(h.strip() for h in header):
                raise CatalogError("the CSV file has no header row", row=0)
            header = [h.strip() for h in header]
            if len(set(header)) != len(header):
                dupes = sorted({h for h in header if header.count(h) > 1})
                raise CatalogError(f"duplicate column names: {', '.join(dupes)}", row=0)
            for number, cells in enumerate(reader, start=1):
                if not cells or all(not c.strip() for c in cells):
                    continue
                if len(cells) > len(header):
                    raise CatalogError(f"{len(cells)} cells for {len(header)} columns", row=number)
                yield number, dict(zip(header, cells, strict=False))
        except csv.Error as exc:
            raise CatalogError(f"malformed CSV: {exc}", row=number + 1) from exc
        except UnicodeDecodeError as exc:
            raise CatalogError(f"the file is not UTF-8 text: {exc.reason}", row=number + 1) from exc


def _read_jsonl(path: Path) -> Iterator[tuple[int, Row]]:
    with path.open(encoding="utf-8-sig") as fh:
        number = 0
        try:
            for line in fh:
                if not line.strip():
                    continue
                number += 1
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CatalogError(f"malformed JSON: {exc.msg} (column {exc.colno})", row=number) from exc
                yield number, _as_row(value, number)
        except UnicodeDecodeError as exc:
            raise CatalogError(f"the file is not UTF-8 text: {exc.reason}", row=number + 1) from exc


def _as_row(value: Any, number: int) -> Row:
    if not isinstance(value, dict):
        raise CatalogError(f"expected a JSON object, got {type(value).__name__}", row=number)
    return value


def _array_prefix(path: Path) -> str:
    """The ijson prefix of the product array: the top level, or the array-valued key of a wrapper object."""
    candidates: list[str] = []
    with path.open("rb") as fh:
        try:
            events = ijson.parse(fh)
            prefix, event, _ = next(events)
            if event == "start_array":
                return "item"
            if event != "start_map":
                raise CatalogError("a JSON catalog must be an array of products or an object holding one")
            key = None
            for prefix, event, value in events:
                if prefix == "" and event == "map_key":
                    key = value
                elif prefix == key and event == "start_array" and key is not None:
                    candidates.append(key)
        except ijson.JSONError as exc:
            raise CatalogError(f"malformed JSON: {exc}") from exc
        except StopIteration:
            raise CatalogError("the JSON file is empty") from None
    if not candidates:
        raise CatalogError("the JSON object holds no array of products")
    preferred = [k for k in _ARRAY_KEYS if k in candidates]
    return f"{(preferred or candidates)[0]}.item"


def _read_json(path: Path) -> Iterator[tuple[int, Row]]:
    prefix = _array_prefix(path)
    number = 0
    with path.open("rb") as fh:
        try:
            for number, value in enumerate(ijson.items(fh, prefix, use_float=True), start=1):
                yield number, _as_row(value, number)
        except ijson.JSONError as exc:
            raise CatalogError(f"malformed JSON after product {number}: {exc}", row=number + 1) from exc
