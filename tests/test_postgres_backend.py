"""The PostgreSQL + pgvector backend beside the embedded one: the same results on the real Luma
catalog, replicas of one database that see each other's writes and deletes, a database that goes
away and comes back, and schemas from a newer Vitrine refused.

(The store, ingest, search and API suites themselves also run on PostgreSQL: `make test`.)"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import BACKEND, HM_JEANS, LUMA, REPO, create_database, free_port, hm_catalog, make_settings, wait_for
from fastapi.testclient import TestClient

from vitrine.api.app import create_app
from vitrine.engine import Engine
from vitrine.errors import Conflict, NotFound, ServiceDown
from vitrine.index.store import Filters, RangeFilter
from vitrine.search.query import Query

pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="sets its own backends up, beside the embedded one")

QUERIES = [
    Query(text="black hoodie", collection="luma"),
    Query(text="waterproof jacket for hiking", collection="luma", top_k=20),
    Query(text="yoga pants", collection="luma", facets=("colour", "size", "category")),
    Query(text="jacket", collection="luma", filters=Filters(equals={"colour": ("Blue",)})),
    Query(text="bag", collection="luma", filters=Filters(ranges={"price": RangeFilter(None, 40)})),
    Query(text="MH01", collection="luma", top_k=5),
    Query(image=(LUMA / "images" / "mj01-orange_main.jpg").read_bytes(), collection="luma"),
    Query(text="orange", image=(LUMA / "images" / "mh02-black_main.jpg").read_bytes(), collection="luma"),
    Query(product_id="MH01", collection="luma"),
    Query(collection="luma", sort="price_asc", top_k=15),
]


def _ranked(engine: Engine, query: Query) -> tuple[list[str], list[float], dict[str, dict[str, int]], int]:
    response = engine.search(query)
    return [h.id for h in response.hits], [h.score for h in response.hits], response.facets, response.total


def test_both_backends_rank_the_luma_catalog_alike(luma_home: Path, models_dir: Path, postgres_server: str,
                                                    tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = create_database("luma_alike")
    with Engine(make_settings(home, models_dir, database_url=url)) as pg, \
            Engine(make_settings(luma_home, models_dir, database_url=None)) as embedded:
        report = pg.ingest("luma", LUMA / "catalog.csv")
        assert report.completed and report.valid == 191
        assert not (home / "collections" / "luma" / "store.sqlite").exists()  # the data is in PostgreSQL
        assert pg.collection_info("luma")["images"] == embedded.collection_info("luma")["images"] == 721
        for query in QUERIES:
            ids, scores, facets, total = _ranked(pg, query)
            want_ids, want_scores, want_facets, want_total = _ranked(embedded, query)
            assert ids == want_ids, query
            assert scores == pytest.approx(want_scores, abs=1e-5)
            assert (facets, total) == (want_facets, want_total)
        assert pg.get_product("luma", "MH01") == embedded.get_product("luma", "MH01")


def test_replicas_of_one_database_see_each_others_writes_and_deletes(small_luma: Path, models_dir: Path,
                                                                      postgres_server: str, tmp_path: Path) -> None:
    url = create_database("replicas")
    with Engine(make_settings(tmp_path / "a", models_dir, database_url=url)) as a, \
            Engine(make_settings(tmp_path / "b", models_dir, database_url=url)) as b:
        a.ingest("shop", small_luma)
        assert b.collection_names() == ["shop"]  # b has no folder of its own for it: the database is shared
        assert b.search(Query(text="hoodie", collection="shop")).hits
        b.store("shop").delete(["MH01"])
        assert "MH01" not in [h.id for h in a.search(Query(text="hoodie", collection="shop", top_k=20)).hits]
        a.delete_collection("shop")
        with pytest.raises(NotFound):
            b.search(Query(text="hoodie", collection="shop"))
        b.ingest("shop", small_luma)  # made again: a new incarnation, which a finds
        assert a.store("shop").count() == 12 and a.store("shop").incarnation == b.store("shop").incarnation


def test_replicas_share_api_keys_and_jobs_through_the_database(postgres_server: str, models_dir: Path,
                                                                 tmp_path: Path) -> None:
    from vitrine.jobs.store import SCHEMA as JOBS
    from vitrine.jobs.store import JobStore
    from vitrine.keys import SCHEMA as KEYS
    from vitrine.keys import KeyStore

    url = create_database("shared_tables")
    with Engine(make_settings(tmp_path / "a", models_dir, database_url=url)) as a, \
            Engine(make_settings(tmp_path / "b", models_dir, database_url=url)) as b:
        key, token = KeyStore(a.backend.tables("keys", KEYS)).create("shop admin", "admin")
        elsewhere = KeyStore(b.backend.tables("keys", KEYS))
        assert elsewhere.verify(token) == key  # a key made on one machine opens every replica
        elsewhere.revoke(key.id)
        assert KeyStore(a.backend.tables("keys", KEYS)).verify(token) is None
        job = JobStore(a.backend.tables("jobs", JOBS)).create(kind="ingest", collection="shop", params={"n": 1})
        worker = JobStore(b.backend.tables("jobs", JOBS))
        assert worker.claim(job.id) and not JobStore(a.backend.tables("jobs", JOBS)).claim(job.id)
        worker.progress(job.id, done=3, total=12)
        seen = JobStore(a.backend.tables("jobs", JOBS)).get(job.id)
        assert (seen.state, seen.done, seen.total, seen.attempts) == ("RUNNING", 3, 12, 1)
        assert not (tmp_path / "a" / "keys.sqlite").exists() and not (tmp_path / "b" / "jobs.sqlite").exists()


@pytest.fixture
def own_server() -> Iterator[tuple[Path, int, str]]:
    """A PostgreSQL server of this test's own, which it may stop and start."""
    sys.path.insert(0, str(REPO / "scripts"))
    import local_postgres

    folder = Path(tempfile.mkdtemp(prefix="vitrine-pg-"))
    folder.chmod(0o711)
    port = free_port()
    try:
        yield folder / "data", port, local_postgres.start(folder / "data", port, fast=True)
    finally:
        local_postgres.stop(folder / "data")
        shutil.rmtree(folder, ignore_errors=True)


def test_a_database_that_goes_away_answers_503_and_service_resumes(
        own_server: tuple[Path, int, str], small_luma: Path, models_dir: Path, tmp_path: Path) -> None:
    import local_postgres

    data, port, url = own_server
    with Engine(make_settings(tmp_path / "home", models_dir, database_url=url)) as engine, \
            TestClient(create_app(engine=engine)) as client:
        engine.ingest("shop", small_luma)
        assert client.get("/readyz").json()["checks"]["database"] is True
        assert client.post("/search", json={"text": "hoodie", "collection": "shop"}).status_code == 200

        local_postgres.stop(data)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] is False
        down = client.post("/search", json={"text": "jacket", "collection": "shop"})
        assert down.status_code == 503 and down.json()["error"]["code"] == "service_unavailable"
        assert "database" in down.json()["error"]["message"]
        with pytest.raises(ServiceDown):
            engine.store("shop").delete(["MH01"])

        local_postgres.start(data, port, fast=True)  # the pool reconnects by itself, after its back-off
        wait_for(lambda: client.get("/readyz").status_code, lambda status: status == 200, timeout_s=60)
        found = client.post("/search", json={"text": "jacket", "collection": "shop"})
        assert found.status_code == 200 and found.json()["hits"]
        assert engine.store("shop").count() == 12  # nothing was lost or half-written


def test_a_database_from_a_newer_vitrine_is_refused(postgres_server: str, small_luma: Path, models_dir: Path,
                                                    tmp_path: Path) -> None:
    url = create_database("newer")
    with Engine(make_settings(tmp_path / "a", models_dir, database_url=url)) as engine:
        engine.ingest("shop", small_luma)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE vitrine_collections SET version = 99 WHERE name = 'shop'")
    with Engine(make_settings(tmp_path / "b", models_dir, database_url=url)) as engine:
        with pytest.raises(Conflict, match="newer Vitrine"):
            engine.store("shop")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE vitrine_database SET version = 99")
    with Engine(make_settings(tmp_path / "c", models_dir, database_url=url)) as engine:
        with pytest.raises(Conflict, match="newer Vitrine"):
            engine.collection_names()


def test_a_collection_from_before_the_change_log_is_migrated(postgres_server: str, small_luma: Path,
                                                            models_dir: Path, tmp_path: Path) -> None:
    """Collection version 1 had no change log (nor version 2 a models table): opened by this Vitrine it
    gains both, and an index loaded before the migration is rebuilt rather than caught up with."""
    url = create_database("older")
    with Engine(make_settings(tmp_path / "a", models_dir, database_url=url)) as engine:
        engine.ingest("shop", small_luma)
        generation = engine.store("shop").generation()
    with psycopg.connect(url, autocommit=True) as conn:
        (collection_id,), = conn.execute("SELECT id FROM vitrine_collections WHERE name = 'shop'").fetchall()
        conn.execute(f"SET search_path TO vc_{collection_id}, public")
        conn.execute("DROP TABLE removed; DROP TABLE models; ALTER TABLE products DROP COLUMN changed")
        conn.execute("UPDATE vitrine_collections SET version = 1 WHERE name = 'shop'")
    with Engine(make_settings(tmp_path / "b", models_dir, database_url=url)) as engine:
        store = engine.store("shop")
        assert store.removed_since(generation - 1) is None
        assert store.removed_since(generation) is not None
        engine.vectors("shop")
        store.delete(["MH01"])
        assert engine.vectors("shop").tail is not None  # caught up with from here on
        assert "MH01" not in [h.id for h in engine.search(Query(text="hoodie", collection="shop", top_k=20)).hits]
        assert engine.store("shop").count() == 11
        assert engine.store("shop").save_model(b"weights", "{}") == 1  # version 3 keeps model versions
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM vitrine_collections WHERE name = 'shop'").fetchone() == (4,)


def test_a_collection_of_version_3_gains_genders_from_its_departments(postgres_server: str, models_dir: Path,
                                                                      tmp_path: Path) -> None:
    """As on SQLite (schema 8): H&M rows get their `section`'s gender, and a snapshot saved before, of the
    same generation and without them, does not hide it."""
    url = create_database("departments")
    catalog = hm_catalog(tmp_path / "hm", {*HM_JEANS["Menswear"], *HM_JEANS["Divided"]})
    settings = make_settings(tmp_path / "home", models_dir, database_url=url, snapshot_min_products=0)
    with Engine(settings) as engine:
        engine.ingest("hm", catalog)
    with psycopg.connect(url, autocommit=True) as conn:
        (collection_id,), = conn.execute("SELECT id FROM vitrine_collections WHERE name = 'hm'").fetchall()
        conn.execute(f"DELETE FROM vc_{collection_id}.product_values WHERE field = 'gender'")  # as version 3 stored
    with Engine(settings) as engine:
        assert engine.search(Query(collection="hm", facets=("gender",))).facets["gender"] == {}  # snapshot saved
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE vitrine_collections SET version = 3 WHERE name = 'hm'")
    with Engine(settings) as engine:
        assert engine.search(Query(collection="hm", facets=("gender",))).facets["gender"] == {"Men": 3}
        hits = engine.search(Query(collection="hm", filters=Filters(equals={"gender": ("men",)}))).hits
        assert sorted(h.id for h in hits) == sorted(HM_JEANS["Menswear"])
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM vitrine_collections WHERE name = 'hm'").fetchone() == (4,)


def test_a_bad_or_unreachable_database_url_is_said_clearly(tmp_path: Path, models_dir: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="must be a PostgreSQL URL"):
        make_settings(tmp_path / "a", models_dir, database_url="mysql://shop@db/shop")
    nobody = f"postgresql://shop:s3cret@127.0.0.1:{free_port()}/shop"
    with Engine(make_settings(tmp_path / "b", models_dir, database_url=nobody)) as engine:
        with pytest.raises(ServiceDown, match="127.0.0.1:[0-9]+/shop is unavailable") as caught:
            engine.collection_names()
        assert "s3cret" not in str(caught.value)
        with TestClient(create_app(engine=engine)) as client:  # a server starts before its database is up
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["database"] is False
