"""The store's transactions and the pure scoring functions, checked against brute force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitrine.catalog.records import ProductRecord
from vitrine.index.keywords import keyword_words
from vitrine.index.sqlite_store import SqliteStore
from vitrine.index.store import Filters, ImageWrite, ProductWrite, RangeFilter, StoreBackend, merge_facets
from vitrine.search.scoring import best_per_product, facet_counts, fuse, top_indices


def write(pid: str, *, colour: str = "Red", price: float | None = 10.0, features: object = None) -> ProductWrite:
    record = ProductRecord(id=pid, title=f"{colour} dress {pid}", description="", category="Dresses",
                           colour=colour, price=price, image_refs=("a.jpg",), attributes={"size": "S|M"})
    feats = np.ones(4, dtype=np.float32) if features is None else features
    return ProductWrite(record=record, text_vector=np.ones(3, dtype=np.float32),
                        images=(ImageWrite(ref="a.jpg", path="/x/a.jpg", sha256=pid, features=feats),))  # type: ignore[arg-type]


class Unstorable:
    """Stands for a vector that fails half-way through a batch."""

    def __array__(self, *args: object, **kwargs: object) -> np.ndarray:
        raise RuntimeError("disk full")


def test_a_failing_batch_writes_nothing(collections: StoreBackend) -> None:
    store = collections.open("s", create=True)
    store.upsert([write("A")])
    generation, hashes = store.generation(), store.product_hashes()
    with pytest.raises(RuntimeError, match="disk full"):
        store.upsert([write("A", colour="Blue"), write("B"), write("C", features=Unstorable())])
    assert (store.generation(), store.product_hashes()) == (generation, hashes)
    assert store.get_products(["A"])[0].colour == "Red"
    assert store.info()["images"] == 1
    store.close()


def test_keywords_are_split_and_stemmed_alike_on_every_backend(collections: StoreBackend) -> None:
    """PostgreSQL's parser and stemmer differ from SQLite's FTS5: texts and queries are split into the
    same words, and words under 3 bytes are not stemmed, so a query finds the same products on both."""
    store = collections.open("s", create=True)
    sized = {"A": "XS", "B": "X", "C": "S"}
    store.upsert([ProductWrite(record=ProductRecord(
        id=pid, title=title, description="", category="Men/Tops/Hoodies", colour="Blue", price=1.0,
        image_refs=("a.jpg",), attributes={"size": sized[pid]}), text_vector=np.ones(3, dtype=np.float32),
        images=(ImageWrite(ref="a.jpg", path="/x/a.jpg", sha256=pid, features=np.ones(4, dtype=np.float32)),))
        for pid, title in (("A", "navy_blue dress"), ("B", "navy blue dress"), ("C", "dresses"))])
    rows = dict(zip(["A", "B", "C"], store.filter_rows(Filters()).tolist(), strict=True))

    def found(query: str) -> dict[str, float]:
        hits, scores = store.keyword_scores(query)
        named = {row: pid for pid, row in rows.items()}
        return {named[r]: round(s, 3) for r, s in zip(hits.tolist(), scores.tolist(), strict=True)}

    assert found("navy_blue") == found("blue_navy") == found("navy blue") == {"A": 1.0, "B": 1.0, "C": 0.5}
    assert found("xs") == {"A": 0.5} and found("x") == {"B": 0.5}  # "xs" is not stemmed to "x"
    assert found("hoodies") == {"A": 1.0, "B": 1.0, "C": 1.0}  # a category path is words, not one path token
    assert found("dress") == {"A": 1.0, "B": 1.0, "C": 1.0}  # "dresses" stems to "dress"
    store.close()


def test_a_product_given_twice_in_a_batch_is_its_last_copy(collections: StoreBackend) -> None:
    store = collections.open("s", create=True)
    store.upsert([write("A", colour="Red"), write("B"), write("A", colour="Green")])
    rows = store.filter_rows(Filters())
    store.upsert([write("A", colour="Blue")])  # an update keeps the product's row
    assert store.count() == 2 and store.info()["images"] == 2
    assert list(store.filter_rows(Filters())) == list(rows)
    assert store.get_products(["A"])[0].colour == "Blue"
    assert list(store.filter_rows(Filters(equals={"colour": ("green",)}))) == []
    store.close()


def test_filters_and_keywords(collections: StoreBackend) -> None:
    store = collections.open("s", create=True)
    store.upsert([write("A", colour="Red", price=10), write("B", colour="Blue", price=30),
                  write("C", colour="Blue", price=None)])
    rows = dict(zip(["A", "B", "C"], store.filter_rows(Filters()), strict=True))
    assert list(store.filter_rows(Filters(equals={"color": ("BLUE",)}))) == [rows["B"], rows["C"]]
    assert list(store.filter_rows(Filters(ranges={"price": RangeFilter(20, None)}))) == [rows["B"]]
    assert list(store.filter_rows(Filters(equals={"size": ("m",)}, ranges={"price": RangeFilter(None, 15)}))) \
        == [rows["A"]]
    found, scores = store.keyword_scores('blue "dresses" OR NEAR(')  # FTS syntax in a query is just words
    by_row = dict(zip(found.tolist(), scores.tolist(), strict=True))
    # 3 words (blue, dresses, near; "or" is a stop word); "dresses" is stemmed to match every title
    assert by_row == pytest.approx({rows["A"]: 1 / 3, rows["B"]: 2 / 3, rows["C"]: 2 / 3})
    # The same scores for given rows (a search's candidates), in their order; 0 for a row without the words
    asked = np.asarray([rows["C"], 10**6, rows["A"], rows["B"]])
    assert store.keyword_scores_of('blue "dresses" OR NEAR(', asked).tolist() == pytest.approx([2 / 3, 0, 1 / 3, 2 / 3])
    found, scores = store.keyword_scores("small")  # only in an attribute: half a match
    assert found.size == 0
    found, scores = store.keyword_scores("S")
    assert scores.tolist() == [0.5, 0.5, 0.5]
    assert keyword_words("the of a") == []
    store.delete(["B"])
    assert store.count() == 2 and not store.filter_rows(Filters(ranges={"price": RangeFilter(20, None)})).size
    before, _ = store.keyword_scores("blue")
    store.upsert([write("D", colour="Blue")])  # a write must reach the cached postings of "blue"
    after, _ = store.keyword_scores("blue")
    assert len(after) == len(before) + 1
    assert store.keyword_scores_of("blue", after).tolist() == [1.0] * len(after)
    store.close()


def test_value_counts_count_products_per_value_most_common_first(collections: StoreBackend) -> None:
    store = collections.open("s", create=True)
    store.upsert([write(pid, colour=c) for pid, c in (("A", "Red"), ("B", "Blue"), ("C", "red"), ("D", "Red"))])
    assert store.value_counts("colour") == [("Red", 3), ("Blue", 1)]  # "red" and "Red" are one value
    assert store.value_counts("category") == [("Dresses", 4)]
    assert store.value_counts("colour", limit=1) == [("Red", 3)]
    store.delete(["A", "C"])
    assert store.value_counts("colour") == [("Blue", 1), ("Red", 1)]
    assert store.value_counts("no such field") == []
    store.close()


def test_vector_batches_read_what_load_vectors_reads_and_from_one_snapshot(collections: StoreBackend) -> None:
    """A whole build reads the store a batch of products at a time: together the batches are what one
    read gives, and a write made while they are read is in none of them (it is caught up with as a tail)."""
    store = collections.open("s", create=True)
    rng = np.random.default_rng(0)

    def product(i: int) -> ProductWrite:
        record = ProductRecord(id=f"P{i}", title=f"dress {i}", description="", category="Dresses",
                               colour=("Red", "Blue", "Green")[i % 3], price=None if i == 5 else float(i),
                               image_refs=(), attributes={"size": "S|M" if i % 2 else "L"})
        images = tuple(ImageWrite(ref=f"{k}.jpg", path=f"/x/{i}-{k}.jpg", sha256=f"{i}-{k}",
                                  features=rng.normal(size=6).astype(np.float32)) for k in range(i % 3))
        return ProductWrite(record=record, text_vector=rng.normal(size=3).astype(np.float32), images=images)

    store.upsert([product(i) for i in range(12)])
    store.delete(["P3"])  # a gap in the rows
    fields = ("colour", "size")
    whole = store.load_vectors(fields)
    batches = store.vector_batches(fields, batch=4)
    first = next(batches)
    generation = store.generation()
    store.upsert([product(20)])
    store.delete(["P11"])
    parts = [first, *batches]
    assert [len(p.ids) for p in parts] == [4, 4, 3]
    assert [pid for p in parts for pid in p.ids] == whole.ids and "P11" in whole.ids
    for name in ("rows", "text_vectors", "image_features", "image_position", "prices"):
        assert np.array_equal(np.concatenate([getattr(p, name) for p in parts]), getattr(whole, name), equal_nan=True)
    offsets = np.cumsum([0] + [len(p.ids) for p in parts])
    assert np.array_equal(np.concatenate([p.image_product + at for p, at in zip(parts, offsets, strict=False)]),
                          whole.image_product)
    merged = merge_facets([(p.facets, int(at)) for p, at in zip(parts, offsets, strict=False)])

    def entries(facets: dict[str, tuple[np.ndarray, np.ndarray, list[str]]]) -> dict[str, set[tuple[int, str]]]:
        return {name: {(int(at), values[code]) for at, code in zip(positions, codes, strict=True)}
                for name, (positions, codes, values) in facets.items()}

    assert entries(merged) == entries(whole.facets) and merged["size"][2] == ["L", "M", "S"]
    after = store.load_vectors(fields).ids
    assert "P20" in after and "P11" not in after
    assert store.changed_count(generation) == 1 and store.changed_count(0) == len(after) == 11  # what a tail reads
    assert [len(p.ids) for p in store.vector_batches(fields, batch=100)] == [len(after)]
    store.close()


def test_best_per_product_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    owners = np.sort(rng.choice(np.arange(0, 40, 2), size=120))  # odd products have no image
    scores = rng.normal(size=120).astype(np.float32)
    best, which = best_per_product(scores, owners, 41)
    for product in range(41):
        mine = np.flatnonzero(owners == product)
        if len(mine) == 0:
            assert best[product] == -np.inf and which[product] == -1
        else:
            assert best[product] == scores[mine].max() and which[product] == mine[np.argmax(scores[mine])]


def test_small_functions() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.9], dtype=np.float32)
    assert list(top_indices(scores, 3)) == [1, 3, 2]
    assert list(top_indices(scores, 10)) == [1, 3, 2, 0]
    image, text = np.array([1.0, -np.inf]), np.array([0.2, 0.4])
    assert fuse(image, text, 0.0).tolist() == [0.2, 0.4]  # alpha 0 ignores a missing image entirely
    assert fuse(image, text, 0.5)[0] == pytest.approx(0.6)
    counts = facet_counts(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 0]), ["Blue", "Red"], np.array([1, 0, 1], bool))
    assert counts == {"Blue": 2, "Red": 1}


def test_metrics_by_hand() -> None:
    from vitrine.search.metrics import ndcg_at, precision_at, recall_at, reciprocal_rank, summarise

    ranked, relevant = ["a", "b", "c", "d"], {"b", "d", "z"}
    assert recall_at(ranked, relevant, 2) == pytest.approx(1 / 3)
    assert precision_at(ranked, relevant, 4) == 0.5
    assert reciprocal_rank(ranked, relevant) == 0.5
    assert ndcg_at(["b", "d", "z"], relevant, 3) == pytest.approx(1.0)
    assert summarise([(ranked, relevant)])["hit@1"] == 0.0


def test_a_store_from_before_colour_features_is_refused_not_misread(tmp_path: Path) -> None:
    """Schema 1 stored photo features without the colour descriptor: reading them as schema 2 would
    cut real CNN features off as "colour", so such a collection must be ingested again."""
    import sqlite3

    from vitrine.errors import Conflict
    from vitrine.index.sqlite_store import _SCHEMA

    old = tmp_path / "old.sqlite"
    db = sqlite3.connect(old)
    db.executescript(_SCHEMA + "PRAGMA user_version=1;")
    db.execute("INSERT INTO products(id, title, description, category, colour, attributes, content_hash, "
               "text_vector, updated_at) VALUES('p', 't', '', '', '', '{}', 'h', x'00', 0)")
    db.execute("INSERT INTO images VALUES(1, 0, 'a.jpg', 'a.jpg', 'sha', ?)",
               (np.zeros(1280, np.float32).tobytes(),))
    db.commit()
    db.close()
    with pytest.raises(Conflict, match="ingest its catalog again"):
        SqliteStore(old, name="old")
    empty = tmp_path / "empty.sqlite"  # an old store with nothing in it just upgrades
    plain = sqlite3.connect(empty)
    plain.executescript(_SCHEMA + "PRAGMA user_version=1;")
    plain.close()
    SqliteStore(empty, name="empty").close()


def test_int8_table_scores_are_close_to_exact(luma_home: Path, models_dir: Path) -> None:
    from conftest import make_settings

    from vitrine.engine import Engine
    from vitrine.index.quantized import QuantizedTable

    with Engine(make_settings(luma_home, models_dir)) as engine:
        vectors = engine.vectors("luma")
        tables = [vectors.data.text_vectors, vectors.image_vectors, vectors.xmodal_vectors]
    for table in tables:
        assert table is not None
        quantized = QuantizedTable(table)
        assert quantized.nbytes < table.nbytes / 3
        errors = np.concatenate([quantized.scores(q) - table @ q for q in table[::7]])
        assert np.abs(errors).max() < 0.01 and np.abs(errors).mean() < 0.002
    assert not QuantizedTable(tables[0]).scores(np.zeros(tables[0].shape[1], dtype=np.float32)).any()
    assert QuantizedTable(np.zeros((0, 8), dtype=np.float32)).scores(np.ones(8, dtype=np.float32)).shape == (0,)
