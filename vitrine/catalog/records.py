"""A source row becomes a normalised product record, or a list of problems."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from vitrine.catalog.cleaning import html_to_text, parse_money
from vitrine.catalog.columns import FIELDS, ColumnMap, lookup
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
class Variant:
    """One buyable version of a product (a colour x size): shoppers search products, and buy variants.

    `options` maps lower-case option names (`colour`, `size`, `material`...) to this variant's value."""

    sku: str
    title: str = ""
    options: dict[str, str] = field(default_factory=dict)
    price: float | None = None
    available: bool | None = None
    image_refs: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def colour(self) -> str:
        return self.options.get("colour", "")

    def as_dict(self) -> dict[str, Any]:
        return {"sku": self.sku, "title": self.title, "options": self.options, "price": self.price,
                "available": self.available, "images": list(self.image_refs), "attributes": self.attributes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Variant:
        return cls(sku=data["sku"], title=data.get("title", ""), options=dict(data.get("options") or {}),
                   price=data.get("price"), available=data.get("available"),
                   image_refs=tuple(data.get("images") or ()), attributes=dict(data.get("attributes") or {}))


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
    variants: tuple[Variant, ...] = ()
    categories: tuple[str, ...] = ()  # every category path the source gave, `category` is the chosen leaf

    @property
    def content_hash(self) -> str:
        """Changes whenever anything we store for the row changes; re-ingesting equal rows is a no-op."""
        fields: list[Any] = [TEXT_RECIPE, self.id, self.title, self.description, self.category, self.colour,
                             self.price, list(self.image_refs), self.attributes]
        if self.variants or self.categories:  # products without them hash as they always did
            fields += [[v.as_dict() for v in self.variants], list(self.categories)]
        payload = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()

    @property
    def colours(self) -> list[str]:
        """The product's colour and every variant's, each once, in order."""
        found = [c for c in [self.colour, *(v.colour for v in self.variants)] if c]
        return list(dict.fromkeys(found))

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
    """'52', '$52.00', '52,00 €', '1.299,00 EUR', 52 -> the amount; '' -> None; anything else raises ValueError."""
    money = parse_money(value)
    return None if money is None else money.amount


def parse_image_refs(value: Any) -> tuple[str, ...]:
    """A JSON list (of strings or {url|src}), a JSON list in a string, a `|`-separated cell, or a
    comma-separated cell of URLs (WooCommerce, Google feeds)."""
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
        elif "|" not in text and "," in text and all(
                part.strip().lower().startswith(("http://", "https://")) for part in text.split(",")):
            value = [part.strip() for part in text.split(",")]
        else:
            value = [part for part in text.split("|")]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        value = [value]
    refs: list[str] = []
    for item in value:
        if isinstance(item, dict):
            item = item.get("url") or item.get("src") or item.get("href") or item.get("path") or item.get("contentUrl")
        ref = _text(item)
        if ref and ref not in refs:
            refs.append(ref)
    return tuple(refs)


# Category trees hold merchandising branches besides the garment's own ("Collections/Eco Friendly",
# "Sale", "What's New"): the category is the most specific path outside them.
_MERCHANDISING = re.compile(
    r"^(collections?|promotions?|sales?|new|new in|new arrivals?|what'?s new|featured|gifts?|gift ideas|"
    r"best ?sellers?|outlet|clearance|deals?|shop all|all)$", re.IGNORECASE)
_ROOTS = re.compile(r"^(default category|root catalog|root|home|all products|catalog)$", re.IGNORECASE)


def category_segments(path: str) -> list[str]:
    """`Default Category/Men/Tops` or `Apparel > Clothing > Tops` -> its named levels, store roots dropped."""
    for separator in (" > ", ">", "/"):
        if separator in path:
            parts = [p.strip() for p in path.split(separator)]
            break
    else:
        parts = [path.strip()]
    return [p for p in parts if p and not _ROOTS.match(p)]


def choose_category(paths: list[str]) -> str:
    """The leaf of the most specific path that is not a merchandising branch (the first on a tie)."""
    best: list[str] = []
    best_key = (-1, -1)
    for path in paths:
        segments = category_segments(path)
        if not segments:
            continue
        key = (0 if any(_MERCHANDISING.match(s) for s in segments) else 1, len(segments))
        if key > best_key:
            best, best_key = segments, key
    return best[-1] if best else ""


# Top levels of category trees that are a gender ("Men/Tops/Jackets"), as the catalog spells them.
_GENDER_SEGMENTS = frozenset({"men", "mens", "men's", "women", "womens", "women's", "ladies", "man", "woman",
                              "boys", "girls", "kids", "unisex", "baby"})


def gender_of_paths(paths: list[str]) -> list[str]:
    """The genders category paths name ("Women/Tops/Tees": "Women"), for a catalog with no gender field."""
    found = [s for path in paths for s in category_segments(path) if s.strip().lower() in _GENDER_SEGMENTS]
    return list(dict.fromkeys(found))


# Attributes that name a store's department, and the department words that are a gender ("Menswear").
DEPARTMENT_FIELDS = frozenset({"department", "section", "division", "index_group_name", "index_name"})
_DEPARTMENT_GENDERS = {
    "men": "Men", "mens": "Men", "menswear": "Men", "man": "Men",
    "women": "Women", "womens": "Women", "womenswear": "Women", "woman": "Women", "ladies": "Women",
    "ladieswear": "Women", "boys": "Boys", "girls": "Girls", "kids": "Kids", "kidswear": "Kids",
    "children": "Kids", "childrenswear": "Kids", "baby": "Baby", "unisex": "Unisex",
}


def gender_of_departments(attributes: dict[str, Any]) -> list[str]:
    """The genders a department attribute names (H&M's `section` "Menswear": "Men"; "Baby/Children":
    "Baby", "Kids"), for a catalog with neither a gender field nor gendered category paths."""
    found = []
    for name, value in attributes.items():
        if option_name(name) not in DEPARTMENT_FIELDS:
            continue
        for word in re.findall(r"[a-z]+", str(value).lower().replace("'", "")):
            if word in _DEPARTMENT_GENDERS:
                found.append(_DEPARTMENT_GENDERS[word])
    return list(dict.fromkeys(found))


def derived_genders(category_paths: list[str], attributes: dict[str, Any]) -> list[str]:
    """A product's genders when it has no gender field: its category paths', else its department's."""
    return gender_of_paths(category_paths) or gender_of_departments(attributes)


def _leaf_category(value: str) -> str:
    segments = category_segments(value)
    return segments[-1] if segments else value


_OPTION_NAMES = {"color": "colour", "colour": "colour", "colors": "colour", "colours": "colour", "farbe": "colour",
                 "couleur": "colour", "size": "size", "sizes": "size", "taille": "size", "größe": "size"}
_AVAILABLE = frozenset({"instock", "in stock", "in_stock", "available", "true", "yes", "1", "preorder", "backorder",
                        "limitedavailability", "onlineonly"})
_UNAVAILABLE = frozenset({"outofstock", "out of stock", "out_of_stock", "soldout", "sold out", "false", "no", "0",
                          "discontinued"})
_VARIANT_KEYS = {"sku", "id", "code", "variant_id", "title", "name", "options", "price", "available", "availability",
                 "in_stock", "images", "image", "image_url", "image_link"}


def option_name(name: str) -> str:
    """'Color', 'Colour', 'Size', 'Fit Type' -> 'colour', 'colour', 'size', 'fit_type'."""
    key = re.sub(r"[^0-9a-zà-ÿß]+", "_", name.strip().lower()).strip("_")
    return _OPTION_NAMES.get(key, key)


def parse_availability(value: Any) -> bool | None:
    """'in stock', 'InStock', 'https://schema.org/OutOfStock', true, 3 -> True/False; unknown -> None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value > 0
    text = str(value).strip().lower().rsplit("/", 1)[-1]
    if text in _AVAILABLE:
        return True
    if text in _UNAVAILABLE:
        return False
    return None


def parse_variants(value: Any, product_id: str) -> tuple[tuple[Variant, ...], list[str], str | None]:
    """A list of variant objects (Vitrine's own shape, or any with sku/price/colour/size keys) ->
    variants, the problems met (bad prices), and the currency their prices named."""
    if not isinstance(value, list):
        return (), [], None
    variants: list[Variant] = []
    problems: list[str] = []
    currencies: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            continue
        sku = _text(item.get("sku") or item.get("id") or item.get("code") or item.get("variant_id"))
        if not sku or sku in seen:
            sku = f"{product_id}-{index + 1}"
        seen.add(sku)
        named = item.get("options")
        options = {option_name(str(k)): _text(v) for k, v in named.items() if _text(v)} \
            if isinstance(named, dict) else {}
        for key, raw in item.items():
            name = option_name(key)
            if key not in _VARIANT_KEYS and name in ("colour", "size") and _text(raw):
                options.setdefault(name, _text(raw))
        price = None
        try:
            money = parse_money(item.get("price"))
            if money is not None:
                price = money.amount
                if money.currency:
                    currencies.append(money.currency)
        except (ValueError, TypeError):
            problems.append(f"variant {sku}: bad price {_text(item.get('price'))[:40]!r}")
        available = parse_availability(
            item["available"] if "available" in item else item.get("availability", item.get("in_stock")))
        images = parse_image_refs(item.get("images") or item.get("image") or item.get("image_url")
                                  or item.get("image_link"))
        extra = {clean_text(k): clean_value(v) for k, v in item.items()
                 if k not in _VARIANT_KEYS and option_name(k) not in options and _text(v) != ""}
        variants.append(Variant(sku=clean_text(sku), title=html_to_text(_text(item.get("title") or item.get("name")),
                                                                         single_line=True),
                                options=options, price=price, available=available, image_refs=images,
                                attributes=extra))
    return tuple(variants), problems, currencies[0] if currencies else None


def _categories(value: Any) -> list[str]:
    if isinstance(value, list):
        return [t for t in (_text(v) for v in value) if t]
    text = _text(value)
    return [p.strip() for p in text.split("|") if p.strip()] if text else []


def to_record(number: int, row: RowOrError, columns: ColumnMap) -> tuple[ProductRecord | None, list[Problem]]:
    """Normalises one row; returns (None, problems) when the row cannot be ingested."""
    if isinstance(row, BadRow):
        return None, [Problem(number, None, "row", row.message)]
    problems: list[Problem] = []
    id_column = columns.source("id")
    raw_id = lookup(row, id_column) if id_column else None
    product_id = "" if raw_id is None else str(raw_id).strip()
    try:
        check_product_id(product_id)
    except InvalidInput as exc:
        shown = clean_text(product_id[:40]) or None
        return None, [Problem(number, shown, "id", exc.message)]

    def get(field_name: str) -> Any:
        column = columns.source(field_name)
        return lookup(row, column) if column else None

    attributes = {
        clean_text(key): clean_value(value) for key, value in row.items()
        if key not in columns.mapped and key not in ("variants", "categories") and _text(value) != ""
    }
    price: float | None = None
    try:
        money = parse_money(get("price"))
        if money is not None:
            price = money.amount
            if money.currency and "currency" not in attributes:
                attributes["currency"] = money.currency
    except (ValueError, TypeError):
        problems.append(Problem(number, product_id, "price", f"bad price {_text(get('price'))[:40]!r}", "warning"))

    variants, variant_problems, currency = parse_variants(row.get("variants"), product_id)
    if currency and "currency" not in attributes:
        attributes["currency"] = currency
    problems += [Problem(number, product_id, "variants", message, "warning") for message in variant_problems]
    if price is None:  # a product's price is its lowest variant's ("from 39.00")
        prices = [v.price for v in variants if v.price is not None]
        price = min(prices) if prices else None

    category_raw = _text(get("category"))
    paths = _categories(row.get("categories")) if isinstance(row.get("categories"), list) else []
    if "|" in category_raw and not paths:
        paths = _categories(category_raw)
    if paths:
        category = _leaf_category(category_raw) if category_raw and "|" not in category_raw else choose_category(paths)
    else:
        category = _leaf_category(category_raw)
        if category != category_raw:
            attributes.setdefault("category_path", category_raw)
    colour = _text(get("colour")) or next((v.colour for v in variants if v.colour), "")
    refs = list(parse_image_refs(get("images")))
    refs += [ref for v in variants for ref in v.image_refs if ref not in refs]
    record = ProductRecord(
        id=product_id,
        title=html_to_text(_text(get("title")), single_line=True),
        description=html_to_text(_text(get("description"))),
        category=category,
        colour=colour,
        price=price,
        image_refs=tuple(dict.fromkeys(refs)),
        attributes=attributes,
        row=number,
        variants=variants,
        categories=tuple(paths),
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
