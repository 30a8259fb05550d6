"""The store interface and the plain data that crosses it.

A second backend (PostgreSQL + pgvector) implements the same Protocol; the search and ingest code
only ever talk to `CollectionStore`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from vitrine.arrays import Array
from vitrine.catalog.records import ProductRecord, Variant
from vitrine.errors import Conflict
from vitrine.tables import Tables


@dataclass(frozen=True)
class ImageWrite:
    ref: str
    path: str
    sha256: str
    features: Array  # raw image features (float32), kept so heads can be trained without re-reading images


@dataclass(frozen=True)
class ProductWrite:
    record: ProductRecord
    text_vector: Array
    images: tuple[ImageWrite, ...]


@dataclass(frozen=True)
class ProductImage:
    position: int
    ref: str
    path: str
    sha256: str


@dataclass(frozen=True)
class Product:
    id: str
    title: str
    description: str
    category: str
    colour: str
    price: float | None
    attributes: dict[str, Any]
    images: tuple[ProductImage, ...]
    variants: tuple[Variant, ...] = ()

    @property
    def main_image(self) -> ProductImage | None:
        return self.images[0] if self.images else None


@dataclass(frozen=True)
class RangeFilter:
    low: float | None = None
    high: float | None = None


_FIELD_ALIASES = {"color": "colour", "colors": "colour", "colours": "colour", "sizes": "size"}


def normalise_field(name: str) -> str:
    """A filter or facet field as every backend stores it: lower case, `color` spelled `colour`, `sizes` as `size`."""
    name = name.strip().lower()
    return _FIELD_ALIASES.get(name, name)


@dataclass(frozen=True)
class Filters:
    """Equality / one-of on any attribute (case-insensitive), numeric ranges on price or any number."""

    equals: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ranges: Mapping[str, RangeFilter] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.equals or self.ranges)

    def as_plain(self) -> dict[str, Any]:
        """As JSON keeps it (a job's parameters, a look's record)."""
        return {"equals": {k: list(v) for k, v in self.equals.items()},
                "ranges": {k: [r.low, r.high] for k, r in self.ranges.items()}}

    @classmethod
    def from_plain(cls, plain: Mapping[str, Any]) -> Filters:
        return cls(equals={k: tuple(v) for k, v in plain.get("equals", {}).items()},
                   ranges={k: RangeFilter(*v) for k, v in plain.get("ranges", {}).items()})


@dataclass
class VectorData:
    """Everything search needs in memory, in product order (`rows` ascending)."""

    rows: Array  # (n_products,) int64 store row ids
    ids: list[str]
    text_vectors: Array  # (n_products, d_text) float32, normalised
    image_features: Array  # (n_images, d_image) float32, raw
    image_product: Array  # (n_images,) int32 product position; images grouped by product
    image_position: Array  # (n_images,) int16 position of the image within its product
    facets: dict[str, tuple[Array, Array, list[str]]]  # field -> (product pos, value code, values)
    prices: Array | None = None  # (n_products,) float32, NaN where a product has no price (sorting)


Facets = dict[str, tuple[Array, Array, list[str]]]

VECTOR_BATCH = 20_000  # products per batch of `CollectionStore.vector_batches` (a photo each: 106 MB of raw features)


def merge_facets(parts: Sequence[tuple[Facets, int]]) -> Facets:
    """The facet entries of consecutive parts (each with the position of its first product), coded against
    the union of their values (sorted, as facet counts expect)."""
    merged: Facets = {}
    for name in sorted({name for facets, _ in parts for name in facets}):
        held = [(facets[name], offset) for facets, offset in parts if name in facets]
        values = sorted({value for (_, _, known), _ in held for value in known})
        rank = {value: code for code, value in enumerate(values)}
        positions, codes = [], []
        for (at, code, known), offset in held:
            positions.append(np.asarray(at, dtype=np.int32) + np.int32(offset))
            if len(known) == len(values):  # no value it lacks: its codes stand as they are
                codes.append(np.asarray(code, dtype=np.int32))
            else:
                recode = np.asarray([rank[value] for value in known], dtype=np.int32)
                codes.append(recode[code] if len(code) else np.zeros(0, dtype=np.int32))
        merged[name] = (np.concatenate(positions), np.concatenate(codes), values)
    return merged


def batches_by_row(next_bound: Callable[[int, int], int | None], read: Callable[[int, int], VectorData],
                   batch: int) -> Iterator[VectorData]:
    """`read(after, upto)` for consecutive ranges of store rows of `batch` products each, until one is empty.
    `next_bound(after, batch)` is the row of the batch-th product after row `after` (None: fewer are left)."""
    after = -1
    while True:
        bound = next_bound(after, batch)
        part = read(after, bound if bound is not None else 2**62)
        if part.ids:
            yield part
        if bound is None:
            return
        after = bound


SWAP_BATCH = 2000  # photos whose features a reindex's swap rewrites per statement


def swap_in_batches(read: Callable[[tuple[int, int]], list[tuple[int, int, str, str]]],
                    write: Callable[[list[tuple[Array, int, int]]], object],
                    features_of: Callable[[list[tuple[str, str]]], Mapping[str, Array]]) -> int:
    """The loop of `swap_image_features`, shared by the backends: `read(after)` gives the next photo rows
    (product row, position, sha256, location) after a (product row, position); `write` stores
    (features, product row, position). Returns the rows rewritten."""
    swapped, last = 0, (-1, -1)
    while rows := read(last):
        features = features_of(list(dict.fromkeys((sha, location) for _, _, sha, location in rows)))
        write([(np.asarray(features[sha], dtype=np.float32), row, position) for row, position, sha, _ in rows])
        swapped += len(rows)
        last = (rows[-1][0], rows[-1][1])
    return swapped


def check_image_model(found: Sequence[Any] | None, wanted: str | None, collection: str) -> None:
    """Inside a write: refuses photo features of another encoder than the collection's (a reindex
    switched it while they were encoded)."""
    if wanted is not None and found is not None and found[0] != wanted:
        raise Conflict(f"collection {collection!r} moved to encoder {found[0]} while these products were encoded "
                       f"with {wanted}; write them again", field="collection")


class CollectionStore(Protocol):
    name: str
    # Tells a collection deleted and made again under the same name from this one (its snapshots too).
    incarnation: int

    def generation(self) -> int: ...
    def count(self) -> int: ...
    def info(self) -> dict[str, Any]: ...
    def set_meta(self, key: str, value: str, *, bump: bool = False) -> None: ...
    def meta(self) -> dict[str, str]: ...
    def product_hashes(self) -> dict[str, str]: ...
    def upsert(self, products: Sequence[ProductWrite], *, image_model: str | None = None) -> None:
        """Writes products in one transaction. `image_model`: the encoder their photo features came from,
        checked against the collection's inside the transaction (Conflict if a reindex switched it since)."""
        ...
    def delete(self, ids: Iterable[str]) -> int: ...
    def get_products(self, ids: Sequence[str]) -> list[Product]: ...
    def filter_rows(self, filters: Filters) -> Array: ...
    def keyword_scores(self, query: str) -> tuple[Array, Array]: ...
    def keyword_scores_of(self, query: str, rows: Array) -> Array: ...
    def stock_rows(self, available: bool) -> Array: ...
    def load_vectors(self, facet_fields: Sequence[str], *, changed_since: int | None = None) -> VectorData:
        """What search holds in memory: every product's, or only those written after `changed_since`."""
        ...
    def vector_batches(self, facet_fields: Sequence[str], *, batch: int = VECTOR_BATCH) -> Iterator[VectorData]:
        """What `load_vectors` reads of every product, a batch of products at a time in row order, all
        batches from one read snapshot: a million products' raw features (5 GB) need not be held at once.
        Positions (`image_product`, facet entries) count from each batch's first product."""
        ...
    def changed_count(self, generation: int) -> int:
        """How many products were written after `generation` (what `load_vectors(changed_since=...)` reads)."""
        ...
    def removed_since(self, generation: int) -> Array | None:
        """Rows of the products deleted after `generation`; None when the store cannot tell (its change
        log begins later), and an index that old must be rebuilt."""
        ...
    def photo_refs(self, *, after: str = "", limit: int = 256) -> list[tuple[str, str]]:
        """The collection's distinct photos, (sha256, stored location) in hash order after `after`."""
        ...
    def photo_count(self) -> int:
        """How many distinct photos (by content) the collection holds."""
        ...
    def swap_image_features(self, features_of: Callable[[list[tuple[str, str]]], Mapping[str, Array]],
                            meta: Mapping[str, str]) -> int:
        """In one write transaction: every photo's features replaced by what `features_of` gives for its
        (sha256, location) pairs (by hash), `meta` set, and every product marked as written now, so that
        every index is rebuilt. Returns the photos rewritten. What `vitrine reindex` ends with: searches
        see the old encoder's features or the new one's, never a mix."""
        ...
    def value_counts(self, field: str, limit: int = 500) -> list[tuple[str, int]]:
        """The most common values of an attribute with their product counts, most common first (for the
        labels' vocabularies and priors)."""
        ...
    def vocabulary_texts(self, *, changed_since: int | None = None) -> list[str]: ...
    def holds_word(self, word: str) -> bool: ...
    def product_titles(self) -> list[tuple[str, str]]: ...
    def add_training_pair(self, product_id: str, text: str, source: str) -> None: ...
    def training_pairs(self) -> list[tuple[str, str, str]]: ...
    def save_model(self, weights: bytes, card: str, *, version: int | None = None) -> int:
        """Keeps a trained model version (weights and JSON card) with the collection, where every
        replica finds it. `version` None takes the next number; a given one that exists is kept as it is."""
        ...
    def model(self, version: int) -> tuple[bytes, str] | None:
        """A model version's (weights, card), or None."""
        ...
    def model_cards(self) -> list[tuple[int, str]]:
        """Every model version's number and card, oldest first (the weights are not read)."""
        ...
    def close(self) -> None: ...


class StoreBackend(Protocol):
    """Where collections live: SQLite files in the home (embedded), or a PostgreSQL database shared by
    any number of replicas (`VITRINE_DATABASE_URL`)."""

    def names(self) -> list[str]: ...
    def open(self, name: str, *, create: bool) -> CollectionStore:
        """The collection's store; NotFound when it does not exist and `create` is false."""
        ...
    def current(self, store: CollectionStore) -> bool:
        """Whether `store` is still the collection of its name (not deleted, nor made again, by another process)."""
        ...
    def delete(self, name: str) -> bool:
        """Removes the collection and its folder at once and completely; false when there was none."""
        ...
    def tables(self, name: str, schema: str) -> Tables:
        """The service's own small tables `name` (keys, jobs), created by `schema` where this backend keeps them."""
        ...
    def ready(self) -> bool: ...
    def close(self) -> None: ...
