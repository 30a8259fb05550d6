"""Ingest end to end with the real encoders: add, search, update, prune, resume, and bad rows."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BACKEND, LUMA, REPO, backend_env, luma_rows, write_catalog

from vitrine.engine import Engine
from vitrine.errors import CatalogError, InvalidInput
from vitrine.search.query import Query
from vitrine.settings import Settings


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def snapshot(engine: Engine, name: str) -> tuple[int, dict[str, str]]:
    store = engine.store(name)
    return store.generation(), store.product_hashes()


def test_ingest_search_update_prune(engine: Engine, small_luma: Path) -> None:
    report = engine.ingest("shop", small_luma)
    assert report.completed and report.added == 12 and report.failed == 0 and not report.problems
    assert report.images == sum(len(r["images"].split("|")) for r in read_csv(small_luma))
    saved = json.loads(Path(engine.store("shop").meta()["last_ingest_report"]).read_text())
    assert saved["added"] == 12

    hits = engine.search(Query(text="hoodie", collection="shop", top_k=4)).hits
    assert {h.id for h in hits} == {"MH01", "MH02", "MH03", "WH01"}  # the four hoodies

    # Re-ingesting the same file changes nothing, not even the generation.
    before = snapshot(engine, "shop")
    again = engine.ingest("shop", small_luma)
    assert (again.added, again.updated, again.unchanged, again.images_encoded) == (0, 0, 12, 0)
    assert snapshot(engine, "shop") == before

    # A changed row is updated in place, without re-encoding its (cached) images.
    rows = read_csv(small_luma)
    rows[0]["title"] = "Chaz Kangaroo Parka"
    rows[0]["price"] = "99"
    rows = rows[:-1]  # and one product leaves the catalog
    write_catalog(small_luma.parent, rows)
    updated = engine.ingest("shop", small_luma)
    assert (updated.added, updated.updated, updated.unchanged, updated.deleted) == (0, 1, 10, 0)
    assert updated.images_encoded == 0
    product = engine.get_product("shop", rows[0]["product_id"])
    assert product.title == "Chaz Kangaroo Parka" and product.price == 99.0
    assert engine.search(Query(text="kangaroo parka", collection="shop", top_k=1)).hits[0].id == product.id
    assert engine.store("shop").count() == 12  # no --prune: the vanished product stays

    pruned = engine.ingest("shop", small_luma, prune=True)
    assert pruned.deleted == 1 and engine.store("shop").count() == 11
    gone = engine.search(Query(text="bag", collection="shop", top_k=20)).hits
    assert all(h.id != "24-MB04" for h in gone)


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from vitrine.engine import Engine
from vitrine.settings import Settings

def progress(done, total, images):
    if done >= 4:
        os.kill(os.getpid(), signal.SIGKILL)  # die mid-ingest, as a killed process does

engine = Engine(Settings(home=Path(sys.argv[1]), threads=2, ingest_batch=2))
engine.ingest("shop", Path(sys.argv[2]), progress=progress)
"""


def test_resume_after_killed_ingest(settings: Settings, small_luma: Path) -> None:
    settings = settings.model_copy(update={"ingest_batch": 2})
    env = {**os.environ, **backend_env(settings.home), "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(settings.home), str(small_luma)], env=env,
                         capture_output=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()[-2000:]

    with Engine(settings) as engine:
        done_before = engine.store("shop").count()
        cached_before = len(engine.feature_cache.get_many(
            sha for p in engine.store("shop").get_products(list(engine.store("shop").product_hashes()))
            for sha in (im.sha256 for im in p.images)
        ))
        assert 4 <= done_before < 12 and cached_before > 0

        report = engine.ingest("shop", small_luma)
        assert report.completed
        assert report.added == 12 - done_before and report.unchanged == done_before
        total_images = sum(len(r["images"].split("|")) for r in read_csv(small_luma))
        assert report.images_encoded < total_images - cached_before + 1
        assert engine.store("shop").count() == 12
        assert engine.store("shop").info()["images"] == total_images
        if BACKEND == "sqlite":  # its keyword index is a table of its own, which must not hold a product twice
            db = sqlite3.connect(engine.store("shop").path)  # type: ignore[attr-defined]
            assert db.execute("SELECT count(*) FROM products_fts").fetchone()[0] == 12
        hit = engine.search(Query(image=(LUMA / "images" / "mh02-black_main.jpg").read_bytes(),
                                  collection="shop", top_k=1)).hits[0]
        assert hit.id == "MH02"


def test_bad_rows_are_reported_and_good_rows_kept(engine: Engine, tmp_path: Path) -> None:
    rows = [r for r in luma_rows() if r["product_id"] in {"MH01", "MH02", "MJ01"}]
    folder = tmp_path / "cat"
    write_catalog(folder, rows)
    (folder / "images" / "corrupt.jpg").write_bytes((LUMA / "images" / "mh01-gray_main.jpg").read_bytes()[:900])
    (folder / "images" / "fake.jpg").write_text("<html>not an image</html>")
    bomb = tmp_path / "bomb.png"
    from test_imaging import _png_header_only
    (folder / "images" / "bomb.png").write_bytes(_png_header_only(60_000, 60_000))
    del bomb
    extra = [
        {**rows[0], "product_id": ""},  # missing id
        {**rows[1]},  # duplicate id
        {**rows[2], "product_id": "BADPRICE", "price": "cheap"},
        {**rows[2], "product_id": "CORRUPT", "images": "images/corrupt.jpg"},
        {**rows[2], "product_id": "FAKE", "images": "images/fake.jpg"},
        {**rows[2], "product_id": "BOMB", "images": "images/bomb.png"},
        {**rows[2], "product_id": "ESCAPE", "images": "../../etc/passwd"},
        {**rows[2], "product_id": "PRIVATE", "images": "http://127.0.0.1:9/a.jpg"},
        {**rows[2], "product_id": "MISSING", "images": "images/nope.jpg"},
        {**rows[2], "product_id": "PARTLY", "images": "images/nope.jpg|" + rows[2]["images"].split("|")[0]},
    ]
    catalog = write_catalog(folder, rows + extra)
    report = engine.ingest("shop", catalog)
    by_id = {}
    for p in report.problems:
        by_id.setdefault(p.product_id, []).append(p)
    assert report.completed
    assert [p.row for p in by_id[None]] == [4] and by_id[None][0].field == "id"
    assert "duplicate id" in by_id["MH02"][0].message and by_id["MH02"][0].row == 5
    assert by_id["BADPRICE"][0].field == "price" and by_id["BADPRICE"][0].severity == "warning"
    for pid, words in {"CORRUPT": "corrupt", "FAKE": "not an image", "BOMB": "pixels", "ESCAPE": "outside",
                       "PRIVATE": "non-public", "MISSING": "not found"}.items():
        messages = " ".join(p.message for p in by_id[pid])
        assert words in messages and "row not ingested" in messages, (pid, messages)
    assert "not found" in by_id["PARTLY"][0].message
    stored = set(engine.store("shop").product_hashes())
    assert stored == {"MH01", "MH02", "MJ01", "BADPRICE", "PARTLY"}
    assert engine.get_product("shop", "BADPRICE").price is None
    assert len(engine.get_product("shop", "PARTLY").images) == 1
    assert report.failed == 2 + 6


def test_malformed_catalog_leaves_the_collection_untouched(engine: Engine, small_luma: Path, tmp_path: Path) -> None:
    engine.ingest("shop", small_luma)
    before = snapshot(engine, "shop")
    text = small_luma.read_text()
    broken = small_luma.parent / "broken.csv"
    broken.write_text(text + 'ZZ1,"never closed\n')
    with pytest.raises(CatalogError, match="malformed CSV"):
        engine.ingest("shop", broken, prune=True)
    with pytest.raises(CatalogError, match="not in the catalog"):
        engine.ingest("shop", small_luma, mapping={"id": "sku"}, prune=True)
    bad_json = small_luma.parent / "broken.json"
    bad_json.write_text('[{"id": "X1", "title": "a"}, {"id": ')
    with pytest.raises(CatalogError, match="malformed JSON"):
        engine.ingest("shop", bad_json, prune=True)
    assert snapshot(engine, "shop") == before
    with pytest.raises(CatalogError):
        engine.ingest("fresh", broken)
    assert engine.collection_names() == ["shop"]


def test_bad_collection_names(engine: Engine, small_luma: Path) -> None:
    for name in ("", "Shop", "../x", "a" * 65, "with space"):
        with pytest.raises(InvalidInput, match="collection name"):
            engine.ingest(name, small_luma)


def test_json_catalog_with_image_urls(settings: Settings, tmp_path: Path) -> None:
    """A shop-API-shaped JSON catalog whose photos are fetched over HTTP (loopback allowed by setting)."""
    import http.server
    import threading
    from functools import partial

    rows = [r for r in luma_rows() if r["product_id"] in {"MH01", "WJ01"}]
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(LUMA))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    products = [{"sku": r["product_id"], "name": r["title"], "color": r["colours"], "price": float(r["price"]),
                 "images": [f"{base}/{ref}" for ref in r["images"].split("|")], "material": r["material"]}
                for r in rows]
    catalog = tmp_path / "api.json"
    catalog.write_text(json.dumps({"products": products, "total": 2, "skip": 0, "limit": 30}))
    try:
        with Engine(settings) as refused:
            report = refused.ingest("web", catalog)
            assert report.failed == 2 and "non-public" in report.problems[0].message
        with Engine(settings.model_copy(update={"allow_private_urls": True})) as engine:
            report = engine.ingest("web", catalog)
            assert (report.added, report.failed, report.images) == (2, 0, sum(len(p["images"]) for p in products))
            product = engine.get_product("web", "WJ01")
            assert product.attributes == {"material": rows[1]["material"]}
            assert product.images[0].ref.startswith(base)
            photo = (LUMA / "images" / "wj01-yellow_main.jpg").read_bytes()
            hit = engine.search(Query(image=photo, collection="web", top_k=1)).hits[0]
            assert hit.id == "WJ01" and hit.matched_image == f"{base}/images/wj01-yellow_main.jpg"
    finally:
        httpd.shutdown()
        httpd.server_close()
