"""A source row becomes a normalised product record, or a list of problems."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from vitrine.catalog.columns import FIELDS, ColumnMap
from vitrine.catalog.readers import BadRow, RowOrError
from vitrine.errors import InvalidInput

MAX_ID_LENGTH = 256
# Python strings can hold lone UTF-16 surrogates (JSON's "\ud800"); they cannot be encoded as UTF-8,
# so SQLite, JSON responses and logs would all fail on them. Valid pairs are already one code point.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Bump when `search_text` or the text model changes: rows hash differently, so re-ingesting
# re-embeds their text (their images come from the feature cache).
TEXT_RECIPE = 3


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one row. `severity` "error" means the row was not ingested."""

    row: int
    product_id: str | None
    field: str
    message: str
    severity: str = "error"

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "id": self.product_id, "field": self.field, "message": self.message,
                "severity": self.severity}


@dataclass(frozen=True)
class ProductRecord:
    id: str
    title: str
    description: str
    category: str
    colour: str
    price: float | None
    image_refs: tuple[str, ...]
    attributes: dict[str, Any] = field(default_factory=dict)
    row: int = 0

    @property
    def content_hash(self) -> str:
        """Changes whenever anything we store for the row changes; re-ingesting equal rows is a no-op."""
        payload = json.dumps(
            [TEXT_RECIPE, self.id, self.title, self.description, self.category, self.colour, self.price,
             list(self.image_refs), self.attributes],
            sort_keys=True, ensure_ascii=False, default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    @property
    def search_text(self) -> str:
        """What the text encoder reads: title, category and colour only.

        Measured on the dev ground truth (docs/benchmarks.md): adding descriptions or attributes
        dilutes the sentence vector (H&M MRR 0.83 -> 0.72) and triples encoding time; the keyword
        index still covers every word of the description.
        """
        parts = [self.title or _first_sentence(self.description), self.category, self.colour]
        return ". ".join(p for p in parts if p)


def check_product_id(value: str) -> str:
    """The one rule for product ids, whether they come from a catalog row or a `PUT`: 1-256 characters,
    no control characters (NUL included), valid Unicode. Raises InvalidInput naming `product_id`."""
    if not value or not value.strip():
        raise InvalidInput("missing id", field="product_id")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInput(f"id is over {MAX_ID_LENGTH} characters", field="product_id")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidInput("id holds control characters", field="product_id")
    if has_lone_surrogate(value):
        raise InvalidInput("id is not valid Unicode (a lone surrogate)", field="product_id")
    return value


def has_lone_surrogate(text: str) -> bool:
    return _LONE_SURROGATE.search(text) is not None


def clean_text(text: str) -> str:
    """Lone surrogates replaced by U+FFFD, so the text can be stored and served."""
    return _LONE_SURROGATE.sub("\ufffd", text) if _LONE_SURROGATE.search(text) else text


def clean_value(value: Any) -> Any:
    """`clean_text` through nested attribute values (dict keys too); non-finite floats become None."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [clean_value(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_value(v) for k, v in value.items()}
    return value


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0][:200] if text else ""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, list):
        return "|".join(_text(v) for v in value if _text(v))
    if isinstance(value, dict):
        return json.dumps(clean_value(value), ensure_ascii=False, sort_keys=True)
    return clean_text(str(value).strip())


def parse_price(value: Any) -> float | None:
    """'52', '$52.00', '52,00 €', 52 -> 52.0; '' -> None; anything else raises ValueError."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, int | float):
        price = float(value)
    else:
        text = re.sub(r"[^\d.,\-]", "", str(value))
        if "," in text and "." not in text:
            text = text.replace(",", ".")
        text = text.replace(",", "")
        price = float(text)
    if not math.isfinite(price) or price < 0:
        raise ValueError("not a finite, non-negative number")
    return price


def parse_image_refs(value: Any) -> tuple[str, ...]:
    """A JSON list (of strings or {url|src}), a JSON list in a string, or a `|`-separated cell."""
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
        else:
            value = [part for part in text.split("|")]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        value = [value]
    refs: list[str] = []
    for item in value:
        if isinstance(item, dict):
            item = item.get("url") or item.get("src") or item.get("href") or item.get("path")
        ref = _text(item)
        if ref and ref not in refs:
            refs.append(ref)
    return tuple(refs)


def _leaf_category(value: str) -> str:
    for separator in (" > ", ">", "/"):
        if separator in value:
            return value.split(separator)[-1].strip()
    return value


def to_record(number: int, row: RowOrError, columns: ColumnMap) -> tuple[ProductRecord | None, list[Problem]]:
    """Normalises one row; returns (None, problems) when the row cannot be ingested."""
    if isinstance(row, BadRow):
        return None, [Problem(number, None, "row", row.message)]
    problems: list[Problem] = []
    id_column = columns.source("id")
    raw_id = row.get(id_column) if id_column else None
    product_id = "" if raw_id is None else str(raw_id).strip()
    try:
        check_product_id(product_id)
    except InvalidInput as exc:
        shown = clean_text(product_id[:40]) or None
        return None, [Problem(number, shown, "id", exc.message)]

    def get(field_name: str) -> Any:
        column = columns.source(field_name)
        return row.get(column) if column else None

    price: float | None = None
    try:
        price = parse_price(get("price"))
    except (ValueError, TypeError):
        problems.append(Problem(number, product_id, "price", f"bad price {_text(get('price'))[:40]!r}", "warning"))

    category_raw = _text(get("category"))
    attributes = {
        clean_text(key): clean_value(value) for key, value in row.items()
        if key not in columns.mapped and _text(value) != ""
    }
    category = _leaf_category(category_raw)
    if category != category_raw:
        attributes.setdefault("category_path", category_raw)
    record = ProductRecord(
        id=product_id,
        title=_text(get("title")),
        description=_text(get("description")),
        category=category,
        colour=_text(get("colour")),
        price=price,
        image_refs=parse_image_refs(get("images")),
        attributes=attributes,
        row=number,
    )
    if not record.image_refs:
        problems.append(Problem(number, product_id, "images", "missing image", "warning"))
    return record, problems


_DIRECT = ColumnMap({name: name for name in FIELDS})


def record_from_fields(product_id: str, fields: dict[str, Any]) -> ProductRecord:
    """A product sent field by field (`PUT` of one product) through the same checks as a catalog row:
    what ingest would refuse or drop is an InvalidInput naming the field. Photos are added later."""
    check_product_id(product_id)
    attributes = dict(fields.get("attributes") or {})
    clash = sorted(set(attributes) & set(FIELDS))
    if clash:
        raise InvalidInput(f"{clash[0]!r} is a product field, not an attribute", field=f"attributes.{clash[0]}")
    row = {**attributes, **{k: v for k, v in fields.items() if k != "attributes"}, "id": product_id}
    record, problems = to_record(0, row, _DIRECT)
    errors = [p for p in problems if p.field != "images"]
    if record is None or errors:
        problem = errors[0] if errors else problems[0]
        raise InvalidInput(problem.message, field=problem.field)
    return record
