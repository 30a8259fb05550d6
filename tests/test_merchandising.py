"""Merchandising rules on a private copy of the Luma collection: pin, boost, bury, hide; API and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import LUMA, luma_rows, make_settings, write_catalog
from fastapi.testclient import TestClient
from test_cli import run_main

from vitrine.catalog.records import record_from_fields
from vitrine.engine import Engine
from vitrine.errors import InvalidInput, NotFound
from vitrine.index.store import Filters
from vitrine.search.query import Query


def _ids(engine: Engine, **kwargs: object) -> list[str]:
    return [h.id for h in engine.search(Query(collection="luma", **kwargs)).hits]  # type: ignore[arg-type]


def test_pin_boost_bury_hide(luma_copy: Path, models_dir: Path) -> None:
    with Engine(make_settings(luma_copy, models_dir)) as engine:
        before = _ids(engine, text="hoodie", top_k=20)
        # pin a jacket (not a hoodie at all) at position 2 for "hoodie", and in page 2 too
        pin = engine.add_rule("luma", {"action": "pin", "query": "Hoodies", "product_id": "MJ01", "position": 2})
        response = engine.search(Query(text="hoodie", collection="luma", top_k=5))
        assert [h.id for h in response.hits][:3] == [before[0], "MJ01", before[1]]
        assert [h.pinned for h in response.hits] == [False, True, False, False, False]
        paged = _ids(engine, text="hoodie", top_k=3, offset=1)
        assert paged == ["MJ01", before[1], before[2]]
        assert _ids(engine, text="hoodie", top_k=20, filters=Filters(equals={"category": ("Hoodies & Sweatshirts",)})
                    )[1] != "MJ01"  # a pinned product must still pass the filters
        engine.delete_rule("luma", pin.id)
        assert _ids(engine, text="hoodie", top_k=20) == before

        # bury every product with the first hoodie's pattern
        first = engine.get_product("luma", before[0])
        pattern = str(first.attributes["pattern"])
        bury = engine.add_rule("luma", {"action": "bury", "field": "pattern", "value": pattern, "weight": 0.5})
        buried = engine.search(Query(text="hoodie", collection="luma", top_k=20)).hits
        assert buried[0].id != before[0]
        patterned = {p.id for p in engine.store("luma").get_products([h.id for h in buried])
                     if p.attributes.get("pattern") == pattern}
        assert patterned and buried[0].id not in patterned
        for hit in buried:  # the rule's weight is in the hit's boost signal, and in its score
            assert (hit.scores.get("boost", 0.0) < -0.4) == (hit.id in patterned)
        engine.delete_rule("luma", bury.id)

        # hide a product everywhere: search, browse, more-like-this
        engine.add_rule("luma", {"action": "hide", "product_id": before[0]})
        assert before[0] not in _ids(engine, text="hoodie", top_k=50)
        assert before[0] not in _ids(engine, top_k=1000)
        assert before[0] not in _ids(engine, product_id=before[1], top_k=50)
        # a rule without a query pins on the front page (a browse in its default order)
        engine.add_rule("luma", {"action": "pin", "product_id": "MJ02", "position": 1})
        front = engine.search(Query(collection="luma", top_k=3))
        assert front.hits[0].id == "MJ02" and front.hits[0].pinned
        assert engine.search(Query(collection="luma", top_k=3, sort="price_asc")).hits[0].id != "MJ02"

        with pytest.raises(NotFound):
            engine.add_rule("luma", {"action": "pin", "product_id": "nope", "position": 1})
        for bad, field in [({"action": "pin", "product_id": "MJ01"}, "position"),
                           ({"action": "boost"}, "field"),
                           ({"action": "boost", "field": "brand", "value": "x", "weight": 2}, "weight"),
                           ({"action": "promote"}, "action"),
                           ({"action": "hide", "field": "in_stock", "value": "maybe"}, "value")]:
            with pytest.raises(InvalidInput) as refused:
                engine.add_rule("luma", bad)
            assert refused.value.field == field
        assert [r.action for r in engine.rules("luma")] == ["hide", "pin"]


def test_in_stock_rules_read_availability(tmp_path: Path, models_dir: Path) -> None:
    wanted = ("MH01", "MH02", "MH03", "MJ01")
    rows = [{**r, "availability": "out of stock" if r["product_id"] == "MH01" else "in stock"}
            for r in luma_rows() if r["product_id"] in wanted]
    catalog = write_catalog(tmp_path / "shop", rows)
    with Engine(make_settings(tmp_path / "home", models_dir)) as engine:
        engine.ingest("luma", catalog)
        assert "MH01" in _ids(engine, text="hoodie", top_k=5)
        engine.add_rule("luma", {"action": "hide", "field": "in_stock", "value": "false"})
        assert sorted(_ids(engine, text="hoodie", top_k=5)) == ["MH02", "MH03", "MJ01"]


def test_rules_through_the_api_and_cli(capsys: pytest.CaptureFixture[str], luma_copy: Path,
                                        luma_copy_client: TestClient) -> None:
    client = luma_copy_client
    added = client.post("/collections/luma/rules",
                        json={"action": "pin", "query": "bag", "product_id": "MJ01", "position": 1})
    assert added.status_code == 201, added.text
    rule = added.json()
    assert rule["action"] == "pin" and rule["position"] == 1 and "weight" not in rule
    hits = client.post("/search", json={"text": "bag", "collection": "luma"}).json()["hits"]
    assert hits[0]["id"] == "MJ01" and hits[0]["pinned"] and not hits[1]["pinned"]
    assert client.get("/collections/luma/rules").json() == [rule]
    bad = client.post("/collections/luma/rules", json={"action": "pin", "product_id": "MJ01"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "position"
    stranger = client.post("/collections/luma/rules", json={"action": "hide"},
                           headers={"Authorization": "Bearer not-a-key"})
    assert stranger.status_code == 401
    assert client.delete(f"/collections/luma/rules/{rule['id']}").status_code == 204
    assert client.delete(f"/collections/luma/rules/{rule['id']}").status_code == 404
    code, out, _ = run_main(capsys, luma_copy, "rules", "add", "luma", "boost", "--where", "material=Wool",
                            "--weight", "0.3")
    assert code == 0 and "added rule" in out
    code, out, _ = run_main(capsys, luma_copy, "rules", "list", "luma", "--json")
    (rule,) = json.loads(out)
    assert rule == {"id": rule["id"], "action": "boost", "field": "material", "value": "Wool", "weight": 0.3}
    code, out, _ = run_main(capsys, luma_copy, "search", "luma", "--text", "hoodie", "--json")
    top = json.loads(out)["hits"][0]
    assert top["scores"]["boost"] >= 0.3
    code, out, _ = run_main(capsys, luma_copy, "rules", "remove", "luma", rule["id"])
    assert code == 0
    code, _, err = run_main(capsys, luma_copy, "rules", "add", "luma", "pin", "--product", "MJ01")
    assert code != 0 and "position" in err


def test_the_garments_of_one_indexed_look_complete_each_other(luma_copy: Path, models_dir: Path) -> None:
    with Engine(make_settings(luma_copy, models_dir)) as engine:
        default = [p.id for p, _ in engine.complete_the_look("luma", "MH01")]
        photo = (LUMA / "images" / "msh02-black_alt1.jpg").read_bytes()
        engine.put_product("luma", record_from_fields("LOOK-1-BOTTOM", {
            "title": "Black shorts", "category": "Shorts", "attributes": {"look": "look-1"}}), [photo])
        engine.put_product("luma", record_from_fields("MH01", {
            **{k: v for k, v in vars(engine.get_product("luma", "MH01")).items()
               if k in ("title", "description", "category", "colour", "price")},
            "attributes": {**engine.get_product("luma", "MH01").attributes, "look": "look-1"}}),
            [(LUMA / "images" / "mh01-gray_main.jpg").read_bytes()])
        found = engine.complete_the_look("luma", "MH01")
        assert found[0] == (engine.get_product("luma", "LOOK-1-BOTTOM"), "bottom")
        assert [p.id for p, _ in found] != default
