"""Search analytics: searches and clicks recorded through the API, the report, Prometheus, the
training pairs clicks make, and the bounds (retention and rows)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from conftest import backend_for
from fastapi.testclient import TestClient

from vitrine.analytics.store import DAY, PRUNE_EVERY, SCHEMA, Analytics
from vitrine.engine import Engine


@pytest.fixture
def client(luma_copy_client: TestClient) -> TestClient:
    return luma_copy_client


def test_searches_and_clicks_make_the_report(client: TestClient) -> None:
    ids = []
    for _ in range(3):
        found = client.post("/search", json={"text": "hoodie", "collection": "luma"}).json()
        ids.append(found["search_id"])
    product = found["hits"][1]["id"]
    nothing = client.post("/search", json={"text": "gown", "collection": "luma", "filters": {"colour": "Teal"}}).json()
    assert nothing["total"] == 0 and nothing["search_id"]
    page_two = client.post("/search", json={"text": "hoodie", "collection": "luma", "offset": 10}).json()
    assert page_two["search_id"] is None  # a further page of a search is not another search

    for search_id in ids[:2]:
        click = client.post("/clicks", json={"search_id": search_id, "product_id": product, "position": 2},
                            headers={"Authorization": ""})  # shoppers need no key
        assert click.status_code == 204, click.text
    unknown = client.post("/clicks", json={"search_id": "nope", "product_id": product, "position": 1})
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "search_id"

    report = client.get("/analytics", params={"collection": "luma"}).json()
    assert (report["searches"], report["zero_results"], report["clicks"]) == (4, 1, 2)
    assert report["ctr"] == 0.5 and report["mean_click_position"] == 2.0
    assert report["top_queries"][0] == {"query": "hoodie", "searches": 3, "clicks": 2}
    assert report["no_result_queries"] == [{"query": "gown", "searches": 1}]
    (today,) = report["daily"]
    assert today["day"] == time.strftime("%Y-%m-%d", time.gmtime()) and today["ctr"] == 0.5
    assert client.get("/analytics", headers={"Authorization": ""}).status_code == 401

    metrics = client.get("/metrics").text
    assert 'vitrine_analytics_searches{collection="luma",outcome="hits"} 3.0' in metrics
    assert 'vitrine_analytics_searches{collection="luma",outcome="zero"} 1.0' in metrics
    assert 'vitrine_analytics_clicks{collection="luma"} 2.0' in metrics

    # Past searches that found something come first in suggestions.
    suggested = client.get("/suggest", params={"q": "hoo", "collection": "luma"}).json()["suggestions"]
    assert suggested[0] == {"text": "hoodie", "kind": "popular", "count": 3}
    gow = client.get("/suggest", params={"q": "gow", "collection": "luma"}).json()["suggestions"]
    assert all(s["kind"] != "popular" for s in gow)  # "gown" found nothing: not suggested

    # Two shoppers led to the same product by the same words: a training pair for `vitrine train`.
    engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    assert ("luma", product, "hoodie") in engine.store("luma").training_pairs()


def test_analytics_are_bounded_by_age_and_rows(tmp_path: Path) -> None:
    backend = backend_for(tmp_path / "home")
    analytics = Analytics(backend.tables("analytics", SCHEMA), retention_days=30, max_rows=1000)
    try:
        now = time.time()
        old = analytics.record_search(collection="c", query="old", filters={}, kind="text", hits=3, latency_ms=5,
                                      now=now - 40 * DAY)
        assert analytics.record_click(search_id=old, product_id="p", position=1, now=now - 40 * DAY) == ("c", "old", 1)
        for i in range(1200):
            analytics.record_search(collection="c", query=f"q{i}", filters={}, kind="text", hits=1, latency_ms=1,
                                    now=now + i / 1000)
        analytics.prune(now)
        counts = analytics.counts()
        assert counts[("c", "hits")] == 1000 and ("c", "clicks") not in counts
        kept = {q for q, _ in analytics.popular("c", limit=2000)}
        assert kept == {f"q{i}" for i in range(200, 1200)}  # the oldest went first
    finally:
        analytics.close()
        backend.close()


def test_a_search_does_not_wait_for_the_prune_its_record_sets_off(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    backend = backend_for(tmp_path / "home")
    analytics = Analytics(backend.tables("analytics", SCHEMA), retention_days=30, max_rows=1000)
    started, release = threading.Event(), threading.Event()
    released: list[bool] = []

    def slow_prune(now: float | None = None) -> None:
        started.set()
        released.append(release.wait(20))  # False: nobody released it, as when the search itself waited

    monkeypatch.setattr(analytics, "prune", slow_prune)
    try:
        for i in range(PRUNE_EVERY):
            assert analytics.record_search(collection="c", query=f"q{i}", filters={}, kind="text", hits=1,
                                           latency_ms=1) is not None
        assert started.wait(20)  # the last write set the prune off, and returned while it still ran
        analytics.record_search(collection="c", query="more", filters={}, kind="text", hits=1, latency_ms=1)
        assert analytics.counts()[("c", "hits")] == PRUNE_EVERY + 1
    finally:
        release.set()
        analytics.close()  # waits for the prune
        backend.close()
    assert released == [True]


def test_products_clicked_together_complete_the_look_first(client: TestClient) -> None:
    default = [i["id"] for i in client.get("/collections/luma/products/MH01/complete").json()["items"]]
    shorts = client.post("/search", json={"text": "men shorts", "collection": "luma", "top_k": 30}).json()["hits"]
    other = next(h["id"] for h in shorts if h["id"].startswith("MS") and h["id"] not in default)
    for _ in range(2):  # two shoppers looked at the hoodie and those shorts after one search each
        search_id = client.post("/search", json={"text": "gym outfit", "collection": "luma"}).json()["search_id"]
        for position, product in ((1, "MH01"), (2, other)):
            response = client.post("/clicks", json={"search_id": search_id, "product_id": product,
                                                    "position": position})
            assert response.status_code == 204
    learned = [i["id"] for i in client.get("/collections/luma/products/MH01/complete").json()["items"]]
    assert learned[0] == other and learned != default
