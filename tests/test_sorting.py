"""Sorting and browsing: the whole result set in the asked order, checked against brute force."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import LUMA
from test_cli import run_main

from vitrine.catalog.records import record_from_fields
from vitrine.engine import Engine
from vitrine.index.store import Filters
from vitrine.search.query import Query
from vitrine.search.searcher import SORT_MARGIN


def _all_pages(engine: Engine, size: int, **kwargs: object) -> list[tuple[str, float | None, float]]:
    """Every hit of a query, read page by page."""
    found: list[tuple[str, float | None, float]] = []
    offset = 0
    while True:
        response = engine.search(Query(collection="luma", top_k=size, offset=offset, **kwargs))  # type: ignore[arg-type]
        found += [(h.id, h.price, h.score) for h in response.hits]
        offset += size
        if offset >= response.total:
            assert len(found) == response.total
            return found


def test_browsing_by_price_is_exact_across_pages(luma_engine: Engine) -> None:
    filters = Filters(equals={"category": ("Hoodies & Sweatshirts", "Jackets")})
    store = luma_engine.store("luma")
    matching = [p for p in store.get_products(list(store.product_hashes()))
                if p.category in ("Hoodies & Sweatshirts", "Jackets")]
    cheapest = _all_pages(luma_engine, 7, filters=filters, sort="price_asc")
    assert [price for _, price, _ in cheapest] == sorted(p.price for p in matching)  # type: ignore[type-var]
    assert {pid for pid, _, _ in cheapest} == {p.id for p in matching}
    dearest = _all_pages(luma_engine, 5, filters=filters, sort="price_desc")
    assert [price for _, price, _ in dearest] == sorted((p.price for p in matching), reverse=True)  # type: ignore[type-var]
    # paging is stable: equal prices keep one order however the pages are cut
    assert [pid for pid, _, _ in _all_pages(luma_engine, 3, filters=filters, sort="price_asc")] == \
        [pid for pid, _, _ in cheapest]


def test_a_sorted_search_orders_all_of_its_results(luma_engine: Engine) -> None:
    every = luma_engine.search(Query(text="hoodie", collection="luma", top_k=191)).hits  # all, exactly scored
    best = every[0].score
    expected = {h.id: h.price for h in every if h.score >= best - SORT_MARGIN}
    assert 5 < len(expected) < 191
    cheapest = _all_pages(luma_engine, 4, text="hoodie", sort="price_asc")
    assert {pid for pid, _, _ in cheapest} == set(expected)
    prices = [price for _, price, _ in cheapest]
    assert prices == sorted(prices)  # type: ignore[type-var]
    scores = {h.id: h.score for h in every}
    assert all(abs(score - scores[pid]) < 1e-5 for pid, _, score in cheapest)  # the page's scores are exact
    over = luma_engine.search(Query(text="hoodie", collection="luma", top_k=191, min_score=0.5, sort="price_desc"))
    assert {h.id for h in over.hits} == {h.id for h in every if h.score >= 0.5} and over.total == len(over.hits)


def test_browse_lists_the_collection_with_facets(luma_engine: Engine) -> None:
    listed = luma_engine.search(Query(collection="luma", top_k=12))
    assert listed.total == 191 and len(listed.hits) == 12 and sum(listed.facets["category"].values()) >= 191
    rows = luma_engine.store("luma").product_hashes()
    assert [h.id for h in listed.hits] == list(rows)[::-1][:12]  # newest (last added) first
    assert all(h.score == 0 and h.scores == {} for h in listed.hits)


def test_newest_first_puts_a_new_product_on_top(engine: Engine, small_luma: Path) -> None:
    engine.ingest("shop", small_luma)
    photo = (LUMA / "images" / "wj01-red_main.jpg").read_bytes()
    engine.put_product("shop", record_from_fields("NEW1", {"title": "Red rain jacket", "price": 10.0}), [photo])
    assert engine.search(Query(collection="shop", top_k=1)).hits[0].id == "NEW1"
    assert engine.search(Query(text="jacket", collection="shop", sort="newest", top_k=1)).hits[0].id == "NEW1"
    assert engine.search(Query(collection="shop", sort="price_asc", top_k=1)).hits[0].id == "NEW1"


def test_sort_from_the_cli(capsys: pytest.CaptureFixture[str], luma_home: Path) -> None:
    code, out, _ = run_main(capsys, luma_home, "search", "luma", "--sort", "price_desc", "-k", "3", "--json")
    prices = [h["price"] for h in json.loads(out)["hits"]]
    assert code == 0 and prices == sorted(prices, reverse=True) and len(prices) == 3
    with pytest.raises(SystemExit) as exited:
        run_main(capsys, luma_home, "search", "luma", "--sort", "cheapest")
    assert exited.value.code == 2 and "invalid choice" in capsys.readouterr().err
    code, out, _ = run_main(capsys, luma_home, "search", "luma", "-k", "2")  # no text: the collection, listed
    assert code == 0 and "191 matching products" in out


def test_sort_and_browse_over_http(luma_engine: Engine) -> None:
    from fastapi.testclient import TestClient

    from vitrine.api.app import create_app

    with TestClient(create_app(engine=luma_engine)) as client:
        listed = client.post("/search", json={"collection": "luma", "top_k": 3, "facets": ["category"]}).json()
        assert listed["total"] == 191 and len(listed["hits"]) == 3 and listed["facets"]["category"]
        cheap = client.post("/search", json={"text": "jacket", "collection": "luma", "sort": "price_asc"}).json()
        prices = [h["price"] for h in cheap["hits"]]
        assert prices == sorted(prices) and cheap["total"] >= len(prices) > 0
        bad = client.post("/search", json={"text": "jacket", "sort": "cheapest"})
        assert bad.status_code == 422 and bad.json()["error"]["field"].endswith("sort")
