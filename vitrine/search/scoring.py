"""Scoring math as pure numpy functions: normalisation, per-product best image, fusion, top-k."""

from __future__ import annotations

import numpy as np

from vitrine.arrays import Array
from vitrine.models.colour import cnn_part


def normalise_rows(x: Array) -> Array:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    unit: Array = (x / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


def image_search_vectors(raw: Array) -> Array:
    """Stored raw feature rows to unit vectors for image-to-image cosine search (CNN part only).

    A signed square root first ("power normalisation") damps the few dominant channels of pooled
    activations, which measurably improves instance retrieval over plain L2 normalisation.
    """
    raw = cnn_part(np.asarray(raw, dtype=np.float32))
    return normalise_rows(np.sign(raw) * np.sqrt(np.abs(raw)))


def best_per_product(scores: Array, image_product: Array, n_products: int) -> tuple[Array, Array]:
    """Per product, the best image score and that image's index; products without images get -inf / -1.

    `image_product` must be sorted (images grouped by product), as the store returns them.
    """
    best = np.full(n_products, -np.inf, dtype=np.float32)
    which = np.full(n_products, -1, dtype=np.int64)
    if len(scores) == 0:
        return best, which
    starts = np.flatnonzero(np.r_[True, image_product[1:] != image_product[:-1]])
    owners = image_product[starts]
    best[owners] = np.maximum.reduceat(scores, starts)
    # The matched image: the first image of each group whose score equals the group's best.
    is_best = scores >= best[image_product]
    first = np.flatnonzero(is_best)
    owner_of_first = image_product[first]
    keep = np.r_[True, owner_of_first[1:] != owner_of_first[:-1]]
    which[owner_of_first[keep]] = first[keep]
    return best, which


def fuse(image: Array | None, text: Array | None, alpha: float) -> Array:
    """alpha = 1: image only; 0: text only. A missing signal gives the other one all the weight."""
    if image is None and text is None:
        raise ValueError("no signal to fuse")
    if image is None:
        return np.asarray(text)
    if text is None or alpha >= 1.0:
        return np.asarray(image)
    if alpha <= 0.0:
        return np.asarray(text)
    return alpha * image + (1.0 - alpha) * text


def top_indices(scores: Array, k: int) -> Array:
    """Indices of the k highest scores, best first (ties broken by index, so results are stable)."""
    if k <= 0 or len(scores) == 0:
        return np.zeros(0, dtype=np.int64)
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    order = np.lexsort((part, -scores[part]))
    ranked: Array = part[order]
    return ranked


def facet_counts(
    product_pos: Array, codes: Array, values: list[str], mask: Array | None
) -> dict[str, int]:
    """Counts per value over the products where `mask` is true (all when None), most frequent first."""
    if mask is not None:
        keep = mask[product_pos]
        codes = codes[keep]
    counts = np.bincount(codes, minlength=len(values))
    order = np.lexsort((np.arange(len(values)), -counts))
    return {values[i]: int(counts[i]) for i in order if counts[i] > 0}
