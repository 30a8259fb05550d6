"""The library's front door: `open_engine(settings)` wires stores, encoders and the searcher.

Every interface (CLI, HTTP API) is a thin layer over `Engine`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

import numpy as np

from vitrine.arrays import Array
from vitrine.catalog.formats import ReadOptions, shopify
from vitrine.catalog.ingest import Ingestor, Progress, check_catalog
from vitrine.catalog.records import ProductRecord
from vitrine.catalog.report import IngestReport
from vitrine.catalog.sources import FetchPolicy, ImageFetcher, fetch_once, is_url
from vitrine.catalog.uploads import CATALOG_SUFFIXES, discard_upload, save_upload
from vitrine.errors import (
    Busy,
    CollectionGone,
    Conflict,
    ImageError,
    InvalidInput,
    ModelUnavailable,
    NotFound,
    ServiceDown,
)
from vitrine.index import snapshot, updates
from vitrine.index.snapshot import snapshot_dir
from vitrine.index.sqlite_store import SqliteCollections
from vitrine.index.store import CollectionStore, Filters, ImageWrite, Product, ProductWrite, StoreBackend
from vitrine.index.updates import catch_up
from vitrine.index.vectors import CollectionVectors
from vitrine.models.clip_adapter import ClipAdapter
from vitrine.models.clip_encoder import PREFIX as CLIP_PREFIX
from vitrine.models.clip_encoder import ClipCheckpoint, ClipCrossModal, checkpoint_path
from vitrine.models.embedder import ImageEmbedder
from vitrine.models.feature_cache import FeatureCache
from vitrine.models.heads import CrossModal, load_base_heads
from vitrine.models.hub import pulled_path
from vitrine.models.image_encoder import ImageEncoder
from vitrine.models.imaging import sniff_image_type
from vitrine.models.labels import PATTERN_FIELDS, Label, ZeroShotLabeller, collection_vocabulary
from vitrine.models.registry import (
    DEFAULT_IMAGE_MODEL,
    IMAGE_MODELS,
    UNRECORDED_IMAGE_MODEL,
    image_model_spec,
    text_model_spec,
)
from vitrine.models.text_encoder import TextEncoder
from vitrine.models.versions import BASE, ModelVersions, parse_version
from vitrine.search.cache import LruCache, query_key
from vitrine.search.complete import complete_the_look
from vitrine.search.query import Query, SearchResponse
from vitrine.search.rules import IN_STOCK, MAX_RULES, Merchandising, Rule, check_rule, dump_rules, parse_rules
from vitrine.search.searcher import Searcher, SearchTarget, prepare_query_photo
from vitrine.search.suggest import MAX_SUGGESTIONS, Suggester
from vitrine.search.synonyms import check_synonyms, parse_synonyms
from vitrine.search.vocabulary import UNDERSTOOD_FIELDS, CountedWords, Vocabulary, count_words
from vitrine.settings import Settings
from vitrine.storage import Photos

log = logging.getLogger(__name__)
T = TypeVar("T")

COLLECTION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
IMAGE_MODEL = DEFAULT_IMAGE_MODEL
TEXT_MODEL = "all-minilm-l6-v2"
# Fields whose value counts a search can ask for: held in memory per collection (a few bytes a value).
FACET_FIELDS = ("category", "colour", "size", "brand", "gender")
# From this many products on, a collection's suggestions (every title) are rebuilt in the background after
# a write, meanwhile served from the previous ones: a write is searchable well before they would be.
REFRESH_BEHIND_PRODUCTS = 20_000
MAX_PHOTOS_PER_PRODUCT = 20


def check_collection_name(name: str) -> str:
    if not isinstance(name, str) or not COLLECTION_NAME.match(name):
        raise InvalidInput(
            "a collection name is 1-64 lower-case letters, digits, '-' or '_', starting with a letter or digit",
            field="collection",
        )
    return name


class Engine:
    def __init__(self, settings: Settings, *, serve_stale: bool = True) -> None:
        """`serve_stale`: after a bulk change, search what was loaded before while the collection is rebuilt
        in the background (a server). A one-shot process (the CLI) has nothing worth serving: it rebuilds
        first, and saves the snapshot the next process starts from."""
        self.settings = settings
        self.serve_stale = serve_stale
        self.home = settings.home
        self.collections_dir = self.home / "collections"
        self.collections_dir.mkdir(parents=True, exist_ok=True)
        self.backend = open_backend(settings, self.collections_dir)
        self.photos = Photos(self.home, url=settings.storage_url, endpoint=settings.storage_endpoint)
        model_dir = self.home / "models"
        self.text_encoder = TextEncoder(text_model_spec(TEXT_MODEL), model_dir=model_dir, threads=settings.threads)
        # The built-in image models in use, by name: the default always, an older one once a collection
        # made with it is read. Each has its own feature cache, since features differ between them.
        self._builtin: dict[str, tuple[ImageEncoder, ImageEmbedder, FeatureCache]] = {}
        self._lock = threading.RLock()
        self.image_encoder, self.embedder, self.feature_cache = self._builtin_model(IMAGE_MODEL)
        self.searcher = Searcher(
            text_encoder=self.text_encoder, keyword_weight=settings.keyword_weight,
            cross_modal_weight=settings.cross_modal_weight, image_cross_modal_weight=settings.image_cross_modal_weight,
        )
        self.results_cache: LruCache[SearchResponse] = LruCache(settings.search_cache_size)
        # Searches are CPU-bound: running more at once than there are cores only adds contention.
        self._search_slots = threading.BoundedSemaphore(settings.search_concurrency or settings.threads)
        # Decoding a query photo is the costliest thing an anonymous caller can ask for (a 5 KB PNG can
        # hold 40 Mpx); it runs outside the search slots, in fewer slots of its own.
        self._decode_slots = threading.BoundedSemaphore(settings.decode_slots or max(1, settings.threads // 2))
        self._stores: dict[str, CollectionStore] = {}
        self._vectors: dict[str, CollectionVectors] = {}
        # Each collection's last whole build, which its current vectors extend with a tail (index/updates.py)
        self._bases: dict[str, CollectionVectors] = {}
        self._closed = False
        # What is built from a collection once per generation: (kind, name) -> (generation, object, inputs)
        self._derived: dict[tuple[str, str], tuple[int, Any, object]] = {}
        self._background: dict[str, threading.Thread] = {}  # rebuilds under way, by what they rebuild
        self._stale: set[str] = set()  # collections served as of an older generation while they are rebuilt
        self._heads: dict[tuple[str, str], CrossModal | None] = {}
        self._clip: dict[str, tuple[ClipCheckpoint, ImageEmbedder]] = {}
        self._labellers: dict[str, tuple[tuple[str, int], ZeroShotLabeller]] = {}
        self._write_locks: dict[str, threading.Lock] = {}

    # -- lifetime ---------------------------------------------------------------------------------

    def warm(self) -> None:
        """Loads (and on first use exports) both models, so the first query is not slow."""
        self.image_encoder.load()
        self.text_encoder.load()

    def preload(self) -> None:
        """Loads every collection's vectors now, so no user waits for it on a first search. A database
        that does not answer yet is no reason not to start: collections load on first use once it does."""
        try:
            for name in self.collection_names():
                self.vectors(name)
                encoder = self.older_builtin_model(name)
                if encoder is not None:
                    log.warning("collection on an older built-in image model; `vitrine reindex` moves it",
                                extra={"collection": name, "image_model": encoder, "default": IMAGE_MODEL})
        except ServiceDown as exc:
            log.warning("collections not preloaded", extra={"error": str(exc)})

    def models_loaded(self) -> bool:
        return self.image_encoder.loaded and self.text_encoder.loaded

    def home_writable(self) -> bool:
        return os.access(self.collections_dir, os.W_OK)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for store in self._stores.values():
                store.close()
            self._stores.clear()
            self._vectors.clear()
            self._bases.clear()
        self.backend.close()
        for embedder in [*(e for _, e, _ in self._builtin.values()), *(e for _, e in self._clip.values())]:
            embedder.close()
            if embedder.cache is not None:
                embedder.cache.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- collections ------------------------------------------------------------------------------

    def collection_names(self) -> list[str]:
        return [name for name in self.backend.names() if COLLECTION_NAME.match(name)]

    def collections(self) -> list[dict[str, Any]]:
        return [self.collection_info(name) for name in self.collection_names()]

    def collection_info(self, name: str) -> dict[str, Any]:
        """Counts and settings, as shown to API callers: no server paths (the CLI reads `store().meta()`)."""
        info = self.store(name).info()
        if info.get("last_ingest_report"):
            info["last_ingest_report"] = Path(info["last_ingest_report"]).name
        if "image_model" in info:
            info["image_model"] = self.shown_encoder(str(info["image_model"]))
        return info

    @staticmethod
    def shown_encoder(image_model: str) -> str:
        """An encoder as users see it: a checkpoint by its folder's name, never the server's path."""
        if image_model.startswith(CLIP_PREFIX):
            return CLIP_PREFIX + Path(image_model.removeprefix(CLIP_PREFIX)).name
        return image_model

    def create_collection(self, name: str, *, encoder: str | None = None) -> CollectionStore:
        """`encoder`: None or "builtin" for the built-in model, or "clip:<directory>" for a local
        CLIP/SigLIP checkpoint. It is fixed when the collection is created."""
        check_collection_name(name)
        wanted = self.resolve_encoder(encoder)
        with self._lock:
            try:
                store = self.store(name)  # drops a store object whose collection another process deleted
            except NotFound:
                store = self._stores[name] = self.backend.open(name, create=True)
            if not store.meta().get("created_at"):
                store.set_meta("created_at", str(time.time()))
                store.set_meta("image_model", wanted)
                store.set_meta("text_model", TEXT_MODEL)
            elif encoder is not None and store.meta().get("image_model") != wanted:
                raise Conflict(f"collection {name!r} was created with encoder {store.meta().get('image_model')}; "
                               "move it to another with `vitrine reindex`", field="encoder")
            return store

    def _checkpoint_folder(self, encoder: str) -> Path:
        """`clip:<directory>`, or the name of a checkpoint `vitrine models pull` brought into the home."""
        if encoder.startswith(CLIP_PREFIX):
            return checkpoint_path(encoder)
        folder = pulled_path(self.home, encoder)
        if folder is None:
            raise InvalidInput(f"unknown encoder {encoder!r}: use builtin, clip:<directory>, or pull a checkpoint "
                               f"first (`vitrine models pull {encoder}`)", field="encoder")
        return checkpoint_path(f"{CLIP_PREFIX}{folder}")

    def _forget(self, name: str) -> None:
        """Drops what is held in memory for a collection that is gone (call with the lock held)."""
        self._vectors.pop(name, None)
        self._bases.pop(name, None)
        self._stale.discard(name)
        self._derived = {k: v for k, v in self._derived.items() if k[1] != name}
        self._labellers.pop(name, None)
        self._heads = {k: v for k, v in self._heads.items() if k[0] != name}

    def embedder_for(self, collection: str) -> ImageEmbedder:
        """The photo encoder a collection was created with (the built-in one, or its CLIP checkpoint)."""
        return self.embedder_of(self.image_model_of(collection))

    def image_model_of(self, collection: str) -> str:
        """The encoder of a collection's photo features: a built-in model's name, or clip:<folder>."""
        return self.store(collection).meta().get("image_model", UNRECORDED_IMAGE_MODEL)

    def older_builtin_model(self, collection: str) -> str | None:
        """The older built-in image model the collection's photos are encoded with (`vitrine reindex` moves
        them to the default one), or None."""
        encoder = self.image_model_of(collection)
        return encoder if encoder in IMAGE_MODELS and encoder != IMAGE_MODEL else None

    def embedder_of(self, image_model: str) -> ImageEmbedder:
        if image_model.startswith(CLIP_PREFIX):
            return self._clip_model(image_model)[1]
        return self._builtin_model(image_model)[1]

    def _builtin_model(self, name: str) -> tuple[ImageEncoder, ImageEmbedder, FeatureCache]:
        with self._lock:
            if name not in self._builtin:
                encoder = ImageEncoder(image_model_spec(name), model_dir=self.home / "models",
                                       threads=self.settings.threads)
                embedder = ImageEmbedder(encoder, cache=None, max_pixels=self.settings.max_image_pixels,
                                         batch_size=self.settings.batch_size, threads=self.settings.threads)
                embedder.cache = FeatureCache(self.home / "cache" / f"features-{name}.sqlite", dim=embedder.dim)
                self._builtin[name] = (encoder, embedder, embedder.cache)
            return self._builtin[name]

    def resolve_encoder(self, encoder: str | None) -> str:
        """What a collection records as its encoder: `builtin` (or None) for the default built-in model, a
        built-in model's name, `clip:<directory>`, or the name of a pulled checkpoint. Raises InvalidInput
        for one that cannot be read."""
        if encoder in (None, "builtin"):
            return IMAGE_MODEL
        if encoder in IMAGE_MODELS:
            return encoder
        return f"{CLIP_PREFIX}{self._checkpoint_folder(encoder)}"

    def _clip_model(self, encoder: str) -> tuple[ClipCheckpoint, ImageEmbedder]:
        with self._lock:
            if encoder not in self._clip:
                checkpoint = ClipCheckpoint(checkpoint_path(encoder), threads=self.settings.threads)
                embedder = ImageEmbedder(checkpoint, cache=None, max_pixels=self.settings.max_image_pixels,
                                         batch_size=self.settings.batch_size, threads=self.settings.threads)
                embedder.cache = FeatureCache(self.home / "cache" / f"features-{checkpoint.spec.name}.sqlite",
                                              dim=embedder.dim)
                self._clip[encoder] = (checkpoint, embedder)
            return self._clip[encoder]

    def _writing(self, name: str) -> threading.Lock:
        """Held by a product write and by deleting its collection, so that a `PUT` answered 200 is never
        undone by a delete it raced with, and never answers 404 for a product it wrote."""
        with self._lock:
            return self._write_locks.setdefault(name, threading.Lock())

    def delete_collection(self, name: str) -> None:
        check_collection_name(name)
        with self._writing(name), self._lock:
            store = self._stores.pop(name, None)
            if store is not None:
                store.close()
            self._forget(name)
            self.results_cache.clear()  # a collection made again under this name restarts its generations
            if not self.backend.delete(name):
                raise NotFound(f"no collection named {name!r}", field="collection")

    def store(self, name: str) -> CollectionStore:
        check_collection_name(name)
        with self._lock:
            held = self._stores.get(name)
            if held is not None:
                if self.backend.current(held):
                    return held
                # Deleted (or made again) by another process: `vitrine serve --workers N`, a replica, the CLI.
                self._stores.pop(name).close()
                self._forget(name)
            store = self._stores[name] = self.backend.open(name, create=False)
            return store

    def vectors(self, name: str) -> CollectionVectors:
        """The collection's in-memory vectors, brought up to date when a write has changed the store."""
        store = self.store(name)
        generation = store.generation()
        with self._lock:
            current = self._vectors.get(name)
            if current is None or current.generation != generation:
                current = self._load_vectors(name, store, generation, serving=current)
                self._vectors[name] = current
            return current

    def _load_vectors(self, name: str, store: CollectionStore, generation: int, *,
                      serving: CollectionVectors | None) -> CollectionVectors:
        """The collection as of `generation`: its last whole build, or the latest snapshot, with a tail of
        the products written since (index/updates.py). When that tail would be too large (a bulk change),
        the collection is built whole in the background, and searches meanwhile read what was served
        before (`serving`, or the base): an older generation, whose deleted products the search drops
        when it fetches them. Built whole here, with searches waiting, when there is nothing to serve (or
        the engine does not serve stale: the CLI)."""
        heads = self.heads(name)
        base = self._bases.get(name)
        if base is None or base.heads is not heads:
            base = self._latest_snapshot(name, store, generation, heads)
        if base is not None:
            self._bases[name] = base
            updated = catch_up(base, store, generation, heads=heads, facet_fields=FACET_FIELDS)
            if updated is not None:
                self._stale.discard(name)
                if updated.tail is not None and updated.size - updated.tail.start > updates.TAIL_MERGE:
                    self._rebuild_later(name, store)
                return updated
            if self.serve_stale:
                self._rebuild_later(name, store)
                if name not in self._stale:
                    log.info("serving an older generation while the collection is rebuilt", extra={
                        "collection": name, "generation": generation, "base_generation": base.generation})
                self._stale.add(name)
                return serving if serving is not None and serving.heads is heads else base
        built = self._build_vectors(name, store, generation, heads)
        self._bases[name] = built
        self._stale.discard(name)
        return built

    def _latest_snapshot(self, name: str, store: CollectionStore, generation: int,
                         heads: CrossModal | None) -> CollectionVectors | None:
        settings = self.settings
        if not settings.vector_snapshots:
            return None
        found = snapshot.latest(self.collections_dir / name, store.incarnation, generation,
                                exact_limit=settings.exact_search_limit, quantize=settings.quantized_scan)
        if found is None:
            return None
        return snapshot.load(found[0], generation=found[1], heads=heads, exact_limit=settings.exact_search_limit,
                             quantize=settings.quantized_scan)

    def _build_vectors(self, name: str, store: CollectionStore, generation: int,
                       heads: CrossModal | None) -> CollectionVectors:
        """Built whole from the store: as a snapshot for the next process (index/snapshot.py), written a
        batch of products at a time and served from its files, or in memory when the collection is small
        (or snapshots are off). Read at `generation` or later: a later write is caught up with as a tail."""
        settings = self.settings
        limit, quantize = settings.exact_search_limit, settings.quantized_scan
        if settings.vector_snapshots and store.count() >= settings.snapshot_min_products:
            folder = snapshot_dir(self.collections_dir / name, store.incarnation, generation, exact_limit=limit,
                                  quantize=quantize)
            mapped = snapshot.load(folder, generation=generation, heads=heads, exact_limit=limit, quantize=quantize)
            if mapped is not None:  # another process has just written it
                return mapped
            snapshot.discard(folder)  # if one is there, it is damaged or of another model: written again
            try:
                snapshot.write(store.vector_batches(FACET_FIELDS), folder, generation=generation, heads=heads,
                               exact_limit=limit, quantize=quantize)
            except OSError as exc:  # a full disk costs memory (the build below), not this search
                log.warning("cannot save a vector snapshot", extra={"collection": name, "error": str(exc)})
            else:
                mapped = snapshot.load(folder, generation=generation, heads=heads, exact_limit=limit,
                                       quantize=quantize)
                if mapped is not None:
                    return mapped
        return CollectionVectors.build(store.load_vectors(FACET_FIELDS), generation=generation, heads=heads,
                                       exact_limit=limit, quantize=quantize)

    def _rebuild_later(self, name: str, store: CollectionStore) -> None:
        """Rebuilds the collection's base in a background thread, searches meanwhile reading the old base
        and its tail; the next search after it catches up from the new one."""
        def rebuild() -> None:
            generation = store.generation()
            built = self._build_vectors(name, store, generation, self.heads(name))
            self._per_generation("base-vocabulary", name, generation,  # before searches switch to it
                                 lambda: self._whole_vocabulary(name, built, self.synonyms(name)))
            with self._lock:
                if self._stores.get(name) is store:
                    self._bases[name] = built
                    self._vectors.pop(name, None)  # the next search catches up from it, not the old base
            log.info("collection rebuilt", extra={"collection": name, "products": built.size,
                                                  "generation": generation})

        self._in_background(f"vectors:{name}", rebuild)

    def _per_generation(self, kind: str, name: str, generation: int, build: Callable[[], T], *,
                        behind: object = None) -> T:
        """`build()`, kept until the collection's generation changes. With `behind` (what the object
        depends on besides the products), a previous generation's object built from the same `behind`
        is served while a background thread builds this generation's."""
        key = (kind, name)
        with self._lock:
            cached = self._derived.get(key)
            if cached is not None and (cached[0] == generation or behind is not None and cached[2] == behind):
                if cached[0] != generation:
                    self._in_background(f"{kind}:{name}", lambda: self._keep(key, generation, build(), behind))
                held: T = cached[1]
                return held
        built = build()
        self._keep(key, generation, built, behind)
        return built

    def _keep(self, key: tuple[str, str], generation: int, built: object, behind: object) -> None:
        with self._lock:
            cached = self._derived.get(key)
            if cached is None or cached[0] <= generation:
                self._derived[key] = (generation, built, behind)

    def _in_background(self, what: str, work: Callable[[], object]) -> None:
        """Runs `work` in a thread unless one for `what` is under way; a failure is logged, and the next
        caller tries again."""
        def run() -> None:
            try:
                work()
            except Exception:
                if not self._closed:  # else a store closed under it: nothing to rebuild for
                    log.exception("background rebuild failed", extra={"what": what})
            finally:
                with self._lock:
                    self._background.pop(what, None)

        with self._lock:
            if what in self._background:
                return
            thread = self._background[what] = threading.Thread(target=run, name=f"rebuild-{what}", daemon=True)
        thread.start()

    def settle(self, timeout: float | None = None) -> None:
        """Waits for the background rebuilds under way (tests, benchmarks, a clean shutdown)."""
        with self._lock:
            threads = list(self._background.values())
        for thread in threads:
            thread.join(timeout)

    def vocabulary(self, name: str) -> Vocabulary:
        """The collection's words, facet phrases, prices and synonyms for query understanding: built whole
        with its vectors (0.15-0.2 s per 10k products), then extended with the products written since."""
        vectors = self.vectors(name)
        synonyms = self.synonyms(name)  # changed synonyms apply at once
        if vectors.tail is None:  # built whole: the base of the vocabularies of the next writes
            return self._per_generation("base-vocabulary", name, vectors.generation,
                                        lambda: self._whole_vocabulary(name, vectors, synonyms))
        base, since, start = vectors.tail.base, vectors.tail.base.generation, vectors.tail.start

        def extend() -> Vocabulary:
            whole = self._per_generation("base-vocabulary", name, since,
                                         lambda: self._whole_vocabulary(name, base, synonyms))
            facets = {}  # the values the tail's products hold: the base's phrases are already made
            for field in UNDERSTOOD_FIELDS:
                if field in vectors.data.facets:
                    positions, codes, values = vectors.data.facets[field]
                    held = np.unique(np.asarray(codes)[np.asarray(positions) >= start])
                    facets[field] = [values[c] for c in held.tolist()]
            prices = vectors.data.prices[start:] if vectors.data.prices is not None else None
            tail = Vocabulary.build(self.store(name).vocabulary_texts(changed_since=since), facets, prices)
            return whole.extended(tail, synonyms)

        return self._per_generation("vocabulary", name, vectors.generation, extend)

    def _whole_vocabulary(self, name: str, vectors: CollectionVectors, synonyms: list[list[str]]) -> Vocabulary:
        """The vocabulary of a whole build. Counting its products' words is the slow part (20 s at 1M
        products, most of a cold start): it is kept beside the build's snapshot, for the next process."""
        store = self.store(name)
        folder = snapshot_dir(self.collections_dir / name, store.incarnation, vectors.generation,
                              exact_limit=self.settings.exact_search_limit, quantize=self.settings.quantized_scan)
        saved = snapshot.load_extra(folder, "words") if self.settings.vector_snapshots else None
        try:
            counted = CountedWords(words=dict(saved["words"]), surface=dict(saved["surface"])) if saved else None
        except (KeyError, TypeError, ValueError):  # not what save_extra wrote: counted again
            counted = None
        if counted is None:
            counted = count_words(store.vocabulary_texts())
            if self.settings.vector_snapshots:
                snapshot.save_extra(folder, "words", {"words": counted.words, "surface": counted.surface})
        facets = {f: vectors.data.facets[f][2] for f in UNDERSTOOD_FIELDS if f in vectors.data.facets}
        return Vocabulary.from_words(counted, facets, vectors.data.prices, synonyms)

    def suggest(self, text: str, *, collection: str | None = None, limit: int = 8) -> list[dict[str, Any]]:
        """Completions of a partly typed query, from one collection or all (categories, words, titles)."""
        if not 1 <= limit <= MAX_SUGGESTIONS:
            raise InvalidInput(f"limit must be between 1 and {MAX_SUGGESTIONS}", field="limit")
        names = [collection] if collection else self.collection_names()
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for name in names:
            for item in self.suggester(name).suggest(text, limit):
                key = (item["kind"], item["text"].lower())
                if key in merged and "count" in item:  # the same word or category in two collections
                    merged[key]["count"] += item["count"]
                else:
                    merged.setdefault(key, item | ({"collection": name} if "id" in item else {}))
        by_kind = {k: sorted((v for (kind, _), v in merged.items() if kind == k), key=lambda v: -v.get("count", 0))
                   for k in ("category", "query", "product")}
        found = by_kind["category"][:3] + by_kind["query"][:3] + by_kind["product"]
        unique = {s["text"].lower(): s for s in reversed(found)}  # the first of each text wins
        return [s for s in found if unique[s["text"].lower()] is s][:limit]

    def complete_the_look(self, collection: str, product_id: str, limit: int = 8,
                          clicked_together: dict[str, int] | None = None) -> list[tuple[Product, str]]:
        """(product, its garment group) of items that go with a product, of other groups than its own.
        The garments of the same indexed look (attribute `look`) and `clicked_together` (product id ->
        searches in which both were clicked) rank first."""
        if not 1 <= limit <= 50:
            raise InvalidInput("limit must be between 1 and 50", field="limit")
        vectors = self.vectors(collection)
        position = vectors.position_of(product_id)
        if position is None:
            raise NotFound(f"product {product_id!r} is not in collection {collection!r}", field="product_id")
        together: dict[int, float] = {}
        for other, n in (clicked_together or {}).items():
            at = vectors.position_of(other)
            if at is not None:
                together[at] = together.get(at, 0.0) + float(np.log1p(n))
        look = self.get_product(collection, product_id).attributes.get("look")
        if look:
            store = self.store(collection)
            for at in vectors.positions_of_rows(store.filter_rows(Filters(equals={"look": (str(look),)}))):
                together[int(at)] = together.get(int(at), 0.0) + 2.0
        matches = complete_the_look(vectors, position, limit, together)
        products = {p.id: p for p in self.store(collection).get_products([vectors.data.ids[m.position]
                                                                          for m in matches])}
        return [(products[vectors.data.ids[m.position]], m.group) for m in matches
                if vectors.data.ids[m.position] in products]

    def suggester(self, name: str) -> Suggester:
        vectors = self.vectors(name)

        def build() -> Suggester:
            categories: list[tuple[str, int]] = []
            if "category" in vectors.data.facets:
                categories = list(vectors.facet_counts("category", vectors.live_positions()).items())
            return Suggester.build(self.store(name).product_titles(), categories)

        behind = "titles" if vectors.live_size >= REFRESH_BEHIND_PRODUCTS else None
        return self._per_generation("suggester", name, vectors.generation, build, behind=behind)

    def synonyms(self, name: str) -> list[list[str]]:
        """The collection's own synonym groups (the built-in ones always apply too)."""
        return parse_synonyms(self.store(name).meta().get("synonyms", "[]"))

    def set_synonyms(self, name: str, groups: list[list[str]]) -> list[list[str]]:
        """Replaces the collection's synonym groups; searches use them at once."""
        clean = check_synonyms(groups)
        self.store(name).set_meta("synonyms", json.dumps(clean), bump=True)
        return clean

    def rules(self, name: str) -> list[Rule]:
        """The collection's merchandising rules, in the order they were added."""
        return parse_rules(self.store(name).meta().get("rules", "[]"))

    def add_rule(self, name: str, raw: dict[str, Any]) -> Rule:
        """Checks and stores a rule; searches apply it at once. A pinned or hidden product must exist."""
        rule = check_rule(raw)
        with self._writing(name):
            store = self.store(name)
            if rule.product_id is not None and not store.get_products([rule.product_id]):
                raise NotFound(f"product {rule.product_id!r} is not in collection {name!r}", field="product_id")
            rules = self.rules(name)
            if len(rules) >= MAX_RULES:
                raise InvalidInput(f"a collection holds at most {MAX_RULES} rules", field="rules")
            store.set_meta("rules", dump_rules([*rules, rule]), bump=True)
        return rule

    def delete_rule(self, name: str, rule_id: str) -> None:
        with self._writing(name):
            rules = self.rules(name)
            kept = [r for r in rules if r.id != rule_id]
            if len(kept) == len(rules):
                raise NotFound(f"no rule {rule_id!r} in collection {name!r}", field="rule_id")
            self.store(name).set_meta("rules", dump_rules(kept), bump=True)

    def merchandising(self, name: str) -> Merchandising:
        """The rules with the products their conditions match, resolved once per collection generation."""
        store = self.store(name)
        return self._per_generation("merchandising", name, store.generation(), lambda: Merchandising(
            self.rules(name), rows_of=partial(_rows_with, store)))

    def model_versions(self, name: str) -> ModelVersions:
        return ModelVersions(self.store(name), self.collections_dir / name / "models")

    def active_model(self, name: str) -> str:
        return self.store(name).meta().get("model_version", BASE)

    def heads(self, name: str) -> CrossModal | None:
        """The shared space a collection searches with: its CLIP checkpoint, or its active heads version
        (else the packaged base)."""
        encoder = self.image_model_of(name)
        clip = encoder.startswith(CLIP_PREFIX)
        active = self.active_model(name)
        key = (name, f"{encoder}#{active}")  # one object per model: vectors compare it
        with self._lock:
            if key not in self._heads:
                if not clip:
                    self._heads[key] = self.model_versions(name).load(active, image_model=encoder)
                else:  # the bare checkpoint, or a version `vitrine train` adapted for this collection
                    bare = ClipCrossModal(self._clip_model(encoder)[0])
                    self._heads[key] = bare if active == BASE else ClipAdapter.from_bytes(
                        bare, *self.model_versions(name).read(active), source=f"collection {name!r} {active}")
            return self._heads[key]

    def use_model(self, name: str, version: str) -> str:
        """Makes `version` (`base` or `v<N>`) the collection's active model; searches change at once."""
        versions = self.model_versions(name)
        version = version if version == BASE else f"v{parse_version(version)}"
        if version != BASE:
            versions.read(version)  # NotFound for an unknown version, before anything changes
        self.store(name).set_meta("model_version", version, bump=True)
        return version

    def labeller(self, collection: str | None = None) -> ZeroShotLabeller:
        """Zero-shot labels with a collection's model and its own values added to the default lists, weighed
        by how many of its products hold them (or the base model and the defaults alone)."""
        key = (collection or "", self.store(collection).generation() if collection else 0)
        with self._lock:
            cached = self._labellers.get(collection or "")
            if cached is not None and cached[0] == key:
                return cached[1]
        heads = self.heads(collection) if collection else load_base_heads()
        if heads is None:
            raise ModelUnavailable("no fashion model: train the base model with `vitrine train --base`")
        found: dict[str, list[tuple[str, int]]] = {}
        if collection:
            store = self.store(collection)
            found = {"category": store.value_counts("category"), "colour": store.value_counts("colour"),
                     "pattern": [c for f in PATTERN_FIELDS for c in store.value_counts(f)]}
        labeller = ZeroShotLabeller(heads, self.text_encoder, *collection_vocabulary(found))
        with self._lock:
            self._labellers[collection or ""] = (key, labeller)
        return labeller

    def label_image(self, data: bytes, collection: str | None = None) -> dict[str, list[Label]]:
        embedder = self.embedder_for(collection) if collection else self.embedder
        with self.decoding():
            photo = embedder.prepare(data, max_pixels=self.settings.max_query_pixels)
        return self.labeller(collection).label(embedder.finish(photo))[0]

    def get_product(self, collection: str, product_id: str) -> Product:
        found = self.store(collection).get_products([product_id])
        if not found:
            raise NotFound(f"product {product_id!r} is not in collection {collection!r}", field="product_id")
        return found[0]

    # -- ingest -----------------------------------------------------------------------------------

    def ingest(
        self, collection: str, path: Path, *, mapping: dict[str, str] | None = None, fmt: str | None = None,
        prune: bool = False, progress: Progress | None = None, encoder: str | None = None,
        media_root: str | None = None,
    ) -> IngestReport:
        """Creates the collection if needed; the report is also saved under the collection's folder.
        `media_root`: where a Magento export's image paths are, a folder (read like the catalog's own)
        or an http(s) base URL."""
        path = Path(path)
        options, roots = self._read_options(media_root)
        existed = collection in self.collection_names()
        store = self.create_collection(collection, encoder=encoder)
        fetcher = ImageFetcher(base_dir=path.parent, cache_dir=self.home / "cache" / "downloads",
                               policy=self._fetch_policy(), extra_roots=roots)
        image_model = self.image_model_of(collection)
        ingestor = Ingestor(store=store, fetcher=fetcher, embedder=self.embedder_of(image_model),
                            image_model=image_model, text_encoder=self.text_encoder,
                            batch_size=self.settings.ingest_batch, io_threads=self.settings.download_concurrency,
                            photos=self.photos)
        # An uploaded or downloaded catalog is shown by its file name, never by where the server keeps it.
        uploaded = path.resolve().is_relative_to(self.uploads_dir.resolve())
        report = IngestReport(collection=collection, source=path.name if uploaded else str(path))
        try:
            ingestor.run(path=path, mapping=mapping, fmt=fmt, prune=prune, progress=progress, report=report,
                         options=options)
        except CollectionGone:
            raise  # deleted meanwhile: nothing left to clean up
        except BaseException:
            if not existed and store.count() == 0:
                self.delete_collection(collection)  # a refused first ingest leaves no empty collection
            raise
        finally:
            ingestor.close()
            fetcher.close()
            if report.completed:
                stamp = time.strftime("%Y%m%d-%H%M%S")
                report_path = report.save(self.collections_dir / collection / "reports" / f"ingest-{stamp}.json")
                store.set_meta("last_ingest_report", str(report_path))
        return report

    @staticmethod
    def _read_options(media_root: str | None) -> tuple[ReadOptions, tuple[Path, ...]]:
        if media_root is None or is_url(media_root):
            return ReadOptions(media_root=media_root), ()
        folder = Path(media_root).expanduser().resolve()
        if not folder.is_dir():
            raise InvalidInput(f"media root {media_root!r} is not a folder or an http(s) URL", field="media_root")
        return ReadOptions(media_root=str(folder)), (folder,)

    def put_product(self, collection: str, record: ProductRecord, photos: list[bytes]) -> Product:
        """Adds or replaces one product with its photos (bytes). Every photo is checked before anything
        is stored; photos are kept content-addressed under the home."""
        if not photos:
            raise InvalidInput("a product needs at least one photo", field="images")
        if len(photos) > MAX_PHOTOS_PER_PRODUCT:
            raise InvalidInput(f"at most {MAX_PHOTOS_PER_PRODUCT} photos per product", field="images")
        # A new collection is created (with the built-in encoder) only once every photo has been read.
        try:
            image_model = self.image_model_of(collection)
        except NotFound:  # no such collection (or deleted just now): it is made with the built-in encoder
            image_model = IMAGE_MODEL
        embedder = self.embedder_of(image_model)
        cache = embedder.cache or self.feature_cache
        arrays = [embedder.preprocess(data) for data in photos]  # raises ImageError for a bad one
        hashes = [hashlib.sha256(data).hexdigest() for data in photos]
        cached = cache.get_many(hashes)
        missing = [i for i, sha in enumerate(hashes) if sha not in cached]
        fresh = dict(zip([hashes[i] for i in missing], embedder.encode_arrays([arrays[i] for i in missing]),
                         strict=True))
        cache.put_many(fresh)
        features = cached | fresh
        paths = [self.photos.put(sha, data) for data, sha in zip(photos, hashes, strict=True)]
        refs = tuple(f"upload:{sha}" for sha in hashes)
        record = replace(record, image_refs=refs)
        write = ProductWrite(
            record=record, text_vector=self.text_encoder.encode([record.search_text])[0],
            images=tuple(ImageWrite(ref=ref, path=str(path), sha256=sha, features=features[sha])
                         for ref, path, sha in zip(refs, paths, hashes, strict=True)),
        )
        with self._writing(collection):
            store = self.create_collection(collection)
            store.upsert([write], image_model=image_model)
            return store.get_products([record.id])[0]

    def save_catalog_upload(self, stream: BinaryIO, filename: str, *, mapping: dict[str, str] | None = None,
                            fmt: str | None = None) -> Path:
        """Stores an uploaded catalog (or a zip of one with its photos) under the home and reads it through
        once as ingest will; returns the catalog file. A refused upload leaves nothing behind."""
        catalog = save_upload(stream, filename, uploads_dir=self.uploads_dir,
                              max_bytes=self.settings.max_catalog_upload_bytes,
                              max_archive_bytes=self.settings.max_archive_bytes)
        try:
            check_catalog(catalog, mapping=mapping, fmt=fmt)
        except BaseException:
            discard_upload(catalog, self.uploads_dir)
            raise
        return catalog

    def share_upload(self, catalog: Path) -> str | None:
        """The uploaded file behind `catalog` put in object storage, for a worker on another machine
        (`fetch_shared_upload`); None without object storage."""
        if self.photos.remote is None:
            return None
        folder = self.uploads_dir / catalog.resolve().relative_to(self.uploads_dir.resolve()).parts[0]
        unpacked = folder / "catalog"
        if not unpacked.is_dir():  # a catalog file, as uploaded
            return self.photos.share(f"uploads/{folder.name}/{catalog.name}", catalog.read_bytes())
        buffer = io.BytesIO()  # a zip, unpacked here: packed again (stored, photos are compressed already)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for path in sorted(unpacked.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(unpacked).as_posix())
        return self.photos.share(f"uploads/{folder.name}/catalog.zip", buffer.getvalue())

    def fetch_shared_upload(self, location: str) -> Path:
        """An upload another machine shared, stored and unpacked here as it was there; its catalog file."""
        return save_upload(io.BytesIO(self.photos.get(location)), location.rsplit("/", 1)[-1],
                           uploads_dir=self.uploads_dir, max_bytes=self.settings.max_catalog_upload_bytes,
                           max_archive_bytes=self.settings.max_archive_bytes)

    @property
    def uploads_dir(self) -> Path:
        return self.home / "uploads"

    def fetch_catalog(self, url: str, *, mapping: dict[str, str] | None = None, fmt: str | None = None) -> Path:
        """Downloads a catalog (or a zip) from an http(s) URL, with the address guard, into the home. A
        Shopify store's `/products.json` is read page by page (`?limit=250&page=N`) into one file."""
        s = self.settings
        policy = FetchPolicy(max_bytes=s.max_catalog_upload_bytes, timeout_s=s.download_timeout_s, retries=0,
                             allow_private=s.allow_private_urls)
        if shopify.is_store_url(url) and fmt in (None, "shopify-json"):
            data = shopify.fetch_store(url, lambda page: fetch_once(page, policy, field="url"),
                                       max_bytes=s.max_catalog_upload_bytes)
        else:
            data = fetch_once(url, policy, field="url")
        name = urlsplit(url).path.rsplit("/", 1)[-1] or "catalog"
        if not name.lower().endswith((*CATALOG_SUFFIXES, ".zip")):
            name += ".txt"  # a feed URL without a suffix (/feeds/google): its content tells its format
        return self.save_catalog_upload(io.BytesIO(data), name, mapping=mapping, fmt=fmt)

    def _fetch_policy(self) -> FetchPolicy:
        s = self.settings
        return FetchPolicy(max_bytes=s.max_download_bytes, timeout_s=s.download_timeout_s,
                           retries=s.download_retries, allow_private=s.allow_private_urls)

    # -- search -----------------------------------------------------------------------------------

    def search(self, query: Query) -> SearchResponse:
        """Searches one collection, or every one; a collection deleted during a search over all of them
        is left out (the search runs again without it)."""
        for attempt in range(3):
            try:
                return self._search(query)
            except NotFound:
                if query.collection or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _search(self, query: Query) -> SearchResponse:
        names = [query.collection] if query.collection else self.collection_names()
        if query.product_id is not None and not query.collection:
            raise InvalidInput("more-like-this needs a collection", field="collection")
        targets = [SearchTarget(name=n, store=self.store(n), vectors=partial(self.vectors, n),
                                embedder=self.embedder_for(n), vocabulary=partial(self.vocabulary, n),
                                merchandising=partial(self.merchandising, n))
                   for n in names]
        started = time.perf_counter()
        key = query_key(query, [(t.name, t.store.generation()) for t in targets])
        cached = self.results_cache.get(key)
        if cached is not None:
            elapsed_ms = (time.perf_counter() - started) * 1000
            return replace(cached, cached=True, timing_ms={"encode": 0.0, "index": 0.0, "fetch": 0.0,
                                                           "total": elapsed_ms})
        photos = None
        if query.image is not None:
            with self.decoding():
                photos = prepare_query_photo(query.image, targets, max_pixels=self.settings.max_query_pixels)
        with self._search_slots:
            response = self.searcher.search(query, targets, photos=photos)
        if not self._stale.intersection(names):  # read from an older generation: not the key's results
            self.results_cache.put(key, response)
        return response

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """A slot for decoding a query photo, or Busy once none frees within decode_wait_s."""
        if not self._decode_slots.acquire(timeout=self.settings.decode_wait_s):
            raise Busy("too many photos are being decoded right now; retry shortly")
        try:
            yield
        finally:
            self._decode_slots.release()

    def load_query_image(self, ref: str) -> bytes:
        """The bytes of a query image given as a local path or an http(s) URL (fetched with the URL guard)."""
        if is_url(ref):
            # Not cached: anonymous searches must not fill the disk, nor read what another setting fetched.
            data = fetch_once(ref, self._fetch_policy(), field="image_url")
            if sniff_image_type(data) is None:
                raise ImageError(f"{ref!r} did not return an image", field="image_url")
            return data
        path = Path(ref).expanduser()
        if not path.is_file():
            raise ImageError(f"image file not found: {ref}", field="image")
        if path.stat().st_size > self.settings.max_download_bytes:
            raise ImageError(f"image file is over {self.settings.max_download_bytes} bytes", field="image")
        return path.read_bytes()


def _rows_with(store: CollectionStore, field: str, value: str) -> Array:
    """Store rows of the products a rule's condition names."""
    if field == IN_STOCK:
        return store.stock_rows(value == "true")
    return store.filter_rows(Filters(equals={field: (value,)}))


@contextmanager
def open_engine(settings: Settings | None = None, *, serve_stale: bool = True) -> Iterator[Engine]:
    engine = Engine(settings or Settings(), serve_stale=serve_stale)
    try:
        yield engine
    finally:
        engine.close()


def open_backend(settings: Settings, collections_dir: Path) -> StoreBackend:
    """PostgreSQL when `database_url` is set, else SQLite files under the home."""
    if settings.database_url:
        from vitrine.index.postgres_store import PostgresCollections

        return PostgresCollections(settings.database_url, collections_dir, pool_size=settings.database_pool_size)
    return SqliteCollections(collections_dir)
