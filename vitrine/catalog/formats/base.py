"""What every shop-export reader shares: its description, and the canonical row it yields.

A platform reader turns the export's own shape (many rows per product, nested variants, XML items)
into one canonical row per product: the keys of `columns.FIELDS` plus `categories` (every category
path) and `variants` (a list of variant objects, see `records.parse_variants`); every other key is
kept as an attribute. `records.to_record` then treats it like any row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitrine.catalog.readers import BadRow, Row, RowOrError

Rows = Iterator[tuple[int, RowOrError]]


@dataclass(frozen=True)
class ReadOptions:
    """`media_root`: the folder or base URL that a Magento export's image paths (`/m/h/mh01.jpg`) are under."""

    media_root: str | None = None


@dataclass(frozen=True)
class Platform:
    """One export format: its name for `--format`, its label, and which of its fields feed each product field."""

    name: str
    label: str
    sources: Mapping[str, str]
    read: Callable[[Path, ReadOptions], Rows] = field(compare=False)


def present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip()) and value != []


def split_list(text: Any, separator: str = ",") -> list[str]:
    """`'a, b,,c'` -> ['a', 'b', 'c']; a list is kept (its empty items dropped)."""
    if isinstance(text, list):
        return [str(v).strip() for v in text if present(v)]
    if not present(text):
        return []
    return [part.strip() for part in str(text).split(separator) if part.strip()]


def kept(row: Mapping[str, Any], used: Iterable[str]) -> dict[str, Any]:
    """The row's non-empty cells that no product field took: they stay as attributes."""
    skip = set(used)
    return {key: value for key, value in row.items() if key not in skip and present(value)}


def grouped(read: Callable[[], Rows], key: Callable[[Row], str | None]) -> Iterator[tuple[int, list[Row] | BadRow]]:
    """Rows gathered by `key`, each group numbered by its first row; a row whose key is None is a group
    of its own. The rows are read twice: the first pass notes where each group ends, the second yields
    a group as soon as its last row is read. Only groups still open are held, so an export that lists
    a product's rows together (as platforms do) is read a product at a time, and one that does not
    still reads right."""
    last: dict[str, int] = {}
    for index, (_, row) in enumerate(read()):
        if not isinstance(row, BadRow) and (group_key := key(row)) is not None:
            last[group_key] = index
    open_groups: dict[str, tuple[int, list[Row]]] = {}
    for index, (number, row) in enumerate(read()):
        if isinstance(row, BadRow):
            yield number, row
            continue
        group_key = key(row)
        if group_key is None:
            yield number, [row]
            continue
        first, members = open_groups.setdefault(group_key, (number, []))
        members.append(row)
        if last.get(group_key, index) <= index:
            del open_groups[group_key]
            yield first, members
    yield from open_groups.values()  # the file changed between the passes: what was read still counts
