"""Merchandising rules: a shop's say over its results, applied after scoring.

- pin: a product at a fixed position (1-based) for a query; it must still pass the search's filters;
- boost / bury: products with an attribute value ("brand = Acme", "in_stock = true") move up or down
  by `weight` (scores are cosines, so 0.1 is a strong push);
- hide: a product, or every product with an attribute value, never shows.
A rule with a `query` applies to searches whose text is that query (compared as folded singular
words: "Hoodies" matches "hoodie"); without one, to every search and browse of the collection.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.errors import InvalidInput
from vitrine.search.query import check_text
from vitrine.search.words import tokens

ACTIONS = ("pin", "boost", "bury", "hide")
IN_STOCK = "in_stock"  # the condition field that reads variants' and the product's availability
MAX_RULES = 500
MAX_PIN_POSITION = 100
DEFAULT_WEIGHT = 0.1


@dataclass(frozen=True)
class Rule:
    id: str
    action: str
    query: str | None = None
    product_id: str | None = None
    position: int | None = None  # pin: 1 is the first hit
    field: str | None = None
    value: str | None = None
    weight: float = DEFAULT_WEIGHT

    def as_dict(self) -> dict[str, Any]:
        found = {k: v for k, v in asdict(self).items() if v is not None}
        if self.action not in ("boost", "bury"):
            found.pop("weight")
        return found

    def applies_to(self, text: str | None) -> bool:
        return self.query is None or (text is not None and tokens(self.query) == tokens(text))


def check_rule(raw: Mapping[str, Any], rule_id: str | None = None) -> Rule:
    """A rule from user input, every field checked; a new id unless one is given."""
    def text(name: str, limit: int = 200) -> str | None:
        value = raw.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise InvalidInput(f"{name} must be 1 to {limit} characters of text", field=name)
        return check_text(value.strip(), name)

    unknown = set(raw) - {"id", "action", "query", "product_id", "position", "field", "value", "weight"}
    if unknown:
        raise InvalidInput(f"unknown rule field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    action = raw.get("action")
    if action not in ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}", field="action")
    query, product_id, field, value = text("query"), text("product_id"), text("field", 64), text("value")
    position = raw.get("position")
    weight = raw.get("weight", DEFAULT_WEIGHT)
    if action == "pin":
        if product_id is None:
            raise InvalidInput("a pin names the product to pin", field="product_id")
        if not isinstance(position, int) or isinstance(position, bool) or not 1 <= position <= MAX_PIN_POSITION:
            raise InvalidInput(f"a pin's position is 1 to {MAX_PIN_POSITION}", field="position")
    elif position is not None:
        raise InvalidInput("only a pin has a position", field="position")
    if action in ("boost", "bury") and field is None:
        raise InvalidInput(f"a {action} names a field (and value) products must have", field="field")
    if action == "hide" and (product_id is None) == (field is None):
        raise InvalidInput("a hide names a product_id, or a field and value", field="product_id")
    if field is not None and value is None and field != IN_STOCK:
        raise InvalidInput("a field needs a value", field="value")
    if field == IN_STOCK:
        value = (value or "true").lower()
        if value not in ("true", "false"):
            raise InvalidInput("in_stock is true or false", field="value")
    if action in ("boost", "bury"):
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight <= 1:
            raise InvalidInput("weight is above 0 and at most 1", field="weight")
    elif "weight" in raw:
        raise InvalidInput("only a boost or bury has a weight", field="weight")
    return Rule(id=rule_id or uuid.uuid4().hex[:12], action=action, query=query, product_id=product_id,
                position=position if action == "pin" else None, field=field, value=value,
                weight=float(weight) if action in ("boost", "bury") else DEFAULT_WEIGHT)


def parse_rules(stored: str) -> list[Rule]:
    """The rules kept in a collection's metadata (written by `dump_rules`)."""
    try:
        return [check_rule({k: v for k, v in r.items() if k != "id"}, r["id"]) for r in json.loads(stored)]
    except (ValueError, KeyError, TypeError, AttributeError, InvalidInput):
        return []


def dump_rules(rules: Sequence[Rule]) -> str:
    return json.dumps([r.as_dict() for r in rules])


@dataclass
class Merchandising:
    """A collection's rules with the store rows each condition matches (resolved once per generation)."""

    rules: list[Rule]
    rows_of: Callable[[str, str], Array]  # (field, value) -> store rows with it
    _rows: dict[tuple[str, str], Array] | None = None

    def applicable(self, text: str | None) -> list[Rule]:
        return [r for r in self.rules if r.applies_to(text)]

    def rows(self, field: str, value: str) -> Array:
        if self._rows is None:
            self._rows = {}
        key = (field, value)
        if key not in self._rows:
            self._rows[key] = self.rows_of(field, value)
        return self._rows[key]

    def bonus(self, rules: Sequence[Rule], size: int, positions_of_rows: Callable[[Array], Array],
              position_of: Callable[[str], int | None]) -> Array | None:
        """Per product: +weight (boost), -weight (bury), -inf (hidden); None when no rule changes scores."""
        scoring = [r for r in rules if r.action != "pin"]
        if not scoring:
            return None
        bonus = np.zeros(size, dtype=np.float32)
        for rule in scoring:
            if rule.product_id is not None:
                at = position_of(rule.product_id)
                where: Array = np.asarray([] if at is None else [at], dtype=np.int64)
            else:
                where = positions_of_rows(self.rows(str(rule.field), str(rule.value)))
            if rule.action == "hide":
                bonus[where] = -np.inf
            else:
                bonus[where] += rule.weight if rule.action == "boost" else -rule.weight
        return bonus
