"""Vector snapshots: a collection's search tables saved by the process that built them and memory-mapped by
the next, with the same results; a write makes a new one; a damaged or stale one is rebuilt, never used."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import LUMA, make_settings

import vitrine.index.vectors
from vitrine.engine import Engine
from vitrine.index.store import Filters
from vitrine.search.query import Query

QUERIES = [
    Query(text="black hoodie", collection="luma", top_k=10),
    Query(text="jacket", collection="luma", top_k=10, filters=Filters(equals={"colour": ("Blue",)})),
    Query(image=(LUMA / "images" / "mj01-orange_main.jpg").read_bytes(), collection="luma", top_k=10),
    Query(text="yoga pants", collection="luma", top_k=5, facets=("colour", "size")),
]


def results(engine: Engine) -> list[tuple[list[str], list[float], dict[str, dict[str, int]]]]:
    out = []
    for query in QUERIES:
        response = engine.search(query)
        out.append(([h.id for h in response.hits], [round(h.score, 5) for h in response.hits], response.facets))
    return out


@pytest.fixture
def home(luma_copy: Path) -> Path:
    return luma_copy


def open_engine(home: Path, models_dir: Path, **overrides: object) -> Engine:
    return Engine(make_settings(home, models_dir, snapshot_min_products=0, search_cache_size=0, **overrides))


@pytest.fixture
def first(home: Path, models_dir: Path) -> Iterator[Engine]:
    with open_engine(home, models_dir) as engine:
        yield engine


def snapshots(home: Path) -> list[Path]:
    return sorted((home / "collections" / "luma" / "snapshots").glob("i*-g*"))


def test_the_next_process_maps_the_snapshot_and_searches_alike(first: Engine, home: Path, models_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    built = results(first)
    assert isinstance(first.vectors("luma").image_vectors, np.memmap)  # served from what it saved
    assert len(snapshots(home)) == 1
    assert (snapshots(home)[0] / "extra-words.json").is_file()  # the vocabulary's counted words, kept beside it
    with open_engine(home, models_dir) as second:
        store = second.store("luma")
        monkeypatch.setattr(store, "vocabulary_texts", lambda **_: pytest.fail("the words were counted again"))
        mapped, built_words = second.vocabulary("luma"), first.vocabulary("luma")
        assert (mapped.words, mapped.surface, mapped.phrases) == (built_words.words, built_words.surface,
                                                                 built_words.phrases)
        assert np.array_equal(mapped.prices, built_words.prices)
        monkeypatch.undo()
        vectors = second.vectors("luma")
        assert isinstance(vectors.image_vectors, np.memmap) and isinstance(vectors.data.text_vectors, np.memmap)
        assert vectors.quantized is not None and isinstance(vectors.quantized["text"].codes, np.memmap)
        assert results(second) == built
        assert vectors.data.ids == first.vectors("luma").data.ids
    with open_engine(home, models_dir, vector_snapshots=False) as plain:
        assert not isinstance(plain.vectors("luma").image_vectors, np.memmap)
        assert results(plain) == built


def test_a_write_is_caught_up_from_the_snapshot_and_a_deleted_product_is_never_found(
    first: Engine, home: Path, models_dir: Path
) -> None:
    top = first.search(QUERIES[0]).hits[0].id
    before = snapshots(home)
    first.store("luma").delete([top])  # as DELETE /collections/luma/products/{id} does
    assert top not in [h.id for h in first.search(QUERIES[0]).hits]
    assert first.vectors("luma").tail is not None  # caught up with, not rebuilt ...
    assert snapshots(home) == before  # ... so the snapshot stands, and the next process catches up from it
    with open_engine(home, models_dir) as second:
        vectors = second.vectors("luma")
        assert isinstance(vectors.tail.base.image_vectors if vectors.tail else None, np.memmap)
        assert top not in [h.id for h in second.search(QUERIES[0]).hits]
        assert vectors.live_size == 190 and top not in vectors.product_ids()
        assert second.vectors("luma").position_of(top) is None


def test_a_damaged_snapshot_is_rebuilt_not_used(first: Engine, home: Path, models_dir: Path) -> None:
    built = results(first)
    (folder,) = snapshots(home)
    (folder / "image_vectors.npy").write_bytes(b"\x93NUMPY broken")
    with open_engine(home, models_dir) as second:
        assert not isinstance(second.vectors("luma").image_vectors, np.memmap)
        assert results(second) == built


def test_other_settings_do_not_use_the_snapshot_and_hnsw_graphs_are_saved_too(
    first: Engine, home: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exact = results(first)
    with open_engine(home, models_dir, exact_search_limit=10) as approximate:  # HNSW: not the exact snapshot
        vectors = approximate.vectors("luma")
        assert not vectors.exact and [f.name.rsplit("-l", 1)[1] for f in snapshots(home)] == ["10-q1"]
        assert isinstance(vectors.image_vectors, np.memmap)  # built, saved, then served from the files
        approximate_results = results(approximate)
    monkeypatch.setattr(vitrine.index.vectors, "build_hnsw", lambda _: pytest.fail("a graph was built again"))
    with open_engine(home, models_dir, exact_search_limit=10) as again:
        vectors = again.vectors("luma")
        assert not vectors.exact and isinstance(vectors.image_vectors, np.memmap)  # graphs read, not rebuilt ...
        graph = vectors.text_ann
        assert not faiss.downcast_index(graph.storage).codes.is_owned and not graph.hnsw.neighbors.is_owned  # mapped
        assert results(again) == approximate_results
    assert [r[0][:3] for r in approximate_results] == [r[0][:3] for r in exact]  # 191 products: HNSW finds all
