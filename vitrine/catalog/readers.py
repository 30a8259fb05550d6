"""Stream rows out of CSV, JSON (an array, or an object holding one) and JSONL files in bounded memory.

Catalog files are untrusted: JSON is first walked once with ijson's event parser (no prefixes, no
values kept), which refuses nesting deeper than MAX_DEPTH and numbers too long to convert before
anything builds objects from it. ijson's prefix-building parser takes memory in the square of the
depth, and its C backend crashes on integers of over ~4,300 digits.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ijson

from vitrine.errors import CatalogError

MAX_DEPTH = 64  # real shop exports nest 5-8 levels (Shopify: product > variants > item > ...)
# ijson's C parser crashes the process on very long integers (past Python's 4,300-digit conversion
# limit; after it raised once, later parses segfaulted), so no run of digits that long reaches it.
MAX_DIGITS = 400
# Anchored at the start of a run, so each run is scanned once (unanchored, a file of 400-digit runs
# took a second a megabyte).
_DIGIT_RUN = re.compile(rb"(?<![0-9])[0-9]{%d}" % (MAX_DIGITS + 1))
_DIGITS = b"0123456789"


@dataclass(frozen=True)
class BadRow:
    """A row that could not be read (one malformed JSONL line, a non-object item): a problem of that
    row alone, not of the whole file."""

    message: str


Row = dict[str, Any]
RowOrError = Row | BadRow
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


def read_rows(path: Path, fmt: str | None = None) -> Iterator[tuple[int, RowOrError]]:
    """Yields (row number, row) pairs; row numbers are 1-based data rows. A row that cannot be read
    is a BadRow; a file that cannot be read at all raises CatalogError."""
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


def _read_csv(path: Path, *, delimiter: str) -> Iterator[tuple[int, RowOrError]]:
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


def _read_jsonl(path: Path) -> Iterator[tuple[int, RowOrError]]:
    with path.open(encoding="utf-8-sig") as fh:
        number = 0
        try:
            for line in fh:
                if not line.strip():
                    continue
                number += 1
                yield number, _parse_line(line)
        except UnicodeDecodeError as exc:
            raise CatalogError(f"the file is not UTF-8 text: {exc.reason}", row=number + 1) from exc


def _parse_line(line: str) -> RowOrError:
    value = _parse_value(line)
    return value if isinstance(value, BadRow) else _as_row(value)


def _parse_value(line: str) -> Any:
    if _DIGIT_RUN.search(line.encode("utf-8", "surrogatepass")):
        return BadRow(f"malformed JSON: a number of over {MAX_DIGITS} digits")
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return BadRow(f"malformed JSON: {exc.msg} (column {exc.colno})")
    except ValueError as exc:  # an integer past Python's conversion limit
        return BadRow(f"malformed JSON: {_short(exc)}")
    except RecursionError:
        return BadRow(f"malformed JSON: nested deeper than {MAX_DEPTH} levels")
    if _depth_over(value, MAX_DEPTH):
        return BadRow(f"malformed JSON: nested deeper than {MAX_DEPTH} levels")
    return value


def check_json_text(text: str) -> Any:
    """One JSON document held in memory (a JSON-LD block), with the guards of a catalog file: no
    number too long to convert, no nesting deeper than MAX_DEPTH. Raises CatalogError."""
    value = _parse_value(text)
    if isinstance(value, BadRow):
        raise CatalogError(value.message)
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """Whether `value` nests containers deeper than `limit` (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _short(exc: Exception) -> str:
    return str(exc).split(";", 1)[0][:200]


def _as_row(value: Any) -> RowOrError:
    if not isinstance(value, dict):
        return BadRow(f"expected a JSON object, got {type(value).__name__}")
    return value


def _array_prefix(path: Path) -> str:
    """The ijson prefix of the product array: the top level, or the array-valued key of a wrapper object.

    Walks the whole file with the event parser, which also refuses what `ijson.items` must never see."""
    _refuse_long_digit_runs(path)
    candidates: list[str] = []
    top: str | None = None
    depth = 0
    key: str | None = None
    with path.open("rb") as fh:
        try:
            for event, value in ijson.basic_parse(fh, use_float=True):  # floats: no Decimal contexts
                if event in ("start_map", "start_array"):
                    depth += 1
                    if depth > MAX_DEPTH:
                        raise CatalogError(f"the JSON nests deeper than {MAX_DEPTH} levels")
                    if depth == 1:
                        top = event
                    elif depth == 2 and top == "start_map" and event == "start_array" and key is not None:
                        candidates.append(key)
                elif event in ("end_map", "end_array"):
                    depth -= 1
                elif event == "map_key" and depth == 1:
                    key = value
                elif depth == 0:
                    raise CatalogError("a JSON catalog must be an array of products or an object holding one")
        except ijson.JSONError as exc:
            raise CatalogError(f"malformed JSON: {_short(exc)}") from exc
        except (ValueError, ArithmeticError) as exc:  # a number Python cannot hold
            raise CatalogError(f"malformed JSON: {_short(exc)}") from exc
    if top is None:
        raise CatalogError("the JSON file is empty")
    if top == "start_array":
        return "item"
    if not candidates:
        raise CatalogError("the JSON object holds no array of products")
    preferred = [k for k in _ARRAY_KEYS if k in candidates]
    return f"{(preferred or candidates)[0]}.item"


def _refuse_long_digit_runs(path: Path) -> None:
    """CatalogError if the file holds a run of over MAX_DIGITS digits (a number no catalog needs)."""
    carry = b""
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            text = carry + chunk
            if _DIGIT_RUN.search(text):
                raise CatalogError(f"malformed JSON: a number of over {MAX_DIGITS} digits")
            carry = text[len(text.rstrip(_DIGITS)):]  # a run that goes on in the next chunk


def _read_json(path: Path) -> Iterator[tuple[int, RowOrError]]:
    prefix = _array_prefix(path)
    number = 0
    with path.open("rb") as fh:
        try:
            for number, value in enumerate(ijson.items(fh, prefix, use_float=True), start=1):
                yield number, _as_row(value)
        except (ijson.JSONError, ValueError, ArithmeticError) as exc:
            raise CatalogError(f"malformed JSON after product {number}: {_short(exc)}", row=number + 1) from exc
