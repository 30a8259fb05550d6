"""A loaded collection brought up to date without rebuilding it: the products written since it was
loaded become a small tail, searched beside it, and the products they replace or that were deleted
are marked dead in it.

Rebuilding is what a write used to cost: every photo's search and cross-modal vectors, the int8
copies and, above the exact limit, the HNSW graphs, recomputed from the store (26 s at 100k
products, 14 minutes at 1M). A tail costs what its own products cost, plus concatenating the small
per-product arrays (ids, rows, prices, facets): a change is searchable within a second. The big
tables are never copied: `StackedTable` reads the base's rows and then the tail's as one table.

The tail is rebuilt from the store's change log at each generation, so it holds every product
written since the base; once it grows past TAIL_MERGE products the engine rebuilds the base in the
background. Past `tail_limit` (or when the base is too old for the log) no tail is built: searches read
the collection as it was until the rebuild is done (the engine's `_load_vectors`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.index.mapped import take_rows
from vitrine.index.quantized import QuantizedTable
from vitrine.index.store import CollectionStore, VectorData, merge_facets
from vitrine.index.vectors import CollectionVectors, Tail
from vitrine.models.heads import CrossModal

TAIL_MERGE = 2_000  # tail products past which the base is rebuilt in the background
TAIL_MAX = 20_000  # ... and past which none is built (searches read an older generation until the rebuild)


def tail_limit(base_size: int) -> int:
    """The largest tail worth building: up to half the base (beyond it, a rebuild costs about the same)."""
    return min(TAIL_MAX, base_size // 2)


class StackedTable:
    """A base table's rows followed by a tail's, read as one (n, d) table without copying either."""

    def __init__(self, base: Array, tail: Array) -> None:
        self.base, self.tail = base, tail
        self.split = len(base)
        self.shape = (len(base) + len(tail), base.shape[1])
        self.dtype = base.dtype
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def __matmul__(self, other: Array) -> Array:
        out: Array = np.concatenate([self.base @ other, self.tail @ other])
        return out

    def __getitem__(self, key: Any) -> Array:
        if isinstance(key, int | np.integer):
            k = int(key) + (len(self) if int(key) < 0 else 0)
            row: Array = self.base[k] if k < self.split else self.tail[k - self.split]
            return row
        if isinstance(key, slice):
            at = np.arange(*key.indices(len(self)))
        else:
            at = np.asarray(key)
            at = np.flatnonzero(at) if at.dtype == bool else at.astype(np.int64)
        out = np.empty((len(at), self.shape[1]), dtype=self.dtype)
        low = at < self.split
        out[low] = take_rows(self.base, at[low])
        out[~low] = self.tail[at[~low] - self.split]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> Array:
        whole: Array = np.concatenate([self.base, self.tail])
        return whole if dtype is None else whole.astype(dtype)


class StackedQuantized(QuantizedTable):
    """Two int8 tables scanned one after the other, as one."""

    def __init__(self, base: QuantizedTable, tail: QuantizedTable) -> None:  # noqa: D107 - no parent init: no table
        self.base, self.tail = base, tail
        self.size, self.dim = base.size + tail.size, base.dim

    @property
    def nbytes(self) -> int:
        return self.base.nbytes + self.tail.nbytes

    def scores(self, query: Array) -> Array:
        out: Array = np.concatenate([self.base.scores(query), self.tail.scores(query)])
        return out


def _stack(base: Any, tail: Any) -> Any:
    """One table of both, copying neither; a side with no rows (or no width) gives way to the other."""
    if base is None or tail is None:
        return base if tail is None else tail
    if len(tail) == 0:
        return base
    if len(base) == 0:
        return tail
    return StackedTable(base, tail)


def combine(base: CollectionVectors, tail: CollectionVectors, removed: Array, generation: int) -> CollectionVectors:
    """`base` with `tail` after it: the base's products that the tail rewrites, or that were removed
    (`removed`: store rows), are dead in it."""
    n0 = base.size
    b, t = base.data, tail.data
    dead = np.zeros(n0 + tail.size, dtype=bool)
    found, at = base.locate_rows(np.concatenate([t.rows, np.asarray(removed, dtype=np.int64)]))
    dead[at[found]] = True
    live = np.flatnonzero(~dead)
    rows = np.concatenate([b.rows, t.rows])
    order = np.argsort(rows[live], kind="stable")
    prices = None if b.prices is None or t.prices is None else np.concatenate([b.prices, t.prices])
    data = VectorData(
        rows=rows, ids=[*b.ids, *t.ids], text_vectors=_stack(b.text_vectors, t.text_vectors),
        image_features=b.image_features[:0],
        image_product=np.concatenate([b.image_product, t.image_product + n0]).astype(np.int32),
        image_position=np.concatenate([b.image_position, t.image_position]),
        facets=merge_facets([(b.facets, 0), (t.facets, n0)]), prices=prices,
    )
    quantized = None
    if base.quantized is not None and tail.quantized is not None:
        quantized = {name: table if name not in tail.quantized else StackedQuantized(table, tail.quantized[name])
                     for name, table in base.quantized.items()}
    n_base_images = len(base.image_vectors)
    return CollectionVectors(
        generation=generation, data=data, image_vectors=_stack(base.image_vectors, tail.image_vectors),
        image_start=np.concatenate([base.image_start, tail.image_start + n_base_images]),
        image_count=np.concatenate([base.image_count, tail.image_count]),
        heads=base.heads, xmodal_vectors=_stack(base.xmodal_vectors, tail.xmodal_vectors),
        text_ann=base.text_ann, image_ann=base.image_ann, xmodal_ann=base.xmodal_ann, quantized=quantized,
        partitions=base.partitions,
        one_image_each=base.one_image_each and (tail.one_image_each or tail.size == 0),
        tail=Tail(base=base, start=n0, dead=dead, live=live, sorted_rows=rows[live][order],
                  sorted_positions=live[order],
                  positions={pid: n0 + i for i, pid in enumerate(t.ids)}),
    )


def catch_up(base: CollectionVectors, store: CollectionStore, generation: int, *, heads: CrossModal | None,
             facet_fields: tuple[str, ...]) -> CollectionVectors | None:
    """`base` brought to `generation` with a tail of what was written since; None when a rebuild is
    due instead (the tail would be too large, or the store's change log does not reach back to it)."""
    if base.generation == generation:
        return base
    removed = store.removed_since(base.generation)
    if removed is None or store.changed_count(base.generation) > tail_limit(base.size):
        return None  # counted first: a bulk change of 500k products is 2.5 GB of raw features to read
    changed = store.load_vectors(facet_fields, changed_since=base.generation)
    tail = CollectionVectors.build(changed, generation=generation, exact_limit=len(changed.ids), heads=heads,
                                   quantize=base.quantized is not None)
    return combine(base, tail, removed, generation)
