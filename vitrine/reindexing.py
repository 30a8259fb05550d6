"""`vitrine reindex <collection> --encoder ...`: a collection's photos encoded again with another encoder
(the built-in model, or a CLIP/SigLIP checkpoint), from the photos it keeps, without its catalog.

Two steps:
1. Every distinct photo is read from where the collection keeps it and encoded into the new encoder's
   feature cache. This is the long part, and it resumes: a run stopped half-way finds what it
   encoded in the cache. Searches go on with the old features meanwhile.
2. One write transaction swaps every photo's features for the new ones (encoding any photo written
   since), records the new encoder, makes `base` the active model version (versions trained in the old
   space do not apply to the new one), and marks every product as written, so every index is built
   again. Searches see the old features or the new ones, never a mix. A write encoded with the old
   encoder that reaches the store after the swap is refused (Conflict), never mixed in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from vitrine.arrays import Array
from vitrine.engine import Engine
from vitrine.errors import ImageError, InvalidInput, VitrineError
from vitrine.models.embedder import ImageEmbedder
from vitrine.models.feature_cache import FeatureCache
from vitrine.models.versions import BASE

log = logging.getLogger(__name__)

BATCH = 128  # photos read and encoded at a time
Progress = Callable[[int, int], None]


def _encode(engine: Engine, embedder: ImageEmbedder, cache: FeatureCache,
            refs: list[tuple[str, str]]) -> tuple[dict[str, Array], int]:
    """Features of these (sha256, location) photos, from the cache, else read, encoded and cached; and
    how many had to be encoded."""
    found = cache.get_many(sha for sha, _ in refs)
    missing = [(sha, location) for sha, location in refs if sha not in found]
    if missing:
        blobs = []
        for sha, location in missing:
            try:
                blobs.append(engine.photos.get(location))
            except (OSError, VitrineError) as exc:
                raise InvalidInput(f"cannot read the collection's photo {sha[:12]} at {location}: {exc}; nothing "
                                   "was changed", field="collection") from exc
        arrays: list[Array] = []
        for (sha, _), array in zip(missing, embedder.preprocess_many(blobs), strict=True):
            if isinstance(array, Exception):
                raise ImageError(f"the collection's photo {sha[:12]} cannot be decoded any more: {array}")
            arrays.append(array)
        fresh = dict(zip((sha for sha, _ in missing), embedder.encode_arrays(arrays), strict=True))
        cache.put_many(fresh)
        found.update(fresh)
    return found, len(missing)


def reindex(engine: Engine, name: str, *, encoder: str | None = None,
            progress: Progress | None = None) -> dict[str, Any]:
    """Moves collection `name` to `encoder` (None or "builtin": the built-in model). A collection already
    on it is left as it is."""
    store = engine.store(name)
    before = engine.image_model_of(name)
    target = engine.resolve_encoder(encoder)
    result: dict[str, Any] = {"collection": name, "image_model": engine.shown_encoder(target),
                              "previous": engine.shown_encoder(before)}
    if target == before:
        return {**result, "photos": 0, "encoded": 0, "swapped": 0, "changed": False}
    embedder = engine.embedder_of(target)
    cache = embedder.cache or engine.feature_cache
    started = time.perf_counter()
    total, done, encoded, after = store.photo_count(), 0, 0, ""
    while refs := store.photo_refs(after=after, limit=BATCH):
        encoded += _encode(engine, embedder, cache, refs)[1]
        done, after = done + len(refs), refs[-1][0]
        if progress is not None:
            progress(min(done, total), total)

    def features_of(refs: list[tuple[str, str]]) -> Mapping[str, Array]:
        return _encode(engine, embedder, cache, refs)[0]

    swapped = store.swap_image_features(features_of, {"image_model": target, "model_version": BASE})
    seconds = round(time.perf_counter() - started, 1)
    log.info("collection reindexed", extra={"collection": name, "image_model": result["image_model"],
                                            "photos": total, "encoded": encoded, "seconds": seconds})
    return {**result, "photos": total, "encoded": encoded, "swapped": swapped, "changed": True, "seconds": seconds}
