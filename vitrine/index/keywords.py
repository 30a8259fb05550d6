"""The keyword signal, the same in every backend: a store finds which products hold a word (its
postings); the score is the share of the query's words a product holds.

Unlike BM25 the score does not depend on the collection's statistics, so scores compare across
collections and `min_score` means the same everywhere; on the dev ground truth it ranks as well as
BM25 (docs/benchmarks.md)."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from vitrine.arrays import Array

STOPWORDS = frozenset(
    "a an and are as at be by for from in is it of on or the to with under over below above than".split()
)
WEAK_MATCH = 0.5  # a word found only in the description or attributes
_MAX_WORDS = 32
DENSE_ROWS = 20_000  # rows asked for past which (when they are a 16th of all rows or more) scores are summed densely
_CACHE_TERMS = 4096

Postings = tuple[Array, Array]  # (rows holding the word anywhere, rows holding it in a strong column)


WORD = re.compile(r"[^\W_]+")  # letters and digits: "navy_blue" is two words, as SQLite's tokenizer has it


def keyword_words(query: str) -> list[str]:
    """The query's distinct words, lower case, stop words dropped."""
    words = [w for w in WORD.findall(query.lower()) if w not in STOPWORDS]
    return list(dict.fromkeys(words))[:_MAX_WORDS]


def keyword_scores(words: list[str], postings: Callable[[str], Postings]) -> tuple[Array, Array]:
    """(rows, scores in (0, 1]) of the products holding any of `words`."""
    if not words:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    found = [postings(word) for word in words]
    rows = np.concatenate([p for pair in found for p in pair])
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    # Any-column matches weigh WEAK_MATCH; strong-column matches (a subset) add the rest.
    weights = np.concatenate([np.full(len(any_rows), WEAK_MATCH, dtype=np.float32) if i == 0
                              else np.full(len(strong_rows), 1.0 - WEAK_MATCH, dtype=np.float32)
                              for any_rows, strong_rows in found for i in (0, 1)])
    per_row = np.bincount(rows, weights=weights)  # row ids are dense: no sort needed
    hits = np.flatnonzero(per_row)
    return hits.astype(np.int64), (per_row[hits] / len(words)).astype(np.float32)


def keyword_scores_of(words: list[str], postings: Callable[[str], Postings], rows: Array) -> Array:
    """The same scores as `keyword_scores`, for the given rows only (0 where a row holds no word).

    The searcher needs them for a few thousand candidates: each is looked up in each word's postings,
    where adding up every posting cost 13 ms per query at a million products (a colour word is in
    100k+ of them)."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros(len(rows), dtype=np.float64)  # summed as keyword_scores sums them: the same float32 scores
    if not words:
        return out.astype(np.float32)
    found = [postings(word) for word in words]
    if len(rows) >= DENSE_ROWS and len(rows) * 16 >= int(rows.max()) + 1:
        # A broad filter's products (250k of a million): every row's score added up once, then read at
        # theirs (5 ms), where looking each of them up in each list took 27 ms.
        lists = [p for pair in found for p in pair]
        per_row = np.bincount(np.concatenate(lists), minlength=int(rows.max()) + 1, weights=np.concatenate(
            [np.full(len(p), WEAK_MATCH if i % 2 == 0 else 1.0 - WEAK_MATCH) for i, p in enumerate(lists)]))
        dense: Array = (per_row[rows] / len(words)).astype(np.float32)
        return dense
    for any_rows, strong_rows in found:
        for held, weight in ((any_rows, WEAK_MATCH), (strong_rows, 1.0 - WEAK_MATCH)):
            if len(held):
                at = np.minimum(np.searchsorted(held, rows), len(held) - 1)
                out += np.where(held[at] == rows, weight, 0.0)
    scores: Array = (out / len(words)).astype(np.float32)
    return scores


def _ascending(postings: Postings) -> Postings:
    """Both row lists sorted (as lookups need), without sorting lists that already are."""
    def sort(rows: Array) -> Array:
        return rows if len(rows) < 2 or bool((rows[1:] >= rows[:-1]).all()) else np.sort(rows)

    return sort(postings[0]), sort(postings[1])


class PostingCache:
    """Postings kept per generation, each list ascending: query words repeat (colours, garment
    types), and their row lists are the keyword signal's cost."""

    def __init__(self, size: int = _CACHE_TERMS) -> None:
        self._size = size
        self._held: OrderedDict[str, tuple[int, Postings]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, word: str, generation: int, fetch: Callable[[], Postings]) -> Postings:
        with self._lock:
            cached = self._held.get(word)
            if cached is not None and cached[0] == generation:
                self._held.move_to_end(word)
                return cached[1]
        postings = _ascending(fetch())
        with self._lock:
            self._held[word] = (generation, postings)
            while len(self._held) > self._size:
                self._held.popitem(last=False)
        return postings
