"""A collection's own words, for understanding its shoppers: which words it uses (to correct typos
against), which phrases name its facet values ("navy blue", "hoodies", "men"), and its price spread
(what "cheap" means here). Built once per collection generation, in memory."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vitrine.arrays import Array
from vitrine.search.words import FASHION_WORDS, STOPWORDS, damerau_within_one, fold, singular, tokens

# Facet fields a query word can name, in the order ties are settled ("orange" is a colour first).
UNDERSTOOD_FIELDS = ("colour", "gender", "category", "brand", "size")
_PARTS = re.compile(r"\s*(?:/|&|,|\+|\band\b)\s*")
_SPELLED = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
MIN_CORRECTABLE = 4  # shorter words have too many neighbours one edit away


@dataclass
class Phrase:
    """Facet values a phrase names, and the label shown for it."""

    label: str
    values: set[str] = field(default_factory=set)


@dataclass
class CountedWords:
    """The products' words: how many products use each (folded, singular), and its most common spelling."""

    words: dict[str, int]
    surface: dict[str, str]


def count_words(texts: Iterable[str]) -> CountedWords:
    words: Counter[str] = Counter()
    spellings: dict[str, Counter[str]] = {}
    for text in texts:
        seen = set()
        for word in _SPELLED.findall(text.lower()):  # "t-shirt" is one word, spelt with its hyphen
            key = singular(fold(word))
            spellings.setdefault(key, Counter())[word] += 1
            seen.add(key)
        words.update(seen)
    return CountedWords(words=dict(words), surface={w: c.most_common(1)[0][0] for w, c in spellings.items()})


@dataclass
class Vocabulary:
    words: Counter[str]  # folded singular word -> products using it
    surface: dict[str, str]  # folded singular word -> how the catalog most often spells it
    phrases: dict[str, dict[tuple[str, ...], Phrase]]  # field -> tokens -> values
    prices: Array  # sorted, finite
    synonyms: list[list[str]] = field(default_factory=list)  # the collection's own groups
    _deletes: dict[str, list[str]] | None = None

    @classmethod
    def build(cls, texts: Iterable[str], facets: Mapping[str, Sequence[str]], prices: Array | None,
              synonyms: Sequence[Sequence[str]] = ()) -> Vocabulary:
        return cls.from_words(count_words(texts), facets, prices, synonyms)

    @classmethod
    def from_words(cls, counted: CountedWords, facets: Mapping[str, Sequence[str]], prices: Array | None,
                   synonyms: Sequence[Sequence[str]] = ()) -> Vocabulary:
        """From the products' words as `count_words` counts them (the slow part, which a snapshot keeps)."""
        words = Counter(counted.words)
        surface = dict(counted.surface)
        phrases: dict[str, dict[tuple[str, ...], Phrase]] = {}
        for name in UNDERSTOOD_FIELDS:
            for value in facets.get(name, ()):
                _add_value(phrases.setdefault(name, {}), name, value)
                for word in tokens(value):
                    words[word] += 0  # known, so never "corrected"
                    surface.setdefault(word, word)
        finite = np.sort(prices[np.isfinite(prices)]) if prices is not None else np.zeros(0, dtype=np.float32)
        return cls(words=words, surface=surface, phrases=phrases, prices=finite,
                   synonyms=[list(g) for g in synonyms])

    @classmethod
    def merge(cls, parts: Sequence[Vocabulary]) -> Vocabulary:
        """One vocabulary for a search over several collections."""
        if len(parts) == 1:
            return parts[0]
        words: Counter[str] = Counter()
        surface: dict[str, str] = {}
        phrases: dict[str, dict[tuple[str, ...], Phrase]] = {}
        for part in parts:
            words.update(part.words)
            for w, s in part.surface.items():
                surface.setdefault(w, s)
            for name, table in part.phrases.items():
                merged = phrases.setdefault(name, {})
                for key, phrase in table.items():
                    merged.setdefault(key, Phrase(phrase.label)).values.update(phrase.values)
        prices = np.sort(np.concatenate([p.prices for p in parts])) if parts else np.zeros(0, dtype=np.float32)
        groups = [g for part in parts for g in part.synonyms]
        return cls(words=words, surface=surface, phrases=phrases, prices=prices, synonyms=groups)

    def extended(self, tail: Vocabulary, synonyms: Sequence[Sequence[str]]) -> Vocabulary:
        """This vocabulary with the words, phrases and prices of products written since (`tail`): what a
        write costs instead of rebuilding it (2 s at 100k products). The words of products replaced or
        deleted since stay known until the next whole build: a known word is only never corrected."""
        merged = Vocabulary.merge([self, tail])
        merged.synonyms = [list(g) for g in synonyms]
        if self._deletes is not None:  # this one's correction index, with the new words added
            merged._deletes = dict(self._deletes)
            _add_deletes(merged._deletes, [w for w in tail.words if w not in self.words], copy=True)
        return merged

    def knows(self, word: str) -> bool:
        return word in self.words

    def correction(self, word: str) -> str | None:
        """The most used known word one edit from an unknown `word` (folded, singular), if any."""
        if len(word) < MIN_CORRECTABLE or word.isdigit() or word in self.words or word in STOPWORDS \
                or word in FASHION_WORDS:
            return None
        deletes = self._delete_index()
        candidates = set(deletes.get(word, ()))
        for i in range(len(word)):
            shorter = word[:i] + word[i + 1 :]
            candidates.update(deletes.get(shorter, ()))
            if shorter in self.words:
                candidates.add(shorter)
        fits = [c for c in candidates if len(c) >= MIN_CORRECTABLE - 1 and damerau_within_one(word, c)]
        if not fits:
            return None
        return max(fits, key=lambda c: (self.words[c], c))

    def price_quantile(self, q: float) -> float | None:
        if len(self.prices) == 0:
            return None
        return float(np.quantile(self.prices, q))

    def _delete_index(self) -> dict[str, list[str]]:
        """Each word's one-letter deletions to the word (symmetric delete), built on first need."""
        if self._deletes is None:
            index: dict[str, list[str]] = {}
            _add_deletes(index, self.words, copy=False)
            self._deletes = index
        return self._deletes


def _add_deletes(index: dict[str, list[str]], words: Iterable[str], *, copy: bool) -> None:
    """Adds each word under its one-letter deletions; `copy`: the lists are shared with another index."""
    for word in words:
        if len(word) < MIN_CORRECTABLE - 1 or word.isdigit():
            continue
        for i in range(len(word)):
            key = word[:i] + word[i + 1 :]
            if copy:
                index[key] = [*index.get(key, ()), word]
            else:
                index.setdefault(key, []).append(word)


def _add_value(table: dict[tuple[str, ...], Phrase], name: str, value: str) -> None:
    """Registers the phrases that name `value`: the whole value and, for categories, each part of its
    path ("Men/Tops/Hoodies & Sweatshirts": "men", "top", "hoodie", "sweatshirt"); for categories and
    colours also a part's last word ("Casual Shoes": "shoe"; "Navy Blue": "blue")."""
    whole = tuple(tokens(value))
    if whole and not all(t in STOPWORDS for t in whole):
        table.setdefault(whole, Phrase(value.strip())).values.add(value)
    if name not in ("category", "colour"):
        return
    for part in _PARTS.split(value):
        key = tuple(tokens(part))
        if not key or all(t in STOPWORDS for t in key):
            continue
        table.setdefault(key, Phrase(part.strip())).values.add(value)
        if len(key) > 1 and len(key[-1]) > 2:
            label = part.strip().split()[-1]
            table.setdefault((key[-1],), Phrase(label.capitalize() if label.islower() else label)).values.add(value)
