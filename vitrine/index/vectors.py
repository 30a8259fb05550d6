"""In-memory vectors of one collection. Up to a size limit every product is scored: full scans read
int8 copies of the tables (`approximate=True`, a quarter of the memory traffic), and the searcher
re-scores its best candidates exactly from the float32 tables. Above the limit, faiss HNSW proposes
candidates; the first pass scores them from the graphs' own 8-bit codes, and the searcher re-scores
its best exactly, reading their float32 rows from the snapshot's files (index/mapped.py). Photos'
cross-modal vectors are computed here from the stored raw features with the collection's active
heads, so switching a model version costs a reload, not a re-ingest; the raw features are then let
go (whoever needs them, training or label evaluation, reads them from the store)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vitrine.arrays import Array, spans
from vitrine.index.mapped import row_blocks, take_rows
from vitrine.index.partitions import Partition
from vitrine.index.quantized import GraphCodes, QuantizedTable
from vitrine.index.store import VectorData
from vitrine.models.heads import CrossModal
from vitrine.search.scoring import best_per_product, facet_counts, image_search_vectors

log = logging.getLogger(__name__)

HNSW_NEIGHBOURS = 32
HNSW_EF_SEARCH = 128
HNSW_TRAIN_SAMPLE = 100_000  # rows that set the 8-bit codes' range per dimension
NEAR_ENOUGH = 200  # a broad filter's products among a query's graph candidates, below which it lies away from them
KEPT_POSITIONS_BYTES = 64 * 2**20  # filtered positions kept per snapshot (a 56k-product filter holds 0.45 MB)


def build_hnsw(vectors: Array, rows: Array | None = None) -> Any:
    """HNSW over 8-bit copies of the vectors: a quarter of float32's size (1.3 GB instead of 5.1 GB for a
    million photos), built faster, and about as good at proposing candidates, which are scored exactly
    from the float32 tables anyway (scale.py at 1M: recall@10 0.985, against 0.987 over float32).
    `rows` (ascending): only those rows, the graph's ids counting them from 0."""
    import faiss

    every = np.arange(len(vectors)) if rows is None else np.asarray(rows, dtype=np.int64)
    dim = vectors.shape[1]
    index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit,  # type: ignore[arg-type]  # stubs
                              HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.hnsw.efSearch = HNSW_EF_SEARCH
    # A block at a time (`vectors` may be a snapshot's mapped table: it is read, not mapped, block by block)
    chosen = every if len(every) <= HNSW_TRAIN_SAMPLE else \
        every[np.sort(np.random.default_rng(0).choice(len(every), HNSW_TRAIN_SAMPLE, replace=False))]

    def taken(wanted: Array) -> Iterator[Array]:
        for start, block in row_blocks(vectors):
            low, high = np.searchsorted(wanted, [start, start + len(block)])
            if high > low:
                yield np.ascontiguousarray(block[wanted[low:high] - start], dtype=np.float32)

    sample = list(taken(chosen))
    index.train(np.concatenate(sample) if sample else np.zeros((0, dim), dtype=np.float32))
    del sample
    for block in taken(every):
        index.add(block)
    return index


def _among(found: Array, positions: Array) -> Array:
    """Which of `found` are in `positions` (ascending, unique)."""
    at = np.searchsorted(positions, found)
    inside: Array = at < len(positions)
    inside[inside] = positions[at[inside]] == found[inside]
    return inside


def image_groups(image_product: Array, n_products: int) -> tuple[Array, Array]:
    """Each product's first image and number of images, from the images' products (grouped, ascending)."""
    products = np.arange(n_products)
    start = np.searchsorted(image_product, products, side="left")
    return start, np.searchsorted(image_product, products, side="right") - start


def _in_chunks(compute: Callable[[Array], Array], rows: Array, chunk: int = 20_000) -> Array:
    """`compute(rows)` a block of rows at a time, into one array: the temporaries of a block, not of a
    million photos (several times the 5 GB of their raw features) are held at once."""
    first = compute(rows[:chunk])
    if len(rows) <= chunk:
        return first
    out = np.empty((len(rows), first.shape[1]), dtype=first.dtype)
    out[:chunk] = first
    for start in range(chunk, len(rows), chunk):
        out[start:start + chunk] = compute(rows[start:start + chunk])
    return out


@dataclass
class Tail:
    """What a collection updated in place of a rebuild holds beside its tables (index.updates)."""

    base: CollectionVectors  # the whole build (or snapshot) the tail follows
    start: int  # position of the tail's first product
    dead: Array  # (n_products,) bool: the base's products rewritten by the tail, or deleted
    live: Array  # positions of the others, ascending
    sorted_rows: Array  # store rows of the live products, ascending ...
    sorted_positions: Array  # ... and their positions
    positions: dict[str, int]  # the tail's products' positions by id


@dataclass
class CollectionVectors:
    generation: int
    data: VectorData
    image_vectors: Array  # (n_images, d) unit vectors
    image_start: Array  # (n_products,) index of each product's first image
    image_count: Array  # (n_products,) how many images each product has
    heads: CrossModal | None = None
    xmodal_vectors: Array | None = None  # (n_images, d) unit vectors in the shared space, when heads exist
    text_ann: Any = None
    image_ann: Any = None
    xmodal_ann: Any = None
    quantized: dict[str, QuantizedTable] | None = None  # "text", "image", "xmodal": for full scans
    one_image_each: bool = False  # then a photo's score is its product's: no per-product max
    tail: Tail | None = None  # products written since the tables were built (index.updates)
    partitions: list[Partition] = field(default_factory=list)  # graphs of common filter values' products
    _positions: dict[str, int] | None = None
    _facets_of_all: dict[str, dict[str, int]] = field(default_factory=dict)
    _holding: dict[tuple[str, str], Array] = field(default_factory=dict)
    _kept: OrderedDict[Hashable, Array] = field(default_factory=OrderedDict)
    _kept_lock: threading.Lock = field(default_factory=threading.Lock)
    _codes: dict[str, GraphCodes | None] = field(default_factory=dict)
    _facet_order: dict[str, tuple[Array | None, Array]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, data: VectorData, *, generation: int, exact_limit: int, heads: CrossModal | None = None,
        quantize: bool = True,
    ) -> CollectionVectors:
        image_vectors = _in_chunks(image_search_vectors, data.image_features) if len(data.image_features) else \
            np.zeros((0, 0), dtype=np.float32)
        start, count = image_groups(data.image_product, len(data.ids))
        xmodal = _in_chunks(heads.image_vectors, data.image_features) if heads is not None and \
            len(data.image_features) else None
        # The raw features are only needed to compute the vectors above (and to train, which reads the store):
        # not keeping them saves 5.3 KB a photo, a third of what a loaded collection holds.
        data.image_features = np.zeros((0, data.image_features.shape[1] if data.image_features.ndim == 2 else 0),
                                       dtype=np.float32)
        vectors = cls(generation=generation, data=data, image_vectors=image_vectors, image_start=start,
                      image_count=count, heads=heads, xmodal_vectors=xmodal,
                      one_image_each=len(image_vectors) == len(data.ids) and bool((count == 1).all()))
        if len(data.ids) <= exact_limit and quantize:
            tables = {"text": data.text_vectors, "image": image_vectors, "xmodal": xmodal}
            vectors.quantized = {k: QuantizedTable(v) for k, v in tables.items() if v is not None and v.size}
        elif len(data.ids) > exact_limit:
            log.info("building HNSW indexes", extra={"products": len(data.ids), "images": len(image_vectors)})
            vectors.text_ann = build_hnsw(data.text_vectors)
            vectors.image_ann = build_hnsw(image_vectors)
            if xmodal is not None:
                vectors.xmodal_ann = build_hnsw(xmodal)
        return vectors

    @property
    def size(self) -> int:
        return len(self.data.ids)

    @property
    def exact(self) -> bool:
        return self.text_ann is None

    @property
    def dead(self) -> Array | None:
        """(n_products,) bool: positions that hold no product any more (rewritten by the tail, or
        deleted); None when there are none. Full scans score them, and the searcher drops them."""
        return self.tail.dead if self.tail is not None else None

    def live_positions(self) -> Array:
        """Every product's position, ascending."""
        return np.arange(self.size) if self.tail is None else self.tail.live

    def product_ids(self) -> list[str]:
        """The ids of the products it holds (dead positions left out), in position order."""
        ids = self.data.ids
        return ids if self.tail is None else [ids[i] for i in self.tail.live.tolist()]

    @property
    def live_size(self) -> int:
        return self.size if self.tail is None else len(self.tail.live)

    def position_of(self, product_id: str) -> int | None:
        if self.tail is not None:
            at = self.tail.positions.get(product_id)
            if at is not None:
                return at
            at = self.tail.base.position_of(product_id)
            return None if at is None or self.tail.dead[at] else at
        if self._positions is None:
            self._positions = {pid: i for i, pid in enumerate(self.data.ids)}
        return self._positions.get(product_id)

    def positions_of_rows(self, rows: Array) -> Array:
        """Product positions (ascending) for store rows; rows unknown to this snapshot are dropped."""
        found, at = self.locate_rows(rows)
        positions: Array = np.unique(at[found])
        return positions

    def locate_rows(self, rows: Array) -> tuple[Array, Array]:
        """For each store row: whether this snapshot holds it, and its position if so.

        A binary search in the (ascending) row ids: a keyword query's few hundred rows cost
        microseconds, where intersecting with all rows sorted both arrays on every search.
        """
        rows = np.asarray(rows, dtype=np.int64)
        ordered = self.data.rows if self.tail is None else self.tail.sorted_rows
        at = np.searchsorted(ordered, rows)
        found = at < len(ordered)
        found[found] = ordered[at[found]] == rows[found]
        if self.tail is not None:
            at[found] = self.tail.sorted_positions[at[found]]
        return found, at

    def facet_counts(self, name: str, positions: Array) -> dict[str, int]:
        """Counts of a facet's values over the products at `positions` (unique); those of every product,
        which each unfiltered search asks for, are counted once per snapshot."""
        if self.tail is not None and len(positions):
            positions = positions[~self.tail.dead[positions]]
        every = len(positions) == self.live_size
        if every and name in self._facets_of_all:
            return self._facets_of_all[name]
        if len(positions) < self.size // 64:  # a few thousand candidates: their own entries, not a pass over all
            product_pos, codes, values = self.data.facets[name]
            entries = self._facet_entries(name, positions)
            return facet_counts(product_pos[entries], codes[entries], values, None)
        mask = None
        if not every or (self.tail is not None and self.tail.dead.any()):
            mask = np.zeros(self.size, dtype=bool)
            mask[positions] = True
        counts = facet_counts(*self.data.facets[name], mask)
        if every:
            self._facets_of_all[name] = counts
        return counts

    def _facet_entries(self, name: str, positions: Array) -> Array:
        """Indices of the facet's entries that belong to the products at `positions` (unique)."""
        if name not in self._facet_order:  # entries by product, found once per snapshot
            product_pos = np.asarray(self.data.facets[name][0])
            ascending = len(product_pos) < 2 or bool((product_pos[1:] >= product_pos[:-1]).all())
            order = None if ascending else np.argsort(product_pos, kind="stable")
            self._facet_order[name] = (order, product_pos if order is None else product_pos[order])
        order, by_product = self._facet_order[name]
        first = np.searchsorted(by_product, positions, side="left")
        counts = np.searchsorted(by_product, positions, side="right") - first
        entries = spans(first, counts)
        return entries if order is None else order[entries]

    def kept_positions(self, key: Hashable, find: Callable[[], Array]) -> Array:
        """`find()`'s positions (read-only), kept under `key` for as long as this snapshot lives; the
        least recently used go once they hold more than KEPT_POSITIONS_BYTES."""
        with self._kept_lock:
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
                return found
        found = np.asarray(find())
        found.flags.writeable = False
        with self._kept_lock:
            self._kept[key] = found
            held = sum(a.nbytes for a in self._kept.values())
            while held > KEPT_POSITIONS_BYTES and len(self._kept) > 1:
                held -= self._kept.popitem(last=False)[1].nbytes
        return found

    def holding(self, name: str, values: Collection[str]) -> Array:
        """Positions (unique, ascending) of the products that hold any of a facet's `values`. Each
        value's are found once per snapshot: understood queries ask for the same colours and types
        again and again, and finding them scans every product's values (3 ms at a million)."""
        product_pos, codes, known = self.data.facets[name]
        found: list[Array] = []
        for value in values:
            key = (name, value)
            if key not in self._holding:
                code = known.index(value) if value in known else -1
                self._holding[key] = np.unique(product_pos[codes == code]) if code >= 0 else np.zeros(0, np.int64)
            found.append(self._holding[key])
        return np.unique(np.concatenate(found)) if len(found) > 1 else (found[0] if found else np.zeros(0, np.int64))

    def text_scores(self, query: Array, positions: Array | None = None, *, approximate: bool = False) -> Array:
        """Cosine of each product's text vector (all products, or those at `positions`)."""
        if self.size == 0:  # an empty collection has no vector width to multiply with
            return np.zeros(0 if positions is None else len(positions), dtype=np.float32)
        if positions is None or self._scan_all("text", positions, approximate):
            scores = self._scan("text", self.data.text_vectors, query, approximate)
            return scores if positions is None else scores[positions]
        return self._gather_scores("text", self.data.text_vectors, query, positions, approximate)

    def image_scores(
        self, query: Array, positions: Array | None = None, *, shared: bool = False, approximate: bool = False
    ) -> tuple[Array, Array]:
        """Per product (all, or those at `positions`): the best image's cosine and that image's index.

        `shared`: score the photos' cross-modal vectors instead of their image-to-image vectors.
        """
        name = "xmodal" if shared else "image"
        table = self.xmodal_vectors if shared else self.image_vectors
        assert table is not None, "no cross-modal vectors without heads"
        if positions is None or self._scan_all(name, positions, approximate):
            if len(table) == 0:
                best = np.full(self.size, -np.inf, dtype=np.float32)
                which = np.full(self.size, -1, dtype=np.int64)
            elif self.one_image_each:
                best, which = self._scan(name, table, query, approximate), np.arange(self.size)
            else:
                best, which = best_per_product(self._scan(name, table, query, approximate),
                                               self.data.image_product, self.size)
            return (best, which) if positions is None else (best[positions], which[positions])
        starts, counts = self.image_start[positions], self.image_count[positions]
        images = spans(starts, counts)
        owners = np.repeat(np.arange(len(positions)), counts)
        best, which_local = best_per_product(self._gather_scores(name, table, query, images, approximate), owners,
                                             len(positions))
        which = np.where(which_local >= 0, images[np.maximum(which_local, 0)], -1)
        return best, which

    def _scan_all(self, name: str, positions: Array, approximate: bool) -> bool:
        """Whether scoring every product beats gathering these: for a large share of them, unless the
        graph's codes can score them (a full scan would read the float32 table whole)."""
        return len(positions) > self.size // 4 and not (approximate and self.graph_codes(name) is not None)

    def graph_codes(self, name: str) -> GraphCodes | None:
        """The 8-bit codes that the HNSW graph of "text", "image" or "xmodal" holds (None in exact mode)."""
        if name not in self._codes:
            index = {"text": self.text_ann, "image": self.image_ann, "xmodal": self.xmodal_ann}[name]
            try:
                self._codes[name] = GraphCodes(index) if index is not None else None
            except TypeError:  # a graph over other vectors: the float32 table scores alone
                self._codes[name] = None
        return self._codes[name]

    def _gather_scores(self, name: str, table: Array, query: Array, rows: Array, approximate: bool) -> Array:
        """`table[rows] @ query`; approximately, from the graph's codes, for the rows the graph holds (a
        tail's are after them)."""
        codes = self.graph_codes(name) if approximate else None
        if codes is None:
            exact: Array = take_rows(table, rows) @ query
            return exact
        held = rows < len(codes)
        if held.all():
            return codes.scores(query, rows)
        out = np.empty(len(rows), dtype=np.float32)
        out[held] = codes.scores(query, rows[held])
        out[~held] = take_rows(table, rows[~held]) @ query
        return out

    def _scan(self, name: str, table: Array, query: Array, approximate: bool) -> Array:
        quantized = self.quantized.get(name) if approximate and self.quantized else None
        scores: Array = quantized.scores(query) if quantized is not None else table @ query
        return scores

    def filter_candidates(
        self, text_query: Array | None, image_query: Array | None, n: int, xmodal_query: Array | None,
        *, within: Array, partitions: list[Partition],
    ) -> Array:
        """Candidates (ascending positions) among a broad filter's products (`within`, ascending), which the
        `partitions` hold: the whole graphs' that pass it, and the nearest in the graphs of its values'
        products. A query whose neighbourhood holds few of them (men's products, for "pink dress") lies
        away from them, where a graph walk finds the nearest less well: its values' graphs are walked three
        times wider. (At 1M, recall@10 of gender = men: 0.91 from its graph alone, 0.99 so.)"""
        near = self.ann_candidates(text_query, image_query, n, xmodal_query)
        near = near[_among(near, within)]
        wide = n if len(near) >= NEAR_ENOUGH else 3 * n
        walked = self.ann_candidates(text_query, image_query, wide, xmodal_query, partitions=partitions)
        found: Array = np.union1d(near, walked[_among(walked, within)])
        return found

    def ann_candidates(
        self, text_query: Array | None, image_query: Array | None, n: int, xmodal_query: Array | None = None,
        *, partitions: list[Partition] | None = None,
    ) -> Array:
        """Product positions near any query, for exact re-scoring (approximate mode only): from the whole
        collection's graphs, or from those of `partitions` (the products of a filter's values)."""
        import faiss

        # The search beam must be as wide as the pool asked for: at efSearch 128, faiss returned only 200-300
        # of 2,000 ids on a million products (the rest -1); at 2,000 it returns all of them in 3 ms.
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # not in the stubs
        params.efSearch = max(HNSW_EF_SEARCH, n)

        def near(graph: Any, query: Array, ids: Array | None) -> Array:
            _, found = graph.search(query[None, :].astype(np.float32), n, params=params)
            hits: Array = found[0][found[0] >= 0]
            return hits if ids is None else np.asarray(ids)[hits]

        graphs = [(self.text_ann, self.image_ann, self.xmodal_ann, None, None)] if partitions is None else \
            [(p.anns["text"], p.anns.get("image"), p.anns.get("xmodal"), p.positions, p.images) for p in partitions]
        found: list[Array] = []
        for text_ann, image_ann, xmodal_ann, products, images in graphs:
            if xmodal_query is not None and xmodal_ann is not None:
                found.append(self.data.image_product[near(xmodal_ann, xmodal_query, images)])
            if text_query is not None:
                found.append(near(text_ann, text_query, products))
            if image_query is not None and image_ann is not None:
                found.append(self.data.image_product[near(image_ann, image_query, images)])
        if self.tail is not None:  # the tail is not in the graphs: all of it is scored
            found = [f[~self.tail.dead[f]] for f in found] + [np.arange(self.tail.start, self.size)]
        return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
