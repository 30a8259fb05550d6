"""What replicas share through the database rather than their homes. Trained model versions are kept in
the collection's store: a version trained through one replica (or a worker on another machine) is what
every replica searches with; deleting the collection deletes them. Looks are kept in the service's
tables: one analysed by a worker is read, corrected and indexed through another replica. Searches and
clicks are recorded in one place, so every replica reports and suggests from all of them. What older
Vitrines kept as files is moved in. Runs on both backends."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import BACKEND, DATA, make_settings

from vitrine.analytics.store import SCHEMA as ANALYTICS
from vitrine.analytics.store import Analytics
from vitrine.engine import Engine
from vitrine.errors import NotFound
from vitrine.index.sqlite_store import SCHEMA_VERSION
from vitrine.models.heads import FashionHeads, load_base_heads
from vitrine.search.query import Query
from vitrine.settings import Settings
from vitrine.vision.service import LookService

STREET = DATA / "ccp" / "photos" / "0003.jpg"


def _shifted(scale: float) -> FashionHeads:
    base = load_base_heads()
    assert base is not None
    return FashionHeads(weights={k: v * scale for k, v in base.weights.items()},
                        card={**base.card, "recipe": "test", "train_seconds": scale})


def _other_replica(settings: Settings, tmp_path: Path, models_dir: Path) -> Settings:
    """Another process over the same collections: on PostgreSQL a replica with a home of its own (another
    machine); embedded, a process on the same home (the store is a file there)."""
    if BACKEND == "postgres":
        return make_settings(tmp_path / "replica", models_dir, database_url=settings.database_url)
    return settings


def test_a_version_trained_on_one_replica_is_searched_with_on_another(
        settings: Settings, small_luma: Path, tmp_path: Path, models_dir: Path) -> None:
    with Engine(settings) as a:
        a.ingest("shop", small_luma)
        trained = _shifted(1.05)
        assert a.model_versions("shop").save(trained) == 1 and trained.card["version"] == "v1"
        assert a.model_versions("shop").save(_shifted(0.95)) == 2
        a.use_model("shop", "v1")
        assert not (settings.home / "collections" / "shop" / "models").exists()  # nothing kept beside the store
        query = Query(text="hoodie", collection="shop", cross_modal_weight=1.0)
        want = [(h.id, h.score) for h in a.search(query).hits]
        with Engine(_other_replica(settings, tmp_path, models_dir)) as b:
            assert b.model_versions("shop").names() == ["base", "v1", "v2"]
            heads = b.heads("shop")
            assert isinstance(heads, FashionHeads) and heads.version == "v1"
            for name, weights in trained.weights.items():  # kept as float16
                np.testing.assert_allclose(heads.weights[name], weights, rtol=1e-3, atol=1e-3)
            got = [(h.id, h.score) for h in b.search(query).hits]
            assert [i for i, _ in got] == [i for i, _ in want]
            assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-5)
            cards = b.model_versions("shop").cards()
            assert [c["version"] for c in cards] == ["base", "v1", "v2"]
            assert cards[2]["recipe"] == "test" and cards[2]["train_seconds"] == pytest.approx(0.95)
            b.use_model("shop", "v2")
            assert a.heads("shop").version == "v2"  # the switch made on b is seen by a
            with pytest.raises(NotFound, match="no model version 'v3'"):
                b.use_model("shop", "v3")


def test_versions_kept_as_files_by_an_older_vitrine_move_into_the_store(engine: Engine, small_luma: Path) -> None:
    engine.ingest("shop", small_luma)
    folder = engine.collections_dir / "shop" / "models"
    old = _shifted(1.1)
    old.card["version"] = "v3"
    old.save(folder / "v3.npz")
    (folder / "notes.txt").write_text("not a model")
    assert engine.model_versions("shop").names() == ["base", "v3"]
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    engine.use_model("shop", "v3")
    heads = engine.heads("shop")
    assert isinstance(heads, FashionHeads) and heads.version == "v3"
    np.testing.assert_allclose(heads.weights["image_w1"], old.weights["image_w1"], rtol=1e-3, atol=1e-3)
    assert engine.model_versions("shop").save(_shifted(1.2)) == 4  # numbering goes on from the moved ones


def test_deleting_a_collection_deletes_its_versions(engine: Engine, small_luma: Path) -> None:
    engine.ingest("shop", small_luma)
    engine.model_versions("shop").save(_shifted(1.05))
    engine.delete_collection("shop")
    engine.ingest("shop", small_luma)
    assert engine.model_versions("shop").names() == ["base"]


@pytest.mark.skipif(BACKEND != "sqlite", reason="a SQLite file written by schema 6")
def test_a_schema_6_store_gains_the_models_table(engine: Engine, small_luma: Path) -> None:
    engine.ingest("shop", small_luma)
    path = engine.collections_dir / "shop" / "store.sqlite"
    engine.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE models")
        db.execute("PRAGMA user_version=6")
    with Engine(engine.settings) as again:
        assert again.model_versions("shop").save(_shifted(1.05)) == 1
        assert again.store("shop").count() == 12
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        (card,), = db.execute("SELECT card FROM models").fetchall()
    assert json.loads(card)["recipe"] == "test" and "version" not in json.loads(card)


def test_a_look_analysed_by_a_worker_is_read_corrected_and_indexed_through_another_replica(
        settings: Settings, small_luma: Path, tmp_path: Path, models_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    photo = STREET.read_bytes()
    with Engine(settings) as replica, Engine(_other_replica(settings, tmp_path, models_dir)) as worker:
        replica.ingest("shop", small_luma)
        look_id, sha = LookService(replica).save_photo(photo)
        done = LookService(worker).run(look_id, collection="shop", top_k=3)  # the job, on another machine
        assert done["garments"]
        looks = LookService(replica)
        seen = looks.get(look_id)
        assert seen["garments"] == done["garments"] and seen["photo"]["sha256"] == sha
        assert looks.photo(look_id) == (photo, "jpeg")
        assert looks.crop(look_id, 0).startswith(b"\x89PNG")
        with pytest.raises(NotFound):
            looks.crop(look_id, len(done["garments"]))
        looks.correct(look_id, 0, labels={"colour": "plum"})
        assert LookService(worker).get(look_id)["garments"][0]["corrected"] == {"colour": "plum"}
        drawn = looks.add(look_id, [0, 0, done["width"] // 3, done["height"] // 3], group="bag")  # one it missed
        assert LookService(worker).get(look_id)["garments"][-1] == drawn and drawn["group"] == "bag"
        assert LookService(worker).crop(look_id, drawn["index"]) == looks.crop(look_id, drawn["index"])
        LookService(worker).remove(look_id, drawn["index"])  # not a bag after all: kept, marked, not indexed
        indexer = LookService(worker)
        put_product = worker.put_product
        raced: list[dict[str, object]] = []

        def racing(*args: object, **kwargs: object) -> None:
            if not raced:  # a shopper draws another garment through the replica while the worker indexes
                raced.append(looks.add(look_id, [0, 0, done["width"] // 2, done["height"] // 2], group="bag"))
            put_product(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(worker, "put_product", racing)
        ids = indexer.index(look_id, "shop")
        assert len(ids) == len(done["garments"])  # neither the removed garment nor the one drawn meanwhile
        assert replica.get_product("shop", ids[0]).colour == "plum"
        garments = looks.get(look_id)["garments"]
        assert garments[0]["product"] == {"collection": "shop", "id": ids[0]}
        assert garments[drawn["index"]]["removed"] and "product" not in garments[drawn["index"]]
        assert garments[-1]["index"] == raced[0]["index"] and "product" not in garments[-1]
        if BACKEND == "postgres":
            assert not (settings.home / "looks.sqlite").exists()


def test_corrections_made_at_once_through_two_replicas_are_both_kept(
        settings: Settings, tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Engine(settings) as one, Engine(_other_replica(settings, tmp_path, models_dir)) as other:
        a, b = LookService(one), LookService(other)
        look_id, _ = a.save_photo(STREET.read_bytes())
        assert len(a.run(look_id, collection=None)["garments"]) >= 2
        write = a.store.update
        raced: list[bool] = []

        def racing(record: dict[str, object], revision: int, now: float) -> bool:
            if not raced:  # b's correction lands between a's read and a's write
                raced.append(b.correct(look_id, 1, labels={"colour": "teal"})["corrected"] == {"colour": "teal"})
            return write(record, revision, now)

        monkeypatch.setattr(a.store, "update", racing)
        a.correct(look_id, 0, labels={"colour": "plum"})
        garments = b.get(look_id)["garments"]
        assert raced == [True]
        assert garments[0]["corrected"] == {"colour": "plum"} and garments[1]["corrected"] == {"colour": "teal"}


def test_a_search_on_one_replica_and_its_click_on_another_make_one_report(
        settings: Settings, tmp_path: Path, models_dir: Path) -> None:
    with Engine(settings) as one, Engine(_other_replica(settings, tmp_path, models_dir)) as other:
        a = Analytics(one.backend.tables("analytics", ANALYTICS), retention_days=30, max_rows=1000)
        b = Analytics(other.backend.tables("analytics", ANALYTICS), retention_days=30, max_rows=1000)
        try:
            found = a.record_search(collection="shop", query="red  dress", filters={}, kind="text", hits=5,
                                    latency_ms=3)
            a.record_search(collection="shop", query="gown", filters={}, kind="text", hits=0, latency_ms=2)
            assert found is not None
            assert b.record_click(search_id=found, product_id="p1", position=2) == ("shop", "red dress", 1)
            report = b.report("shop")
            assert (report["searches"], report["zero_results"], report["clicks"], report["ctr"]) == (2, 1, 1, 0.5)
            assert report["mean_click_position"] == 2.0 and report["no_result_queries"] == [{"query": "gown",
                                                                                            "searches": 1}]
            assert report["daily"][0]["searches"] == 2 and report["daily"][0]["clicks"] == 1
            assert b.popular("shop") == [("red dress", 1)]
            assert a.counts() == {("shop", "hits"): 1, ("shop", "zero"): 1, ("shop", "clicks"): 1}
        finally:
            a.close()
            b.close()


def test_looks_kept_as_files_by_an_older_vitrine_move_into_the_tables(engine: Engine) -> None:
    root = engine.home / "looks"
    sha = "ab" * 32
    (root / "photos" / "ab").mkdir(parents=True)
    (root / "photos" / "ab" / f"{sha}.jpeg").write_bytes(STREET.read_bytes())
    look_id = "0123456789abcdef"
    (root / look_id / "crops").mkdir(parents=True)
    record = {"id": look_id, "photo": {"sha256": sha, "type": "jpeg"}, "created_at": 1.0,
              "garments": [{"index": 0, "group": "top", "labels": {}, "box": [0, 0, 5, 5]}]}
    (root / look_id / "look.json").write_text(json.dumps(record))
    (root / look_id / "crops" / "0.png").write_bytes(b"\x89PNG old crop")
    (root / "fedcba9876543210").mkdir()
    (root / "fedcba9876543210" / "look.json").write_text("{broken")
    looks = LookService(engine)
    assert looks.get(look_id) == record
    assert looks.photo(look_id) == (STREET.read_bytes(), "jpeg")
    assert looks.crop(look_id, 0) == b"\x89PNG old crop"
    assert looks.store.ids() == [look_id] and not root.exists()


def test_a_sqlite_file_opened_by_two_processes_at_once_retries_the_wal_switch_it_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas and workers starting together open the same new files; SQLite answers the loser of the
    switch to WAL "database is locked" without waiting (seen as a replica that died on start)."""
    from vitrine import sqlite_files

    real = sqlite3.connect
    lost = {"left": 2}

    class Racing:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            if "journal_mode" in sql and lost["left"]:
                lost["left"] -= 1
                raise sqlite3.OperationalError("database is locked")
            return self.db.execute(sql, *args)

        def close(self) -> None:
            self.db.close()

    monkeypatch.setattr(sqlite_files.sqlite3, "connect", lambda *a, **k: Racing(real(*a, **k)))
    db = sqlite_files.connect_wal(tmp_path / "cache.sqlite")
    assert lost["left"] == 0 and db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    (tmp_path / "a folder").mkdir()
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):  # not retried
        sqlite_files.connect_wal(tmp_path / "a folder")
