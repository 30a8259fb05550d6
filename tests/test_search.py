"""Search over the full Luma catalog: the must-show queries, filters against brute force, facets,
paging, thresholds, several collections, "more like this", and bad queries."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from conftest import LUMA, luma_rows, make_settings, write_catalog

from vitrine.engine import Engine
from vitrine.errors import ImageError, InvalidInput, NotFound
from vitrine.index.store import Filters, RangeFilter
from vitrine.search.query import Query

HOODIE_CATEGORIES = {"Hoodies & Sweatshirts"}


def test_black_hoodie_text_query(luma_engine: Engine) -> None:
    response = luma_engine.search(Query(text="black hoodie", collection="luma", top_k=5))
    assert [h.category for h in response.hits] == ["Hoodies & Sweatshirts"] * 5
    assert all("Black" in h.colour for h in response.hits[:3])
    # "black" and "hoodie" name the collection's colour and category: understood, and a boost of their own
    assert set(response.hits[0].scores) == {"semantic", "keyword", "cross_modal", "text", "boost"}
    assert response.understood == {"colour": ["Black"], "category": ["Hoodies"]}
    assert response.timing_ms["total"] > 0


def test_sku_hits_by_keyword(luma_engine: Engine) -> None:
    assert luma_engine.search(Query(text="MJ02", collection="luma", top_k=1)).hits[0].id == "MJ02"


@pytest.mark.parametrize("photo, product", [
    ("mh01-gray_main.jpg", "MH01"), ("wj03-red_back.jpg", "WJ03"), ("ms01-blue_back.jpg", "MS01"),
])
def test_photo_query_finds_its_product_and_matched_image(luma_engine: Engine, photo: str, product: str) -> None:
    hit = luma_engine.search(Query(image=(LUMA / "images" / photo).read_bytes(), collection="luma", top_k=3)).hits[0]
    assert hit.id == product
    assert hit.matched_image == f"images/{photo}"
    assert hit.scores["image"] == pytest.approx(1.0, abs=1e-4)


def test_more_like_this_returns_other_hoodies(luma_engine: Engine) -> None:
    hits = luma_engine.search(Query(product_id="MH01", collection="luma", top_k=5)).hits
    assert "MH01" not in [h.id for h in hits]
    assert sum(h.category in HOODIE_CATEGORIES for h in hits) >= 4


def test_hybrid_alpha_moves_between_signals(luma_engine: Engine) -> None:
    photo = (LUMA / "images" / "mp01-black_main.jpg").read_bytes()
    text_only = luma_engine.search(Query(text="gym bag", image=photo, alpha=0.0, collection="luma", top_k=3))
    image_only = luma_engine.search(Query(text="gym bag", image=photo, alpha=1.0, collection="luma", top_k=3))
    assert text_only.hits[0].category == "Bags"
    assert image_only.hits[0].id == "MP01"
    for hit in text_only.hits:
        assert hit.score == pytest.approx(hit.scores["text"] + hit.scores.get("boost", 0.0), abs=1e-5)


def _brute_force(engine: Engine, query: Query, keep: set[str], k: int) -> list[str]:
    """Scores every product without filters, then filters in Python: the ground truth."""
    everything = engine.search(Query(text=query.text, image=query.image, collection="luma", top_k=1000))
    return [h.id for h in everything.hits if h.id in keep][:k]


def _matching(engine: Engine, predicate: object) -> set[str]:
    store = engine.store("luma")
    products = store.get_products(list(store.product_hashes()))
    return {p.id for p in products if predicate(p)}  # type: ignore[operator]


@pytest.mark.parametrize("filters, predicate", [
    (Filters(equals={"category": ("Tees",)}), lambda p: p.category == "Tees"),
    (Filters(equals={"colour": ("red", "Yellow")}),
     lambda p: bool({"Red", "Yellow"} & set(p.colour.split("|")))),
    (Filters(ranges={"price": RangeFilter(20, 45)}), lambda p: p.price is not None and 20 <= p.price <= 45),
    (Filters(equals={"category": ("Pants", "Shorts"), "material": ("Cotton",)},
             ranges={"price": RangeFilter(None, 60)}),
     lambda p: p.category in ("Pants", "Shorts") and "Cotton" in p.attributes.get("material", "").split("|")
     and p.price is not None and p.price <= 60),
])
def test_filtered_search_is_exact(luma_engine: Engine, filters: Filters, predicate: object) -> None:
    keep = _matching(luma_engine, predicate)
    assert 0 < len(keep) < 191
    for text, image in [("black hoodie", None), ("running shorts", None),
                        (None, (LUMA / "images" / "ms01-blue_main.jpg").read_bytes())]:
        query = Query(text=text, image=image, collection="luma", top_k=7, filters=filters)
        response = luma_engine.search(query)
        assert [h.id for h in response.hits] == _brute_force(luma_engine, query, keep, 7)
        assert response.total == len(keep)
        assert sum(response.facets["category"].values()) == len(keep)


def test_facets_count_the_filtered_set(luma_engine: Engine) -> None:
    response = luma_engine.search(Query(text="jacket", collection="luma", filters=Filters(
        ranges={"price": RangeFilter(None, 50)})))
    cheap = _matching(luma_engine, lambda p: p.price is not None and p.price <= 50)
    store = luma_engine.store("luma")
    categories: dict[str, int] = {}
    for p in store.get_products(sorted(cheap)):
        categories[p.category] = categories.get(p.category, 0) + 1
    assert response.facets["category"] == dict(sorted(categories.items(), key=lambda kv: (-kv[1], kv[0])))
    assert response.facets["colour"]["Black"] > 0


def test_paging_and_min_score(luma_engine: Engine) -> None:
    full = [h.id for h in luma_engine.search(Query(text="women tank top", collection="luma", top_k=30)).hits]
    pages = [luma_engine.search(Query(text="women tank top", collection="luma", top_k=10, offset=o)).hits
             for o in (0, 10, 20)]
    assert [h.id for h in itertools.chain(*pages)] == full
    scored = luma_engine.search(Query(text="women tank top", collection="luma", top_k=50))
    cut = scored.hits[9].score
    above = luma_engine.search(Query(text="women tank top", collection="luma", top_k=50, min_score=cut))
    assert [h.id for h in above.hits] == [h.id for h in scored.hits if h.score >= cut]
    assert above.total == len(above.hits) >= 10


def test_search_across_collections(luma_engine: Engine, tmp_path: Path) -> None:
    rows = [r for r in luma_rows() if r["product_id"] in {"MH01", "WJ01"}]
    luma_engine.ingest("mini", write_catalog(tmp_path / "mini", rows))
    try:
        response = luma_engine.search(Query(text="Chaz Kangeroo Hoodie", top_k=3))
        # keyword statistics are per collection, so the two copies need not tie, but both lead
        assert {("luma", "MH01"), ("mini", "MH01")} <= {(h.collection, h.id) for h in response.hits}
        photo = (LUMA / "images" / "wj01-blue_main.jpg").read_bytes()
        response = luma_engine.search(Query(image=photo, top_k=2))
        assert {(h.collection, h.id) for h in response.hits} == {("luma", "WJ01"), ("mini", "WJ01")}
        luma_engine.create_collection("empty")  # an empty collection takes part without breaking anything
        for query in (Query(text="hoodie", top_k=3), Query(image=photo, top_k=3), Query(text="x", image=photo)):
            assert luma_engine.search(query).hits
    finally:
        luma_engine.delete_collection("mini")
        luma_engine.delete_collection("empty")
    assert "mini" not in luma_engine.collection_names()


def test_bad_queries(luma_engine: Engine) -> None:
    for kwargs, field in [
        ({"sort": "cheapest"}, "sort"), ({"text": "x", "alpha": 1.5}, "alpha"),
        ({"text": "x", "top_k": 0}, "top_k"), ({"text": "x", "top_k": 100_000}, "top_k"),
        ({"text": "x", "offset": -1}, "offset"), ({"text": "x", "min_score": 7}, "min_score"),
        ({"text": "x", "filters": Filters(ranges={"price": RangeFilter(50, 10)})}, "filters"),
    ]:
        with pytest.raises(InvalidInput) as error:
            Query(**kwargs)  # type: ignore[arg-type]
        assert error.value.field == field
    with pytest.raises(NotFound):
        luma_engine.search(Query(text="x", collection="nope"))
    with pytest.raises(NotFound):
        luma_engine.search(Query(product_id="NOPE", collection="luma"))
    with pytest.raises(ImageError):
        luma_engine.search(Query(image=b"GIF89a-not-really", collection="luma"))
    with pytest.raises(ImageError):
        luma_engine.load_query_image("/no/such/photo.jpg")


def test_approximate_index_agrees_with_exact(luma_home: Path, models_dir: Path) -> None:
    """Above the exact limit, HNSW proposes candidates that are then scored exactly."""
    with Engine(make_settings(luma_home, models_dir, exact_search_limit=10)) as approx, \
            Engine(make_settings(luma_home, models_dir)) as exact:
        assert not approx.vectors("luma").exact and exact.vectors("luma").exact
        for query in [Query(text="black hoodie", collection="luma", top_k=10),
                      Query(image=(LUMA / "images" / "wj03-red_back.jpg").read_bytes(), collection="luma")]:
            a = [h.id for h in approx.search(query).hits]
            e = [h.id for h in exact.search(query).hits]
            assert len(set(a) & set(e)) >= 9 and a[0] == e[0]


def test_candidates_get_every_signal_a_full_scan_gives_them(luma_copy: Path, models_dir: Path) -> None:
    """Above the exact limit only HNSW's candidates are scored: here every product, as Luma is smaller
    than the pool. Each signal (keywords looked up for the candidates' rows, the understood facets'
    boost, semantic, cross-modal) must be what a full scan gives, also once writes have left a tail."""
    from vitrine.catalog.records import record_from_fields

    queries = [Query(text="black hoodie", collection="luma", top_k=15),
               Query(text="women's yoga pants under 60", collection="luma", top_k=15),
               Query(text="orange waterproof jacket", collection="luma", top_k=15)]
    with Engine(make_settings(luma_copy, models_dir, exact_search_limit=10)) as approx, \
            Engine(make_settings(luma_copy, models_dir)) as exact:

        def alike() -> None:
            for query in queries:
                a, e = approx.search(query).hits, exact.search(query).hits
                assert [h.id for h in a] == [h.id for h in e], query.text
                for x, y in zip(a, e, strict=True):
                    assert x.scores.keys() == y.scores.keys() and "keyword" in x.scores
                    assert x.scores == pytest.approx(y.scores, abs=1e-5)
            assert any(h.scores.get("boost") for h in approx.search(queries[0]).hits)

        assert not approx.vectors("luma").exact
        alike()
        photo = (LUMA / "images" / "mh01-orange_main.jpg").read_bytes()
        approx.put_product("luma", record_from_fields("NEW-1", {
            "title": "Orange waterproof storm jacket", "category": "Jackets", "colour": "Orange"}), [photo])
        approx.put_product("luma", record_from_fields("MH01", {
            "title": "Black hoodie, rewritten", "category": "Hoodies & Sweatshirts", "colour": "Black"}), [photo])
        approx.store("luma").delete(["MH02"])
        assert approx.vectors("luma").tail is not None
        alike()
        assert "NEW-1" in [h.id for h in approx.search(queries[2]).hits]


def test_scores_are_deterministic(luma_engine: Engine) -> None:
    a = luma_engine.search(Query(text="blue jacket", collection="luma", top_k=20))
    b = luma_engine.search(Query(text="blue jacket", collection="luma", top_k=20))
    assert [h.id for h in a.hits] == [h.id for h in b.hits]
    assert np.allclose([h.score for h in a.hits], [h.score for h in b.hits])


def test_result_cache_is_invalidated_by_writes(engine: Engine, small_luma: Path) -> None:
    engine.ingest("shop", small_luma)
    first = engine.search(Query(text="hoodie", collection="shop", top_k=3))
    again = engine.search(Query(text="hoodie", collection="shop", top_k=3))
    assert not first.cached and again.cached and again.hits == first.hits
    assert engine.search(Query(text="hoodie", collection="shop", top_k=4)).cached is False  # another query
    engine.store("shop").delete([first.hits[0].id])  # a write: the old answer must not come back
    after = engine.search(Query(text="hoodie", collection="shop", top_k=3))
    assert not after.cached and first.hits[0].id not in [h.id for h in after.hits]
    engine.delete_collection("shop")
    engine.ingest("shop", small_luma)  # same name, generations start over: the cache was cleared
    fresh = engine.search(Query(text="hoodie", collection="shop", top_k=3))
    assert not fresh.cached and [h.id for h in fresh.hits] == [h.id for h in first.hits]


def test_int8_scans_give_the_exact_results(luma_home: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Full scans read int8 tables and re-score the best candidates exactly: hits, order, scores and
    totals are those of float32 search. A margin of 3 (not 200) makes the re-scoring do the work."""
    from vitrine.search import searcher

    monkeypatch.setattr(searcher, "RESCORE_MARGIN", 3)
    with Engine(make_settings(luma_home, models_dir)) as quick, \
            Engine(make_settings(luma_home, models_dir, quantized_scan=False)) as exact:
        assert quick.vectors("luma").quantized and exact.vectors("luma").quantized is None
        photo = (LUMA / "images" / "wj03-red_back.jpg").read_bytes()
        queries = [Query(text=t, collection="luma", top_k=10) for t in
                   ("black hoodie", "red jacket for running", "yoga pants", "something warm for winter")]
        queries += [Query(text="hoodie", top_k=5, offset=7), Query(text="jacket", top_k=50, min_score=0.3),
                    Query(image=photo, collection="luma"), Query(text="red", image=photo, alpha=0.5, top_k=20),
                    Query(product_id="MH01", collection="luma"),
                    Query(text="shirt", filters=Filters(ranges={"price": RangeFilter(None, 40)}), top_k=20)]
        for query in queries:
            q, e = quick.search(query), exact.search(query)
            assert [h.id for h in q.hits] == [h.id for h in e.hits], query
            assert np.allclose([h.score for h in q.hits], [h.score for h in e.hits], atol=1e-5)
            assert [h.matched_image for h in q.hits] == [h.matched_image for h in e.hits]
            assert q.total == e.total and q.facets == e.facets


def test_one_photo_per_product_scores_like_the_general_path(luma_engine: Engine) -> None:
    """Catalogs with one photo per product (hm, fpi) skip the per-product max: same scores, same photo."""
    from dataclasses import replace

    from vitrine.index.vectors import CollectionVectors

    full = luma_engine.vectors("luma")
    first = np.flatnonzero(np.r_[True, np.diff(full.data.image_product) != 0])
    raw = luma_engine.store("luma").load_vectors(()).image_features  # search holds no raw features
    data = replace(full.data, image_features=raw[first],
                   image_product=full.data.image_product[first], image_position=full.data.image_position[first])
    one = CollectionVectors.build(data, generation=0, exact_limit=10**6, heads=full.heads, quantize=False)
    assert one.one_image_each and not full.one_image_each and len(first) == one.size
    query = one.image_vectors[5]
    best, which = one.image_scores(query)
    assert np.allclose(best, one.image_vectors @ query) and (which == np.arange(one.size)).all()
    assert np.argmax(best) == 5


def test_photo_tables_computed_in_blocks_equal_the_whole_table(luma_engine: Engine) -> None:
    """Loading computes photo vectors a block of rows at a time (bounded temporaries at a million photos)."""
    from vitrine.index.vectors import _in_chunks
    from vitrine.search.scoring import image_search_vectors

    raw = luma_engine.store("luma").load_vectors(()).image_features
    heads = luma_engine.vectors("luma").heads
    assert heads is not None and len(raw) > 100
    for compute in (image_search_vectors, heads.image_vectors):
        assert np.allclose(_in_chunks(compute, raw, chunk=100), compute(raw), atol=1e-6)
    assert np.allclose(luma_engine.vectors("luma").image_vectors, image_search_vectors(raw), atol=1e-6)
