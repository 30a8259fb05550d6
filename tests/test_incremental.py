"""Writes to a loaded collection are caught up with, not rebuilt (vitrine/index/updates.py): the products
written since the last whole build become a tail, and those they replace, or that were deleted, are dead.
A changed product is found by its new words and not its old ones, a deleted one by nothing, and every
result (hits, scores, totals, facets) equals what a whole rebuild of the same store gives. On both backends."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import BACKEND, LUMA, make_settings

from vitrine import engine as engine_module
from vitrine.catalog.records import record_from_fields
from vitrine.cli.main import main as cli
from vitrine.engine import Engine
from vitrine.errors import NotFound
from vitrine.index import updates
from vitrine.index.sqlite_store import SqliteStore
from vitrine.index.store import Filters, RangeFilter
from vitrine.search.query import Query

PHOTO = LUMA / "images" / "mj01-orange_main.jpg"
QUERIES = [
    Query(text="black hoodie", collection="luma", top_k=10, facets=("colour", "category")),
    Query(text="jacket", collection="luma", top_k=10, filters=Filters(equals={"colour": ("Orange",)}),
          facets=("colour",)),
    Query(text="scarlet raincoat", collection="luma", top_k=10),
    Query(image=PHOTO.read_bytes(), collection="luma", top_k=10),
    Query(text="jacket", image=PHOTO.read_bytes(), collection="luma", top_k=10, alpha=0.5),
    Query(collection="luma", top_k=20, facets=("colour", "size")),  # browsing: every product
    Query(text="jacket", collection="luma", top_k=10, sort="price_asc",
          filters=Filters(ranges={"price": RangeFilter(None, 80.0)})),
    Query(product_id="MJ02", collection="luma", top_k=10),
]


def results(engine: Engine) -> list[tuple[list[str], list[float], int, dict[str, dict[str, int]]]]:
    out = []
    for query in QUERIES:
        r = engine.search(query)
        out.append(([h.id for h in r.hits], [round(h.score, 5) for h in r.hits], r.total, r.facets))
    return out


def open_engine(home: Path, models_dir: Path, **overrides: object) -> Engine:
    return Engine(make_settings(home, models_dir, search_cache_size=0, snapshot_min_products=0, **overrides))


def rebuilt(home: Path, models_dir: Path) -> list[tuple[list[str], list[float], int, dict[str, dict[str, int]]]]:
    """The results of a process that builds the collection whole from the store, with no snapshot."""
    with open_engine(home, models_dir, vector_snapshots=False) as engine:
        assert engine.vectors("luma").tail is None
        return results(engine)


def test_changes_are_caught_up_as_a_tail_with_the_results_of_a_rebuild(luma_copy: Path, models_dir: Path) -> None:
    with open_engine(luma_copy, models_dir) as engine:
        base = engine.vectors("luma")
        assert base.tail is None
        jacket = engine.get_product("luma", "MJ01")
        engine.put_product("luma", record_from_fields("MJ01", {
            "title": "Scarlet raincoat", "description": jacket.description, "category": jacket.category,
            "colour": "Red", "price": 12.0}), [PHOTO.read_bytes()])
        engine.put_product("luma", record_from_fields("NEW-1", {
            "title": "Orange storm jacket", "category": "Jackets", "colour": "Orange", "price": 20.0}),
            [(LUMA / "images" / "mh01-orange_main.jpg").read_bytes()])
        gone = engine.search(QUERIES[0]).hits[0].id
        engine.store("luma").delete([gone])

        vectors = engine.vectors("luma")
        assert vectors.tail is not None and vectors.tail.base is base  # nothing was rebuilt
        assert vectors.size - vectors.tail.start == 2 and vectors.live_size == 191
        assert vectors.position_of(gone) is None and gone not in vectors.product_ids()
        assert vectors.position_of("MJ01") == vectors.tail.start  # the new version, not the base's

        found = results(engine)
        assert found == rebuilt(luma_copy, models_dir)
        assert found[2][0][0] == "MJ01"  # found by its new words ...
        orange = found[1]
        assert "MJ01" not in orange[0] and "NEW-1" in orange[0]  # ... and no longer as orange
        assert all(gone not in ids for ids, *_ in found)
        assert found[5][2] == 191  # browsing counts every product once
        with pytest.raises(NotFound):
            engine.search(Query(product_id=gone, collection="luma"))
        assert gone not in [p.id for p, _ in engine.complete_the_look("luma", "MJ02")]

        # A second process maps the base's snapshot and catches up with the same tail.
        with open_engine(luma_copy, models_dir) as second:
            again = second.vectors("luma")
            assert again.tail is not None and again.tail.base.generation == base.generation
            assert results(second) == found


def test_a_bulk_change_is_rebuilt_in_the_background_while_searches_read_the_collection_as_it_was(
        luma_copy: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the tail limit no tail is built, nor are its products read: searches go on at once from what
    was served before (deleted products left out, results not cached) while the collection is built whole
    in the background (a million products: 6 minutes that searches used to wait); then it serves it all."""
    monkeypatch.setattr(updates, "TAIL_MAX", 1)
    settings = make_settings(luma_copy, models_dir, snapshot_min_products=0, search_cache_size=64)
    with Engine(settings) as engine:
        engine.vectors("luma")
        photo = [PHOTO.read_bytes()]
        engine.put_product("luma", record_from_fields("NEW-1", {"title": "Storm jacket"}), photo)
        before = engine.vectors("luma")
        assert before.tail is not None
        released = threading.Event()
        build = engine._build_vectors

        def held_build(*args: Any) -> Any:
            assert released.wait(timeout=30), "the rebuild was never released"
            return build(*args)

        monkeypatch.setattr(engine, "_build_vectors", held_build)
        engine.put_product("luma", record_from_fields("NEW-2", {"title": "Rain jacket"}), photo)
        hoodies = Query(text="black hoodie", collection="luma", top_k=10)
        top = engine.search(hoodies).hits[0].id
        store = engine.store("luma")
        store.delete([top])
        read = store.load_vectors
        monkeypatch.setattr(store, "load_vectors", lambda fields, *, changed_since=None: pytest.fail(
            "the tail's products were read") if changed_since is not None else read(fields))
        assert engine.vectors("luma") is before  # while the rebuild is held
        assert top not in [h.id for h in engine.search(hoodies).hits]
        rain = Query(text="rain jacket", collection="luma", top_k=5)
        assert "NEW-2" not in [h.id for h in engine.search(rain).hits] and not engine.search(rain).cached
        released.set()
        engine.settle()
        monkeypatch.setattr(store, "load_vectors", read)
        whole = engine.vectors("luma")
        assert whole.live_size == 192 and whole.generation == store.generation()
        assert (whole.tail.base if whole.tail is not None else whole) is not before.tail.base  # built anew
        assert engine.search(rain).hits[0].id == "NEW-2" and engine.search(rain).cached
        assert top not in [h.id for h in engine.search(hoodies).hits]
    with open_engine(luma_copy, models_dir) as again:
        assert results(again) == rebuilt(luma_copy, models_dir)


def test_a_tail_past_the_merge_size_is_rebuilt_whole_in_the_background(
        luma_copy: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past TAIL_MERGE the tail still serves at once, while a background thread builds the collection
    whole and saves its snapshot; the next search reads that build, with no tail."""
    monkeypatch.setattr(updates, "TAIL_MERGE", 1)
    with open_engine(luma_copy, models_dir) as engine:
        before = engine.vectors("luma")
        photo = [PHOTO.read_bytes()]
        engine.put_product("luma", record_from_fields("NEW-1", {"title": "Storm jacket"}), photo)
        engine.put_product("luma", record_from_fields("NEW-2", {"title": "Rain jacket"}), photo)
        served = engine.vectors("luma")
        assert served.tail is not None and served.tail.base is before  # the tail serves meanwhile
        engine.settle()
        merged = engine.vectors("luma")
        assert merged.tail is None and merged.size == 193 and merged.generation == served.generation
        store = engine.store("luma")
        assert [p.name.split("-")[1] for p in (luma_copy / "collections" / "luma" / "snapshots").glob("i*")] == \
            [f"g{store.generation()}"]  # the new build's snapshot replaced the old one
        assert results(engine) == rebuilt(luma_copy, models_dir)


def test_other_heads_are_never_caught_up_with_from_the_old_base(luma_copy: Path, models_dir: Path) -> None:
    """The photos' cross-modal vectors depend on the heads: a tail cannot carry a model change."""
    with open_engine(luma_copy, models_dir) as engine:
        before = engine.vectors("luma")
        engine.put_product("luma", record_from_fields("NEW-1", {"title": "Storm jacket"}), [PHOTO.read_bytes()])
        engine._heads.clear()  # as switching the active version does: another heads object
        after = engine.vectors("luma")
        assert after.tail is not None and after.tail.base is not before


@pytest.mark.skipif(BACKEND != "sqlite", reason="an older SQLite file")
def test_a_store_from_before_the_change_log_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = SqliteStore(path, name="old")
    store.set_meta("x", "1", bump=True)
    store.set_meta("x", "2", bump=True)
    store.close()
    with sqlite3.connect(path) as db:  # back to schema 4: no change log, filter indexes without the row
        db.executescript("DROP INDEX products_by_change; ALTER TABLE products DROP COLUMN changed; "
                         "DROP TABLE removed; DROP INDEX values_by_field_row; "
                         "CREATE INDEX values_by_field ON product_values(field, value_norm); PRAGMA user_version=4;")
    store = SqliteStore(path, name="old")
    try:
        plan = store._db.execute("EXPLAIN QUERY PLAN SELECT product_row FROM product_values "
                                 "WHERE field='colour' AND value_norm='red'").fetchall()
        assert "COVERING INDEX values_by_field_row" in str(plan)  # schema 6: a filter reads the index alone
        assert store.removed_since(1) is None  # an index this old cannot catch up: rebuilt
        assert store.removed_since(2) is not None and len(store.removed_since(2)) == 0  # type: ignore[arg-type]
        assert np.asarray(store.load_vectors((), changed_since=2).ids).size == 0
    finally:
        store.close()


def test_the_vocabulary_is_extended_and_large_suggestions_rebuilt_behind(
        luma_copy: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Query understanding knows a written product's words at once (its vocabulary is the base's extended
    with the tail's); synonyms apply at once. Suggestions of a collection above REFRESH_BEHIND_PRODUCTS
    (every title: seconds at 1M products) are served from the previous generation while a background
    thread builds the new ones."""
    monkeypatch.setattr(engine_module, "REFRESH_BEHIND_PRODUCTS", 0)
    with open_engine(luma_copy, models_dir) as engine:
        whole = engine.vocabulary("luma")
        assert not whole.knows("zephyrine") and whole.correction("jackte") == "jacket"
        suggestions = engine.suggester("luma")
        engine.put_product("luma", record_from_fields("NEW-1", {"title": "Zephyrine storm jacket",
                                                                "colour": "Turquoise", "price": 9999.0}),
                           [PHOTO.read_bytes()])
        extended = engine.vocabulary("luma")
        assert extended.knows("zephyrine") and extended.correction("zephyrin") == "zephyrine"
        assert extended.correction("jackte") == "jacket"
        assert ("turquoise",) in extended.phrases["colour"] and extended.prices[-1] == 9999.0
        assert engine.vocabulary("luma") is extended  # once per generation
        assert engine.search(Query(text="zephyrin", collection="luma", top_k=3)).hits[0].id == "NEW-1"

        assert engine.suggester("luma") is suggestions  # built behind the write ...
        engine.settle()
        assert any(s.get("id") == "NEW-1" for s in engine.suggest("zephyr", collection="luma"))  # ... then new

        engine.set_synonyms("luma", [["anorak", "raincoat"]])
        assert engine.vocabulary("luma").synonyms == [["anorak", "raincoat"]]


def test_a_filters_positions_are_kept_per_snapshot_and_follow_writes(luma_copy: Path, models_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A filter's products are read from the store once per snapshot (shoppers repeat filters); a write
    makes a new snapshot, so a product that gains or loses the value is found or dropped at once."""
    orange = Filters(equals={"colour": ("Orange",)})
    with open_engine(luma_copy, models_dir) as engine:
        store = engine.store("luma")
        reads: list[Filters] = []
        real = store.filter_rows

        def counted(filters: Filters) -> np.ndarray:
            reads.append(filters)
            return real(filters)

        monkeypatch.setattr(store, "filter_rows", counted)

        def ids(text: str | None) -> set[str]:
            return {h.id for h in engine.search(Query(text=text, collection="luma", top_k=100, filters=orange)).hits}

        every = ids(None)
        assert ids("jacket") and ids("hoodie") and len(reads) == 1  # one read for three searches
        vectors = engine.vectors("luma")
        kept = vectors.kept_positions(next(iter(vectors._kept)), lambda: np.zeros(0, np.int64))
        assert len(kept) == len(every)
        with pytest.raises(ValueError):
            kept[0] = 0  # shared between searches: nobody may write into it
        gone = sorted(every)[0]
        assert "MH02" not in every
        engine.put_product("luma", record_from_fields("MH02", {"title": "Orange storm hoodie", "colour": "Orange"}),
                           [PHOTO.read_bytes()])
        engine.store("luma").delete([gone])
        assert ids(None) == every - {gone} | {"MH02"} and len(reads) == 2


def test_a_one_shot_process_rebuilds_after_a_bulk_change_instead_of_searching_the_old_build(
        luma_copy: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI has nothing worth serving while a rebuild runs, and exits before a background one would end:
    after another process's bulk change it builds first, and saves the snapshot the next one starts from."""
    monkeypatch.setattr(updates, "TAIL_MAX", 1)
    settings = make_settings(luma_copy, models_dir, snapshot_min_products=0, search_cache_size=0)
    storm = Query(text="storm parka", collection="luma", top_k=5)

    def bulk_change(*ids: str) -> None:
        """Written by another process, which saves no snapshot of its own."""
        with Engine(settings.model_copy(update={"vector_snapshots": False})) as writer:
            for i in ids:
                writer.put_product("luma", record_from_fields(i, {"title": "Storm parka"}), [PHOTO.read_bytes()])

    with Engine(settings) as engine:
        engine.vectors("luma")  # a snapshot of this generation
    bulk_change("NEW-1", "NEW-2")
    with Engine(settings, serve_stale=False) as one_shot:  # a server would search the snapshot meanwhile
        assert {"NEW-1", "NEW-2"} <= {h.id for h in one_shot.search(storm).hits}
        assert one_shot.vectors("luma").live_size == 193
    if BACKEND == "sqlite":  # the CLI is one-shot (its settings come from the home, not the test's database)
        bulk_change("NEW-3", "NEW-4")
        assert cli(["--home", str(luma_copy), "search", "luma", "--text", "storm parka", "--json"]) == 0
        assert {"NEW-3", "NEW-4"} <= {h["id"] for h in json.loads(capsys.readouterr().out)["hits"]}
