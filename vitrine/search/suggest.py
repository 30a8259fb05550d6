"""Search-as-you-type: completions of what a shopper has typed so far, from the collection's own
categories, words and product titles. Sorted arrays and binary search, built once per collection
generation, so a keystroke costs microseconds (benchmarks/suggest_latency.py)."""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from vitrine.search.words import STOPWORDS, fold

MAX_SUGGESTIONS = 20
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def _key(text: str) -> str:
    return " ".join(_WORD.findall(fold(text)))


@dataclass
class Suggester:
    categories: list[tuple[str, str, int]]  # (key, label, products), sorted by key; every word start indexed
    words: list[tuple[str, int]]  # (folded word, products), sorted
    titles: list[tuple[str, str, str]]  # (key from one of its words on, title, product id), sorted

    @classmethod
    def build(cls, products: Iterable[tuple[str, str]], categories: Sequence[tuple[str, int]]) -> Suggester:
        """`products`: (id, title); `categories`: (value, products with it)."""
        words: Counter[str] = Counter()
        titles: list[tuple[str, str, str]] = []
        for pid, title in products:
            key = _key(title)
            parts = key.split()
            words.update(set(parts))
            titles += [(" ".join(parts[i:]), title, pid) for i in range(len(parts)) if parts[i] not in STOPWORDS]
        indexed = []
        for value, count in categories:
            parts = _key(value).split()
            indexed += [(" ".join(parts[i:]), value, count) for i in range(len(parts))]
        return cls(categories=sorted(indexed), words=sorted(words.items()), titles=sorted(titles))

    def suggest(self, typed: str, limit: int = 8) -> list[dict[str, Any]]:
        """Categories whose name has a word starting as typed, then the typed words with the last one
        completed (most used first), then product titles holding the typed text from a word start."""
        key = _key(typed)
        if not key:
            return []
        found: list[dict[str, Any]] = []
        seen: set[str] = set()

        def add(item: dict[str, Any]) -> None:
            if item["text"].lower() not in seen and len(found) < limit:
                seen.add(item["text"].lower())
                found.append(item)

        for _, label, count in sorted(_prefixed(self.categories, key), key=lambda c: -c[2])[:3]:
            add({"text": label, "kind": "category", "count": count})
        head, _, last = key.rpartition(" ")
        completions = sorted(_prefixed(self.words, last), key=lambda w: -w[1])
        for word, count in completions[:3]:
            if word != last or not head:
                add({"text": f"{head} {word}".strip(), "kind": "query", "count": count})
        for _, title, pid in _prefixed(self.titles, key)[: limit * 2]:
            add({"text": title, "kind": "product", "id": pid})
        return found


def _prefixed(items: list[Any], prefix: str) -> list[Any]:
    """The items (sorted tuples whose first element is a key) whose key starts with `prefix`."""
    start = bisect.bisect_left(items, (prefix,))
    end = bisect.bisect_left(items, (prefix + "\U0010ffff",))
    return items[start:end]
