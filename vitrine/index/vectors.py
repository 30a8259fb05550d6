"""In-memory vectors of one collection: exact inner-product search with numpy up to a size limit,
faiss HNSW candidates above it (then re-scored exactly). Photos' cross-modal vectors are computed
here from the stored raw features with the collection's active heads, so switching a model version
costs a reload, not a re-ingest."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.index.store import VectorData
from vitrine.models.heads import CrossModal
from vitrine.search.scoring import best_per_product, image_search_vectors

log = logging.getLogger(__name__)

HNSW_NEIGHBOURS = 32
HNSW_EF_SEARCH = 128


def build_hnsw(vectors: Array) -> Any:
    import faiss

    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.hnsw.efSearch = HNSW_EF_SEARCH
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


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
    _positions: dict[str, int] | None = None

    @classmethod
    def build(
        cls, data: VectorData, *, generation: int, exact_limit: int, heads: CrossModal | None = None
    ) -> CollectionVectors:
        image_vectors = image_search_vectors(data.image_features) if len(data.image_features) else \
            np.zeros((0, 0), dtype=np.float32)
        products = np.arange(len(data.ids))
        start = np.searchsorted(data.image_product, products, side="left")
        count = np.searchsorted(data.image_product, products, side="right") - start
        xmodal = heads.image_vectors(data.image_features) if heads is not None and len(data.image_features) else None
        vectors = cls(generation=generation, data=data, image_vectors=image_vectors, image_start=start,
                      image_count=count, heads=heads, xmodal_vectors=xmodal)
        if len(data.ids) > exact_limit:
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

    def position_of(self, product_id: str) -> int | None:
        if self._positions is None:
            self._positions = {pid: i for i, pid in enumerate(self.data.ids)}
        return self._positions.get(product_id)

    def positions_of_rows(self, rows: Array) -> Array:
        """Product positions (ascending) for store rows; rows unknown to this snapshot are dropped."""
        return np.intersect1d(rows, self.data.rows, assume_unique=True, return_indices=True)[2]

    def text_scores(self, query: Array, positions: Array | None = None) -> Array:
        """Cosine of each product's text vector (all products, or those at `positions`)."""
        if self.size == 0:  # an empty collection has no vector width to multiply with
            return np.zeros(0 if positions is None else len(positions), dtype=np.float32)
        if positions is None:
            return self.data.text_vectors @ query
        if len(positions) > self.size // 4:  # one full product beats a large gather
            return (self.data.text_vectors @ query)[positions]
        return self.data.text_vectors[positions] @ query

    def image_scores(
        self, query: Array, positions: Array | None = None, *, table: Array | None = None
    ) -> tuple[Array, Array]:
        """Per product (all, or those at `positions`): the best image's cosine and that image's index.

        `table` is the per-image vectors to score (default: image-to-image vectors; or the cross-modal ones).
        """
        table = self.image_vectors if table is None else table
        if positions is None:
            if len(table) == 0:
                return np.full(self.size, -np.inf, dtype=np.float32), np.full(self.size, -1, dtype=np.int64)
            return best_per_product(table @ query, self.data.image_product, self.size)
        if len(positions) > self.size // 4:
            best, which = self.image_scores(query, table=table)
            return best[positions], which[positions]
        starts, counts = self.image_start[positions], self.image_count[positions]
        images = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        owners = np.repeat(np.arange(len(positions)), counts)
        best, which_local = best_per_product(table[images] @ query, owners, len(positions))
        which = np.where(which_local >= 0, images[np.maximum(which_local, 0)], -1)
        return best, which

    def ann_candidates(
        self, text_query: Array | None, image_query: Array | None, n: int, xmodal_query: Array | None = None
    ) -> Array:
        """Product positions near any query, for exact re-scoring (approximate mode only)."""
        found: list[Array] = []
        if xmodal_query is not None and self.xmodal_ann is not None:
            _, ids = self.xmodal_ann.search(xmodal_query[None, :].astype(np.float32), n)
            found.append(self.data.image_product[ids[0][ids[0] >= 0]])
        if text_query is not None:
            _, ids = self.text_ann.search(text_query[None, :].astype(np.float32), n)
            found.append(ids[0][ids[0] >= 0])
        if image_query is not None:
            _, ids = self.image_ann.search(image_query[None, :].astype(np.float32), n)
            found.append(self.data.image_product[ids[0][ids[0] >= 0]])
        return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
