"""Query understanding on the real Luma collection: a table of real phrasings, then what it does to
searches (price ceilings, typos, synonyms, turning it off), through the engine, the API and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import HM_JEANS, hm_catalog
from fastapi.testclient import TestClient
from test_cli import run_main

from vitrine.api.app import create_app
from vitrine.engine import Engine
from vitrine.index.store import Filters, RangeFilter
from vitrine.search.query import Query
from vitrine.search.understanding import understand

# (what a shopper types, the text searched, what is understood)
PHRASINGS: list[tuple[str, str, dict[str, Any]]] = [
    ("red summer dress under 50", "red summer dress", {"price": {"high": 50.0}, "colour": ["Red"]}),
    ("hoodies below $80", "hoodies", {"price": {"high": 80.0}, "category": ["Hoodies"]}),
    ("jackets between 40 and 60", "jackets", {"price": {"low": 40.0, "high": 60.0}, "category": ["Jackets"]}),
    ("tees 20-40", "tees", {"price": {"low": 20.0, "high": 40.0}, "category": ["Tees"]}),
    ("pants from 30 to 45", "pants", {"price": {"low": 30.0, "high": 45.0}, "category": ["Pants"]}),
    ("womens yoga pants $20 - $40", "womens yoga pants",
     {"price": {"low": 20.0, "high": 40.0}, "gender": ["Women"], "category": ["Pants"]}),
    ("shorts under 30€", "shorts", {"price": {"high": 30.0}, "category": ["Shorts"]}),
    ("shorts less than 30 dollars", "shorts", {"price": {"high": 30.0}, "category": ["Shorts"]}),
    ("bags 40 or less", "bags", {"price": {"high": 40.0}, "category": ["Bags"]}),
    ("watches over 50", "watches", {"price": {"low": 50.0}, "category": ["Watches"]}),
    ("jackets 60+", "jackets", {"price": {"low": 60.0}, "category": ["Jackets"]}),
    ("hoodie under 1.000,00", "hoodie", {"price": {"high": 1000.0}, "category": ["Hoodies"]}),
    ("cheap hoodies", "hoodies", {"price": {"high": 29.0, "words": "cheap"}, "category": ["Hoodies"]}),
    ("size M hoodie", "size M hoodie", {"size": ["M"], "category": ["Hoodies"]}),
    ("mens jackets", "mens jackets", {"gender": ["Men"], "category": ["Jackets"]}),
    ("ladies shorts", "ladies shorts", {"gender": ["Women"], "category": ["Shorts"]}),
    ("hoddie", "hoodie", {"category": ["Hoodies"], "spelling": {"hoddie": "hoodie"}}),
    ("jaket", "jacket", {"category": ["Jackets"], "spelling": {"jaket": "jacket"}}),
    ("blak hoodie", "black hoodie",
     {"colour": ["Black"], "category": ["Hoodies"], "spelling": {"blak": "black"}}),
    ("tshirt", "tee", {"category": ["Tees"], "synonyms": {"tshirt": "tee"}}),
    ("t-shirts", "tees", {"category": ["Tees"], "synonyms": {"t-shirts": "tees"}}),
    ("grey hoodie", "gray hoodie", {"colour": ["Gray"], "category": ["Hoodies"], "synonyms": {"grey": "gray"}}),
    # not prices: a model number, a size range
    ("501 jeans", "501 jeans", {}),
    ("pants size 10-12", "pants size 10-12", {"category": ["Pants"]}),
    # a real word the titles never use is not "corrected" (the descriptions hold it)
    ("waterproof jacket", "waterproof jacket", {"category": ["Jackets"]}),
]


@pytest.mark.parametrize(("typed", "searched", "understood"), PHRASINGS)
def test_phrasings(luma_engine: Engine, typed: str, searched: str, understood: dict[str, Any]) -> None:
    found = understand(typed, luma_engine.vocabulary("luma"), is_word=luma_engine.store("luma").holds_word)
    assert (found.text, found.as_dict()) == (searched, understood)


def test_a_price_phrase_is_a_ceiling_not_words(luma_engine: Engine) -> None:
    # The example: without understanding a 57.00 hoodie ranks first for "under 50".
    plain = luma_engine.search(Query(text="red hoodie under 50", collection="luma", understand=False))
    assert any(h.price is not None and h.price > 50 for h in plain.hits[:3])
    assert plain.understood == {}
    read = luma_engine.search(Query(text="red hoodie under 50", collection="luma", top_k=50))
    assert read.understood == {"price": {"high": 50.0}, "colour": ["Red"], "category": ["Hoodies"]}
    assert read.searched_text == "red hoodie"
    assert read.hits and all(h.price is not None and h.price <= 50 for h in read.hits)
    assert read.hits[0].category == "Hoodies & Sweatshirts" and "Red" in read.hits[0].colour.split("|")
    # An explicit price filter wins: the words are left alone.
    given = luma_engine.search(Query(text="red hoodie under 50", collection="luma",
                                     filters=Filters(ranges={"price": RangeFilter(60, 80)})))
    assert "price" not in given.understood and all(60 <= (h.price or 0) <= 80 for h in given.hits)


def test_a_chip_taken_back_leaves_the_words(luma_engine: Engine) -> None:
    response = luma_engine.search(Query(text="red hoodie under 50", collection="luma",
                                        ignore_understood=("price", "colour")))
    assert response.understood == {"category": ["Hoodies"]}
    assert response.searched_text == "red hoodie under 50"


@pytest.mark.parametrize(("typo", "meant"), [("hoddie", "hoodie"), ("jaket", "jacket"), ("tshirt", "t-shirt")])
def test_typos_find_what_the_word_finds(luma_engine: Engine, typo: str, meant: str) -> None:
    wrong = luma_engine.search(Query(text=typo, collection="luma"))
    right = luma_engine.search(Query(text=meant, collection="luma"))
    assert [h.id for h in wrong.hits] == [h.id for h in right.hits]
    assert len({h.category for h in wrong.hits[:5]}) == 1
    unread = luma_engine.search(Query(text=typo, collection="luma", understand=False))
    assert [h.id for h in unread.hits] != [h.id for h in right.hits]  # the fix, not the model, found them


def test_a_collection_keeps_its_own_synonyms_through_the_api(luma_copy_client: TestClient) -> None:
    own_client = luma_copy_client
    before = own_client.post("/search", json={"text": "parka", "collection": "luma"}).json()
    assert "synonyms" not in before["understood"]
    put = own_client.put("/collections/luma/synonyms", json={"synonyms": [["Parka", "jacket"]]})
    assert put.status_code == 200 and put.json() == {"synonyms": [["parka", "jacket"]]}
    assert own_client.get("/collections/luma/synonyms").json() == {"synonyms": [["parka", "jacket"]]}
    after = own_client.post("/search", json={"text": "parka", "collection": "luma"}).json()
    jackets = own_client.post("/search", json={"text": "jacket", "collection": "luma"}).json()
    assert after["understood"]["synonyms"] == {"parka": "jacket"}
    assert [h["id"] for h in after["hits"]] == [h["id"] for h in jackets["hits"]]
    bad = own_client.put("/collections/luma/synonyms", json={"synonyms": [["only one"]]})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "synonyms.0"
    off = own_client.post("/search", json={"text": "parka", "collection": "luma", "understand": False}).json()
    assert off["understood"] == {} and off["searched_text"] == "parka"
    wrong = own_client.post("/search", json={"text": "x", "ignore_understood": ["pricey"]})
    assert wrong.status_code == 422


def test_synonyms_and_understanding_from_the_cli(capsys: pytest.CaptureFixture[str], luma_copy: Path) -> None:
    code, out, _ = run_main(capsys, luma_copy, "synonyms", "luma", "--add", "parka,jacket", "--add", "cap,hat")
    assert code == 0 and out.splitlines() == ["parka, jacket", "cap, hat"]
    code, out, _ = run_main(capsys, luma_copy, "synonyms", "luma", "--remove", "hat", "--json")
    assert json.loads(out) == [["parka", "jacket"]]
    code, out, _ = run_main(capsys, luma_copy, "search", "luma", "--text", "parka under 60")
    assert code == 0 and "understood: price <= 60" in out and "synonyms parka -> jacket" in out
    code, out, _ = run_main(capsys, luma_copy, "search", "luma", "--text", "parka under 60", "--no-understand",
                            "--json")
    assert json.loads(out)["understood"] == {}
    code, _, err = run_main(capsys, luma_copy, "synonyms", "luma", "--add", "lonely")
    assert code != 0 and "synonyms.1: a group is a list of 2 to 20 phrases" in err


def test_suggest_completes_from_categories_words_and_titles(luma_engine: Engine) -> None:
    with TestClient(create_app(engine=luma_engine)) as client:
        found = client.get("/suggest", params={"q": "hoo", "collection": "luma"}).json()["suggestions"]
        assert (found[0]["kind"], found[0]["text"]) == ("category", "Hoodies & Sweatshirts") and found[0]["count"] > 10
        assert {"text": "hoodie", "kind": "query"}.items() <= next(s for s in found if s["text"] == "hoodie").items()
        titles = [s for s in found if s["kind"] == "product"]
        assert titles and all("hoo" in s["text"].lower() and s["collection"] == "luma" for s in titles)
        # the last word completed, the words before kept
        found = client.get("/suggest", params={"q": "black hood"}).json()["suggestions"]
        assert "black hoodie" in [s["text"] for s in found]
        assert client.get("/suggest", params={"q": "zzzqqq"}).json() == {"suggestions": []}
        assert client.get("/suggest", params={"q": "hoo", "limit": 50}).status_code == 422
        assert client.get("/suggest", params={"q": "hoo", "collection": "nope"}).status_code == 404


def test_the_facet_boost_goes_to_the_products_holding_an_understood_value(luma_engine: Engine) -> None:
    """Each understood value's products are found once per snapshot and kept (`CollectionVectors.holding`):
    the boost must land on exactly the products that hold one, read here straight from the facet arrays."""
    from vitrine.search.searcher import FACET_BOOST, _facet_bonus
    from vitrine.search.understanding import Understanding

    vectors = luma_engine.vectors("luma")
    wanted = {"colour": frozenset({"Black", "Orange"}), "category": frozenset({"Hoodies & Sweatshirts"})}
    for _ in range(2):  # found, then kept
        bonus = _facet_bonus(Understanding(text="", values=wanted), vectors)
        assert bonus is not None
        expected = np.zeros(vectors.size, dtype=np.float32)
        for name, values in wanted.items():
            product_pos, codes, known = vectors.data.facets[name]
            holders = {int(p) for p, c in zip(product_pos, codes, strict=True) if known[c] in values}
            assert holders, name  # real values of the Luma catalog
            expected[sorted(holders)] += FACET_BOOST
        np.testing.assert_array_equal(bonus, expected)
        assert 0 < np.count_nonzero(bonus == 2 * FACET_BOOST) < np.count_nonzero(bonus)


def test_a_department_names_the_gender_when_no_field_does(engine: Engine, tmp_path: Path) -> None:
    """H&M keeps gender in `section` ("Menswear", "Ladieswear"): "mens jeans" must find men's jeans first,
    and the gender filter and facet must know them. "Divided" names no gender."""
    engine.ingest("hm", hm_catalog(tmp_path / "hm", {i for ids in HM_JEANS.values() for i in ids}))

    def ids(query: Query) -> list[str]:
        return [h.id for h in engine.search(query).hits]

    assert sorted(ids(Query(collection="hm", filters=Filters(equals={"gender": ("Men",)})))) == \
        sorted(HM_JEANS["Menswear"])
    assert sorted(ids(Query(collection="hm", filters=Filters(equals={"gender": ("women",)})))) == \
        sorted(HM_JEANS["Ladieswear"])
    response = engine.search(Query(text="mens jeans", collection="hm", top_k=9))
    assert response.understood == {"gender": ["Men"]}
    assert set([h.id for h in response.hits][:3]) == set(HM_JEANS["Menswear"])
    assert engine.search(Query(collection="hm", facets=("gender",))).facets["gender"] == {"Men": 3, "Women": 3}
