"""A small LRU for search results and query text vectors. Result keys hold each searched
collection's generation, so any write to a collection makes its old entries unreachable."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import asdict
from typing import Generic, TypeVar

from vitrine.search.query import Query

V = TypeVar("V")


class LruCache(Generic[V]):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: V) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def query_key(query: Query, generations: list[tuple[str, int]]) -> str:
    """A stable key for a query over collections at given generations (images by content hash)."""
    fields = asdict(query)
    fields["image"] = hashlib.sha256(query.image).hexdigest() if query.image is not None else None
    return json.dumps([fields, generations], sort_keys=True, default=str)
