"""Runs a Query over one or more collections: encode, score every signal on the (filtered) products,
fuse, re-score the best candidates exactly, page, and fetch the page's products.

The first scoring pass reads int8 copies of the vector tables (`vitrine.index.quantized`; above the
exact limit, the HNSW graphs' own 8-bit codes): its scores are within a few thousandths of the exact
ones. The page, plus a margin, is then re-scored from the float32 tables, so the hits, their order
and their scores are exact; only a product that the approximate pass put behind RESCORE_MARGIN
others could be missed, which would take errors far larger than the quantisation's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from vitrine.arrays import Array
from vitrine.errors import NotFound
from vitrine.index import partitions
from vitrine.index.store import CollectionStore, Filters, Product
from vitrine.index.vectors import CollectionVectors
from vitrine.models.embedder import ImageEmbedder, PreparedPhoto
from vitrine.models.heads import CrossModal
from vitrine.models.text_encoder import TextEncoder
from vitrine.search.cache import LruCache
from vitrine.search.query import Hit, Query, SearchResponse
from vitrine.search.rules import Merchandising, Rule
from vitrine.search.scoring import fuse, image_search_vectors, normalise_rows, top_indices
from vitrine.search.understanding import Understanding, understand
from vitrine.search.variants import choose_variant
from vitrine.search.vocabulary import Vocabulary

ANN_CANDIDATES = 2000
RESCORE_MARGIN = 200  # candidates past the page that are re-scored exactly
MIN_SCORE_BORDER = 0.02  # approximate totals this close to min_score are re-scored before counting
SORT_MARGIN = 0.1  # a search sorted by price or age keeps the products within this of the best score
FACET_BOOST = 0.05  # added per understood facet (colour, category...) a product has: chosen on dev queries


@dataclass(frozen=True)
class SearchTarget:
    """One open collection as the searcher needs it: its store, and its current in-memory vectors."""

    name: str
    store: CollectionStore
    vectors: Callable[[], CollectionVectors]
    embedder: ImageEmbedder  # the collection's photo encoder: a query photo is encoded the same way
    vocabulary: Callable[[], Vocabulary] | None = None  # its words, for query understanding
    merchandising: Callable[[], Merchandising] | None = None  # its rules


@dataclass
class _Scored:
    target: SearchTarget
    vectors: CollectionVectors
    positions: Array
    total: Array
    signals: dict[str, Array]
    matched_image: Array | None
    bonus: Array | None = None  # per product of the collection: added to the fused score
    rules: tuple[Rule, ...] = ()  # the collection's rules that apply to this search


def prepare_query_photo(image: bytes, targets: Sequence[SearchTarget], *,
                        max_pixels: int | None = None) -> dict[int, PreparedPhoto]:
    """The query photo decoded (or found in the cache) for each distinct encoder of `targets`, keyed
    by `id(embedder)`; encoding is left to the search."""
    encoders = {id(t.embedder): t.embedder for t in targets}
    return {key: encoder.prepare(image, max_pixels=max_pixels) for key, encoder in encoders.items()}


class Searcher:
    def __init__(
        self,
        *,
        text_encoder: TextEncoder,
        keyword_weight: float,
        cross_modal_weight: float = 0.0,
        image_cross_modal_weight: float = 0.0,
    ) -> None:
        self.text_encoder = text_encoder
        self.keyword_weight = keyword_weight
        self.cross_modal_weight = cross_modal_weight
        self.image_cross_modal_weight = image_cross_modal_weight
        self.text_vectors: LruCache[Array] = LruCache(4096)  # repeated query texts skip the encoder
        # ... and the heads: (heads, the text in their shared space)
        self.xmodal_vectors: LruCache[tuple[CrossModal, Array]] = LruCache(4096)
        # searches over several collections understand against their vocabularies merged once
        self.merged_vocabularies: LruCache[tuple[list[Vocabulary], Vocabulary]] = LruCache(16)

    def search(self, query: Query, targets: Sequence[SearchTarget],
               photos: Mapping[int, PreparedPhoto] | None = None) -> SearchResponse:
        """`photos`: the query photo already decoded per encoder (`prepare_query_photo`); otherwise it is
        decoded here."""
        started = time.perf_counter()
        asked = query.text  # rules match what the shopper typed
        understanding = self.understand(query, targets)
        if understanding is not None:
            query = replace(query, text=understanding.text, filters=_with_price(query.filters, understanding))
        text_vector = self._encode_text(query.text) if query.text else None
        photo: dict[int, tuple[Array, Array]] = {}  # per encoder: raw features and search vector
        if query.image is not None:
            prepared = photos or prepare_query_photo(query.image, targets)
            encoders = {id(t.embedder): t.embedder for t in targets}
            for key, ready in prepared.items():
                raw = encoders[key].finish(ready)
                photo[key] = (raw, image_search_vectors(raw[None])[0])
        image_vector = image_raw = None
        exclude: tuple[str, str] | None = None
        if query.product_id is not None:
            target = targets[0]
            text_vector, image_vector = self._product_vectors(target, query.product_id)
            exclude = (target.name, query.product_id)
        encoded = time.perf_counter()

        scored = []
        shared: dict[int, Array] = {}  # per model (alive for this search): the query's cross-modal vector
        for t in targets:
            if query.image is not None:
                image_raw, image_vector = photo[id(t.embedder)]
            vectors = t.vectors()
            rules = tuple(t.merchandising().applicable(asked)) if t.merchandising is not None else ()
            bonus = _add(_facet_bonus(understanding, vectors), _rule_bonus(t, rules, vectors))
            if query.browsing:
                scored.append(self._browse(query, t, vectors, bonus, rules))
                continue
            xmodal_text = self._xmodal_text(query, vectors, text_vector, shared)
            found = self._score(query, t, vectors, text_vector, image_vector, image_raw, xmodal_text,
                                exclude, approximate=True, bonus=bonus)
            found.rules = rules
            scored.append(found)
        facets = self._facets(scored, query.facets)
        owner = np.concatenate([np.full(len(s.total), i) for i, s in enumerate(scored)]) if scored else np.zeros(0, int)
        local = np.concatenate([np.arange(len(s.total)) for s in scored]) if scored else np.zeros(0, int)
        if query.sort != "relevance":
            rescore = partial(self._rescore, query, scored, text_vector=text_vector, image_vector=image_vector,
                              photo=photo, shared=shared, exclude=exclude)
            ranked, total, pinned = self._sorted(query, scored, owner, local, rescore)
            return self._response(query, ranked, total, scored, owner, local, facets, started, encoded,
                                  understanding, pinned)

        # Rank on the approximate totals; re-score the page, a margin and the min_score border exactly.
        totals = np.concatenate([s.total for s in scored]) if scored else np.zeros(0, dtype=np.float32)
        keep = np.isfinite(totals)
        if query.min_score is not None:
            keep &= totals >= query.min_score - MIN_SCORE_BORDER
        possible = np.flatnonzero(keep)
        pins = _pins(scored, owner, local)
        pinned = np.asarray([i for i, _ in pins], dtype=np.int64)
        wanted = query.offset + query.top_k + len(pins)
        candidates = possible[top_indices(totals[possible], wanted + RESCORE_MARGIN)]
        if query.min_score is not None:
            candidates = np.union1d(candidates, possible[totals[possible] < query.min_score + MIN_SCORE_BORDER])
        candidates = np.union1d(candidates, pinned)
        self._rescore(query, scored, owner[candidates], local[candidates], text_vector, image_vector, photo, shared,
                      exclude)
        totals = np.concatenate([s.total for s in scored]) if scored else totals
        keep = np.isfinite(totals)
        if query.min_score is not None:
            keep &= totals >= query.min_score
        final = candidates[keep[candidates]]  # every product not re-scored ranks behind these
        ranked = _place_pins(final[top_indices(totals[final], wanted)], pins)
        ranked = ranked[query.offset : query.offset + query.top_k]
        return self._response(query, ranked, int(keep.sum()), scored, owner, local, facets, started, encoded,
                              understanding, pinned)

    def understand(self, query: Query, targets: Sequence[SearchTarget]) -> Understanding | None:
        """What the query's words ask of these collections (None: nothing to understand, or turned off)."""
        if not query.understand or not query.text or query.product_id is not None:
            return None
        vocabularies = [t.vocabulary() for t in targets if t.vocabulary is not None]
        if not vocabularies:
            return None
        stores = [t.store for t in targets]
        key = ",".join(str(id(v)) for v in vocabularies)
        merged = self.merged_vocabularies.get(key)
        if merged is None or any(a is not b for a, b in zip(merged[0], vocabularies, strict=True)):
            # (the cached list pins the objects whose ids make its key)
            merged = (vocabularies, Vocabulary.merge(vocabularies))
            self.merged_vocabularies.put(key, merged)
        return understand(query.text, merged[1], ignore=query.ignore_understood,
                          price_given="price" in query.filters.ranges,
                          is_word=lambda word: any(store.holds_word(word) for store in stores))

    def _response(self, query: Query, ranked: Array, total: int, scored: list[_Scored], owner: Array, local: Array,
                  facets: dict[str, dict[str, int]], started: float, encoded: float,
                  understanding: Understanding | None = None, pinned: Array | None = None) -> SearchResponse:
        scored_at = time.perf_counter()
        totals = np.concatenate([s.total for s in scored]) if scored else np.zeros(0, dtype=np.float32)
        hits = self._hits(query, ranked, scored, owner, local, totals, pinned)
        done = time.perf_counter()
        return SearchResponse(
            hits=hits,
            total=total,
            facets=facets,
            timing_ms={
                "encode": (encoded - started) * 1000,
                "index": (scored_at - encoded) * 1000,
                "fetch": (done - scored_at) * 1000,
                "total": (done - started) * 1000,
            },
            offset=query.offset,
            top_k=query.top_k,
            understood=understanding.as_dict() if understanding is not None else {},
            searched_text=query.text,
        )

    @staticmethod
    def _browse(query: Query, target: SearchTarget, vectors: CollectionVectors, bonus: Array | None,
                rules: tuple[Rule, ...]) -> _Scored:
        """Every product that passes the filters, unscored (but for rules): the collection as a shop lists it."""
        positions = _filtered(target, vectors, query.filters) if query.filters else vectors.live_positions()
        total = bonus[positions].copy() if bonus is not None else np.zeros(len(positions), dtype=np.float32)
        return _Scored(target, vectors, positions, total, {}, None, bonus, rules)

    @staticmethod
    def _sorted(query: Query, scored: list[_Scored], owner: Array, local: Array,
                rescore: Callable[[Array, Array], None]) -> tuple[Array, int, Array]:
        """(the page, how many matched) of a search ordered by price or age over its whole result set.

        A browse lists every product that passes the filters. A search keeps those scoring at least
        `min_score`, or, without one, within SORT_MARGIN of the best: the set a shopper would call
        "the results", ordered as asked. Scores near that line are made exact before it is drawn, so
        which products are in the set does not depend on the approximate first pass."""
        totals = np.concatenate([s.total for s in scored]) if scored else np.zeros(0, dtype=np.float32)
        keep = np.isfinite(totals)
        if not query.browsing and keep.any():
            line = query.min_score if query.min_score is not None else float(totals[keep].max()) - SORT_MARGIN
            border = np.flatnonzero(keep & (np.abs(totals - line) < MIN_SCORE_BORDER))
            best = np.flatnonzero(keep)[top_indices(totals[keep], 1)]
            if query.min_score is None:  # the best product's exact score moves the line
                border = np.union1d(border, best)
            rescore(owner[border], local[border])
            totals = np.concatenate([s.total for s in scored])
            keep = np.isfinite(totals)
            if query.min_score is None:
                line = float(totals[keep].max()) - SORT_MARGIN
            keep &= totals >= line
        kept = np.flatnonzero(keep)
        prices = np.concatenate([s.vectors.data.prices[s.positions] if s.vectors.data.prices is not None
                                 else np.full(len(s.positions), np.nan, dtype=np.float32) for s in scored]) \
            if scored else np.zeros(0, dtype=np.float32)
        rows = np.concatenate([s.vectors.data.rows[s.positions] for s in scored]) if scored else np.zeros(0, int)
        if query.sort == "newest":
            primary = -rows[kept].astype(np.float64)  # store rows grow as products are first added
        else:
            price = prices[kept].astype(np.float64)
            primary = np.where(np.isnan(price), np.inf, price if query.sort == "price_asc" else -price)
        # lexsort: the last key first; then relevance, then collection and row, so paging is stable
        order = kept[np.lexsort((rows[kept], owner[kept], -totals[kept], primary))]
        pins: list[tuple[int, int]] = []
        if query.browsing and query.sort == "newest":  # the shop's own front page: its pins apply
            pins = _pins(scored, owner, local)
            order = _place_pins(order[: query.offset + query.top_k + len(pins)], pins)
        page = order[query.offset : query.offset + query.top_k]
        if not query.browsing:
            rescore(owner[page], local[page])
        return page, len(kept), np.asarray([i for i, _ in pins], dtype=np.int64)

    @staticmethod
    def _facets(scored: list[_Scored], names: Sequence[str]) -> dict[str, dict[str, int]]:
        """Value counts over the scored products of every collection, most frequent first."""
        facets: dict[str, dict[str, int]] = {}
        for s in scored:
            for name in names:
                if name not in s.vectors.data.facets:
                    continue
                merged = facets.setdefault(name, {})
                for value, n in s.vectors.facet_counts(name, s.positions).items():
                    merged[value] = merged.get(value, 0) + n
        return {k: dict(sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))) for k, v in facets.items()}

    def _encode_text(self, text: str) -> Array:
        vector = self.text_vectors.get(text)
        if vector is None:
            vector = self.text_encoder.encode([text])[0]
            self.text_vectors.put(text, vector)
        return vector

    def _product_vectors(self, target: SearchTarget, product_id: str) -> tuple[Array, Array | None]:
        vectors = target.vectors()
        position = vectors.position_of(product_id)
        if position is None:
            raise NotFound(f"product {product_id!r} is not in collection {target.name!r}", field="product_id")
        text = vectors.data.text_vectors[position]
        start, count = vectors.image_start[position], vectors.image_count[position]
        image = None
        if count:
            image = normalise_rows(vectors.image_vectors[start : start + count].mean(axis=0)[None])[0]
        return text, image

    def _xmodal_text(
        self, query: Query, vectors: CollectionVectors, text_vector: Array | None, shared: dict[int, Array]
    ) -> Array | None:
        """The query in the collection's own cross-modal space (its heads may be fine-tuned); None without one."""
        heads = vectors.heads
        if heads is None or vectors.xmodal_vectors is None or not query.text or text_vector is None:
            return None
        if id(heads) not in shared:  # the collections of one search that share a model share its vector
            key = f"{id(heads)}\0{query.text}"
            cached = self.xmodal_vectors.get(key)
            if cached is None or cached[0] is not heads:  # the heads object pins the id it was cached under
                cached = (heads, heads.text_query([query.text], text_vector[None])[0])
                self.xmodal_vectors.put(key, cached)
            shared[id(heads)] = cached[1]
        return shared[id(heads)]

    def _rescore(
        self,
        query: Query,
        scored: list[_Scored],
        owners: Array,
        locals_: Array,
        text_vector: Array | None,
        image_vector: Array | None,
        photo: dict[int, tuple[Array, Array]],
        shared: dict[int, Array],
        exclude: tuple[str, str] | None,
    ) -> None:
        """Exact scores, signals and matched photos for the given entries, written over the approximate ones."""
        for o in np.unique(owners):
            s = scored[int(o)]
            at = locals_[owners == o]
            image_raw = None
            if query.image is not None:
                image_raw, image_vector = photo[id(s.target.embedder)]
            keyword = s.signals["keyword"][at] if "keyword" in s.signals else None
            exact = self._score(query, s.target, s.vectors, text_vector, image_vector, image_raw,
                                self._xmodal_text(query, s.vectors, text_vector, shared), exclude,
                                positions=s.positions[at], keyword=keyword, bonus=s.bonus)
            s.total[at] = exact.total
            for name, values in exact.signals.items():
                s.signals[name][at] = values
            if exact.matched_image is not None and s.matched_image is not None:
                s.matched_image[at] = exact.matched_image

    def _score(
        self,
        query: Query,
        target: SearchTarget,
        vectors: CollectionVectors,
        text_vector: Array | None,
        image_vector: Array | None,
        image_raw: Array | None,
        xmodal_text: Array | None,
        exclude: tuple[str, str] | None,
        *,
        positions: Array | None = None,
        keyword: Array | None = None,
        approximate: bool = False,
        bonus: Array | None = None,
    ) -> _Scored:
        """Every signal and the fused total for the collection's products (those of the filters, the ANN
        candidates, or `positions` when given). `keyword`: the keyword scores at `positions`, if known."""
        heads, photos = vectors.heads, vectors.xmodal_vectors
        xmodal_image = heads.image_vectors(image_raw[None])[0] if heads and photos is not None \
            and image_raw is not None and self.image_cross_modal_weight > 0 else None
        if positions is None and query.filters:
            positions = _filtered(target, vectors, query.filters)
            chosen = None if vectors.exact or len(positions) < vectors.live_size * partitions.SHARE else \
                partitions.for_filters(vectors.partitions, query.filters)
            if chosen:  # a broad filter: its products near the query, found through the graphs
                wanted = max(ANN_CANDIDATES, 10 * (query.offset + query.top_k))
                positions = vectors.filter_candidates(text_vector, image_vector, wanted, xmodal_text,
                                                      within=positions, partitions=chosen)
        elif positions is None and not vectors.exact:
            wanted = max(ANN_CANDIDATES, 10 * (query.offset + query.top_k))
            positions = vectors.ann_candidates(text_vector, image_vector, wanted, xmodal_text)
        signals: dict[str, Array] = {}
        text_score = image_score = matched = None
        if text_vector is not None:
            semantic = vectors.text_scores(text_vector, positions, approximate=approximate)
            signals["semantic"] = semantic
            text_score = semantic
            if query.text:
                if keyword is None:
                    keyword = self._keyword_scores(target, vectors, query.text, positions)
                signals["keyword"] = keyword
                text_score = (1 - self.keyword_weight) * semantic + self.keyword_weight * keyword
            if xmodal_text is not None:
                weight = self.cross_modal_weight if query.cross_modal_weight is None else query.cross_modal_weight
                cross, matched = vectors.image_scores(xmodal_text, positions, shared=True, approximate=approximate)
                cross = np.where(np.isfinite(cross), cross, 0.0).astype(np.float32)  # no photo: no evidence
                signals["cross_modal"] = cross
                text_score = (1 - weight) * text_score + weight * cross
            signals["text"] = text_score
        if image_vector is not None:
            image_score, matched = vectors.image_scores(image_vector, positions, approximate=approximate)
            signals["visual"] = image_score
            if xmodal_image is not None:
                cross_image, _ = vectors.image_scores(xmodal_image, positions, shared=True, approximate=approximate)
                signals["visual_cross_modal"] = cross_image
                weight = self.image_cross_modal_weight
                image_score = (1 - weight) * image_score + weight * cross_image
            signals["image"] = image_score
        alpha = query.effective_alpha
        if query.product_id is not None and image_score is not None and text_score is not None:
            # "more like this": images first, product text as the tie-breaker
            total = fuse(image_score, text_score, 0.5 if query.alpha is None else alpha)
        else:
            total = fuse(image_score, text_score, alpha)
        total = np.array(total, dtype=np.float32)  # a copy: the re-scoring pass writes into it
        final_positions = np.arange(vectors.size) if positions is None else positions
        if bonus is not None:  # understood facets and merchandising rules, shown as their own signal
            signals["boost"] = bonus[final_positions]
            total += signals["boost"]
        if exclude is not None and exclude[0] == target.name:
            own = vectors.position_of(exclude[1])
            total[final_positions == own] = -np.inf
        if vectors.dead is not None:  # a full scan also scored the products that a later write replaced
            total[vectors.dead[final_positions]] = -np.inf
        return _Scored(target, vectors, final_positions, total, signals, matched, bonus)

    @staticmethod
    def _keyword_scores(
        target: SearchTarget, vectors: CollectionVectors, text: str, positions: Array | None
    ) -> Array:
        if positions is not None:
            # Candidates: each one's row looked up in the words' postings, rather than every posting (100k+
            # for a common word in a million products) added up. A position a later write replaced may
            # read its successor's score: the searcher drops such positions.
            return target.store.keyword_scores_of(text, vectors.data.rows[positions])
        rows, scores = target.store.keyword_scores(text)  # rows ascending
        full = np.zeros(vectors.size, dtype=np.float32)
        if len(rows):
            found, at = vectors.locate_rows(rows)
            full[at[found]] = scores[found]
        return full

    @staticmethod
    def _hits(
        query: Query, ranked: Array, scored: list[_Scored], owner: Array, local: Array, totals: Array,
        pinned: Array | None = None,
    ) -> list[Hit]:
        pinned_set = set() if pinned is None else {int(i) for i in pinned}
        wanted: dict[int, list[str]] = {}
        for i in ranked:
            s = scored[int(owner[i])]
            wanted.setdefault(int(owner[i]), []).append(s.vectors.data.ids[int(s.positions[int(local[i])])])
        products: dict[tuple[int, str], Product] = {}
        for o, ids in wanted.items():
            for p in scored[o].target.store.get_products(ids):
                products[(o, p.id)] = p
        hits: list[Hit] = []
        for i in ranked:
            o, li = int(owner[i]), int(local[i])
            s = scored[o]
            product = products.get((o, s.vectors.data.ids[int(s.positions[li])]))
            if product is None:  # deleted between scoring and fetching
                continue
            matched_ref = matched_pos = None
            if s.matched_image is not None and s.matched_image[li] >= 0:
                matched_pos = int(s.vectors.data.image_position[s.matched_image[li]])
                matched_ref = next((im.ref for im in product.images if im.position == matched_pos), None)
            main = product.main_image
            variant = choose_variant(product, text=query.text, filters=query.filters, matched_image=matched_ref)
            price, colour = product.price, product.colour
            if variant is not None:
                price = variant.price if variant.price is not None else price
                colour = variant.colour or colour
                # the variant's photo: the one that matched when it is the variant's, else its first
                shown = matched_ref if matched_ref in variant.image_refs else None
                main = next((im for im in product.images if im.ref == shown), None) or next(
                    (im for im in product.images if im.ref in variant.image_refs), main)
            hits.append(Hit(
                collection=s.target.name, id=product.id, title=product.title, price=price,
                category=product.category, colour=colour, main_image=main.ref if main else None,
                main_image_position=main.position if main else None,
                matched_image=matched_ref, matched_image_position=matched_pos, score=float(totals[i]),
                scores={k: float(v[li]) for k, v in s.signals.items()}, variant=variant,
                variants=len(product.variants), pinned=int(i) in pinned_set,
            ))
        return hits


def _with_price(filters: Filters, understanding: Understanding) -> Filters:
    if understanding.price is None:
        return filters
    return Filters(equals=filters.equals, ranges={**filters.ranges, "price": understanding.price})


def _facet_bonus(understanding: Understanding | None, vectors: CollectionVectors) -> Array | None:
    """FACET_BOOST for each understood facet a product has (any of its values, variants' included)."""
    if understanding is None or not understanding.values:
        return None
    bonus = np.zeros(vectors.size, dtype=np.float32)
    for name, wanted in understanding.values.items():
        if name in vectors.data.facets:
            bonus[vectors.holding(name, wanted)] += FACET_BOOST
    return bonus


def _filtered(target: SearchTarget, vectors: CollectionVectors, filters: Filters) -> Array:
    """Positions of the products that pass `filters`, kept per snapshot: shoppers click the same few
    colours, sizes and price bands, and reading a filter's rows costs 15-20 ms when it holds 56k of a
    million products. A write makes a new snapshot, so the kept positions never outlive it."""
    key = (tuple(sorted((f, tuple(v)) for f, v in filters.equals.items())),
           tuple(sorted((f, r.low, r.high) for f, r in filters.ranges.items())))
    return vectors.kept_positions(key, lambda: vectors.positions_of_rows(target.store.filter_rows(filters)))


def _add(a: Array | None, b: Array | None) -> Array | None:
    if a is None or b is None:
        return a if b is None else b
    summed: Array = a + b
    return summed


def _rule_bonus(target: SearchTarget, rules: tuple[Rule, ...], vectors: CollectionVectors) -> Array | None:
    if not rules or target.merchandising is None:
        return None
    return target.merchandising().bonus(rules, vectors.size, vectors.positions_of_rows, vectors.position_of)


def _pins(scored: list[_Scored], owner: Array, local: Array) -> list[tuple[int, int]]:
    """(global index, position) of each pinned product that passed the filters and is not hidden."""
    pins: list[tuple[int, int]] = []
    offsets = np.cumsum([0] + [len(s.total) for s in scored])
    for o, s in enumerate(scored):
        for rule in s.rules:
            if rule.action != "pin" or rule.product_id is None or rule.position is None:
                continue
            at = s.vectors.position_of(rule.product_id)
            found = np.flatnonzero(s.positions == at) if at is not None else np.zeros(0, dtype=np.int64)
            if len(found) and np.isfinite(s.total[found[0]]):
                pins.append((int(offsets[o] + found[0]), rule.position))
    first: dict[int, int] = {}  # a product pinned twice keeps its highest place
    for i, position in sorted(pins, key=lambda ip: ip[1]):
        first.setdefault(i, position)
    return list(first.items())


def _place_pins(order: Array, pins: list[tuple[int, int]]) -> Array:
    """`order` with each pinned entry moved to its position (1-based), the others keeping their order."""
    if not pins:
        return order
    pinned = {i for i, _ in pins}
    placed = [int(i) for i in order if int(i) not in pinned]
    for i, position in pins:
        placed.insert(min(position - 1, len(placed)), i)
    return np.asarray(placed, dtype=np.int64)
