"""Query understanding: what a shopper's words ask beyond their meaning.

"red summer dress under 50" is a price ceiling, a colour and a category as much as it is words to
match. Here, offline and against the collection's own vocabulary:
- price phrases ("under 50", "below $80", "20-40", "between 20 and 40", "cheap") become a price range,
  a filter, and leave the searched text;
- misspelt words ("hoddie", "jaket") are corrected to the collection's words, and a synonym the
  collection does not use ("sneakers") becomes one it does ("trainers");
- words that name facet values (colours, categories, gender, brand, "size M") become soft boosts:
  products with those values rank higher, others are not dropped, so a catalog whose colours are
  spelt oddly loses nothing.
The result says what was understood, so a UI can show it and let the shopper remove any of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vitrine.catalog.cleaning import parse_money
from vitrine.index.store import RangeFilter
from vitrine.search.vocabulary import UNDERSTOOD_FIELDS, Vocabulary
from vitrine.search.words import BUILTIN_SYNONYMS, GENDER_WORDS, STOPWORDS, fold, singular, synonym_map, tokens

# What a shopper can take back, one chip each: "price", a facet field, "spelling" or "synonyms".
KINDS = ("price", *UNDERSTOOD_FIELDS, "spelling", "synonyms")
CHEAP_QUANTILE, DEAR_QUANTILE = 0.25, 0.75

_NUMBER = r"(\d{1,3}(?:[.,]\d{3})+(?:[.,]\d{1,2})?|\d{1,7}(?:[.,]\d{1,2})?)"  # 1.299,00 / 1,299 / 49.99
_MONEY = rf"(?:[$€£]\s?)?{_NUMBER}\s?(?:[$€£]|usd|eur|gbp|dollars?|euros?|pounds?|bucks)?"
_LEAD = r"(?:(?:priced|costing|that costs?|for|at|price)\s+)?"
_PRICE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), kind) for pattern, kind in (
        (rf"\b{_LEAD}between\s+{_MONEY}\s+and\s+{_MONEY}", "range"),
        (rf"\b{_LEAD}from\s+{_MONEY}\s+to\s+{_MONEY}", "range"),
        (rf"(?<![\w.]){_LEAD}{_MONEY}\s*(?:-|–|to)\s*{_MONEY}(?![\w.])", "range"),
        (rf"\b{_LEAD}(?:under|below|less\s+than|cheaper\s+than|up\s+to|max(?:imum)?|at\s+most|within|<=?)\s*{_MONEY}",
         "high"),
        (rf"(?<![\w.]){_LEAD}{_MONEY}\s+(?:or\s+less|and\s+(?:under|below|less))\b", "high"),
        (rf"\b{_LEAD}(?:over|above|more\s+than|at\s+least|min(?:imum)?|from|starting\s+at|>=?)\s*{_MONEY}", "low"),
        (rf"(?<![\w.]){_LEAD}{_MONEY}\s*(?:\+|or\s+more|and\s+(?:up|above|over)\b)", "low"),
        (r"\b(?:cheap(?:est)?|budget|affordable|inexpensive|bargains?|low[\s-]cost)\b", "cheap"),
        (r"\b(?:expensive|luxury|luxurious|premium|high[\s-]end|designer)\b", "dear"),
    )
)
_SIZE = re.compile(r"\bsize\s+([a-z0-9]{1,5})\b", re.IGNORECASE)
_SYNONYMS = synonym_map(BUILTIN_SYNONYMS)


@dataclass(frozen=True)
class Understanding:
    text: str | None  # what is searched: words corrected, synonyms resolved, price phrases removed
    price: RangeFilter | None = None
    price_words: str | None = None  # "cheap": the range came from a word, not numbers
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # field -> what the shopper sees
    values: Mapping[str, frozenset[str]] = field(default_factory=dict)  # field -> facet values boosted
    corrected: Mapping[str, str] = field(default_factory=dict)
    synonyms: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.price is not None:
            price = {k: v for k, v in (("low", self.price.low), ("high", self.price.high)) if v is not None}
            found["price"] = price | ({"words": self.price_words} if self.price_words else {})
        found.update({k: list(v) for k, v in self.labels.items()})
        if self.corrected:
            found["spelling"] = dict(self.corrected)
        if self.synonyms:
            found["synonyms"] = dict(self.synonyms)
        return found


def understand(text: str, vocabulary: Vocabulary, *, ignore: Collection[str] = (), price_given: bool = False,
               is_word: Callable[[str], bool] | None = None) -> Understanding:
    """What `text` asks of a collection with this vocabulary. `ignore`: kinds to leave as plain words;
    `price_given`: the caller filters on price already, so price words are left alone; `is_word`: says
    whether the collection's keyword index holds a word anywhere (descriptions too), so a real word
    the titles never use is not "corrected"."""
    price = None
    price_words = None
    if "price" not in ignore and not price_given:
        text, price, price_words = _take_price(text, vocabulary)
    corrected: dict[str, str] = {}
    replaced: dict[str, str] = {}
    groups = _own_synonyms(vocabulary.synonyms)
    if "spelling" not in ignore or "synonyms" not in ignore:
        text = _resolve_words(text, vocabulary, corrected if "spelling" not in ignore else None,
                              replaced if "synonyms" not in ignore else None, groups, is_word)
    labels, values = _facet_words(text, vocabulary, ignore, groups)
    cleaned = re.sub(r"\s+", " ", text).strip(" ,;-")
    return Understanding(text=cleaned or None, price=price, price_words=price_words, labels=labels,
                         values=values, corrected=corrected, synonyms=replaced)


def _take_price(text: str, vocabulary: Vocabulary) -> tuple[str, RangeFilter | None, str | None]:
    for pattern, kind in _PRICE_PATTERNS:
        match = pattern.search(text)
        if match is None:
            continue
        rest = text[: match.start()] + " " + text[match.end() :]
        if kind in ("cheap", "dear"):
            bound = vocabulary.price_quantile(CHEAP_QUANTILE if kind == "cheap" else DEAR_QUANTILE)
            if bound is None:  # no prices: the word stays a word
                continue
            bound = round(bound, 2)
            found = RangeFilter(high=bound) if kind == "cheap" else RangeFilter(low=bound)
            return rest, found, match.group(0).strip().lower()
        numbers = [_amount(g) for g in match.groups() if g is not None]
        if kind == "range":
            if len(numbers) != 2 or _size_context(text, match.start()):
                continue
            low, high = sorted(numbers)
            return rest, RangeFilter(low=low, high=high), None
        return rest, RangeFilter(high=numbers[0]) if kind == "high" else RangeFilter(low=numbers[0]), None
    return text, None, None


def _amount(written: str) -> float:
    """"1.299,00", "1,299", "49.99", "12,5" as the shopper meant them (the catalog's own rules)."""
    money = parse_money(written)
    return money.amount if money is not None else float(written.replace(",", "."))


def _size_context(text: str, at: int) -> bool:
    """"size 10-12" is a size, not a price."""
    return bool(re.search(r"\b(?:size|sizes|eu|uk|us)\s*$", text[:at], re.IGNORECASE))


Groups = Mapping[tuple[str, ...], list[tuple[str, ...]]]


def _own_synonyms(groups: Sequence[Sequence[str]]) -> dict[tuple[str, ...], list[tuple[str, ...]]]:
    if not groups:
        return _SYNONYMS
    merged = {k: list(v) for k, v in _SYNONYMS.items()}
    for key, others in synonym_map(groups).items():
        merged.setdefault(key, [])
        merged[key] = list(dict.fromkeys([*others, *merged[key]]))  # the collection's own come first
    return merged


def _resolve_words(text: str, vocabulary: Vocabulary, corrected: dict[str, str] | None,
                   replaced: dict[str, str] | None, groups: Groups,
                   is_word: Callable[[str], bool] | None) -> str:
    """Corrects unknown words and swaps unused synonyms for used ones, keeping the rest of the text."""
    words = re.findall(r"\S+", text)
    out: list[str] = []
    i = 0
    while i < len(words):
        done = False
        if replaced is not None:
            for n in (2, 1):  # a synonym phrase the collection never uses, for one it does
                chunk = " ".join(words[i : i + n])
                key = tuple(tokens(chunk))
                if len(words[i : i + n]) < n or not key or key not in groups or _used(key, vocabulary):
                    continue
                used = next((p for p in groups[key] if _used(p, vocabulary)), None)
                if used is not None:
                    plural = key != tuple(re.findall(r"[a-z0-9]+", fold(chunk)))  # keep the shopper's number
                    spelled = " ".join(vocabulary.surface.get(t, t) if plural else t for t in used)
                    replaced[chunk] = spelled
                    out.append(spelled)
                    i += n
                    done = True
                    break
        if done:
            continue
        word = words[i]
        key = tuple(tokens(word))
        if corrected is not None and len(key) == 1 and key[0] not in GENDER_WORDS and key not in groups:
            fix = vocabulary.correction(key[0])
            if fix is not None and not (is_word is not None and is_word(fold(word).strip(".,;:!?"))):
                plural = singular(key[0]) != re.sub(r"[^a-z0-9]", "", fold(word))  # keep the shopper's number
                spelled = vocabulary.surface.get(fix, fix) if plural else fix
                corrected[word] = spelled
                word = spelled
        out.append(word)
        i += 1
    return " ".join(out)


def _used(phrase: tuple[str, ...], vocabulary: Vocabulary) -> bool:
    return all(vocabulary.knows(t) for t in phrase) and any(vocabulary.words[t] > 0 for t in phrase)


def _facet_words(text: str, vocabulary: Vocabulary, ignore: Collection[str], groups: Groups
                 ) -> tuple[dict[str, tuple[str, ...]], dict[str, frozenset[str]]]:
    """Facet values named in the text: the longest phrase first, each word used once."""
    labels: dict[str, list[str]] = {}
    values: dict[str, set[str]] = {}

    def found(name: str, label: str, matched: Collection[str]) -> None:
        if name in ignore:
            return
        if label not in labels.setdefault(name, []):
            labels[name].append(label)
        values.setdefault(name, set()).update(matched)

    sizes = vocabulary.phrases.get("size", {})
    for match in _SIZE.finditer(text):
        phrase = sizes.get((singular(fold(match.group(1))),)) or sizes.get((fold(match.group(1)),))
        if phrase is not None:
            found("size", phrase.label, phrase.values)
    text = _SIZE.sub(" ", text)
    words = tokens(text)
    i = 0
    while i < len(words):
        if words[i] in STOPWORDS:
            i += 1
            continue
        for n in (3, 2, 1):
            key = tuple(words[i : i + n])
            if len(key) < n:
                continue
            hit = _lookup(key, vocabulary, groups)
            if hit is not None:
                found(*hit)
                i += n
                break
        else:
            i += 1
    return ({k: tuple(v) for k, v in labels.items() if v},
            {k: frozenset(v) for k, v in values.items() if v})


def _lookup(key: tuple[str, ...], vocabulary: Vocabulary,
            groups: Groups) -> tuple[str, str, set[str]] | None:
    """(field, label, values) that a phrase names, trying its gender reading and synonyms too."""
    readings = [key]
    if len(key) == 1 and key[0] in GENDER_WORDS:
        readings.append((GENDER_WORDS[key[0]],))
    readings += groups.get(key, [])
    for name in UNDERSTOOD_FIELDS:
        if name == "size":  # sizes only after the word "size": "m" or "s" alone are not sizes
            continue
        table = vocabulary.phrases.get(name, {})
        for reading in readings:
            phrase = table.get(reading)
            if phrase is not None:
                return name, phrase.label, phrase.values
    return None
