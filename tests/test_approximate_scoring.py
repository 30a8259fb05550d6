"""What a collection above the exact limit reads instead of whole tables, each checked against the full
computation on the real Luma vectors: the HNSW graphs' own 8-bit codes for the first scoring pass, the
float32 rows of the exact pass read from the snapshot file (not through its mapping), and the facet
entries of the candidates alone."""

from __future__ import annotations

import gc
import re
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import LUMA, make_settings

from vitrine.catalog.records import record_from_fields
from vitrine.engine import Engine
from vitrine.index import keywords, partitions
from vitrine.index import mapped as mapped_module
from vitrine.index.keywords import PostingCache, keyword_scores, keyword_scores_of
from vitrine.index.mapped import keep_open, take_rows
from vitrine.index.quantized import GraphCodes
from vitrine.index.store import Filters, RangeFilter
from vitrine.index.vectors import CollectionVectors, build_hnsw
from vitrine.search.query import Query, SearchResponse
from vitrine.search.scoring import facet_counts


@pytest.fixture(scope="module")
def approximate(luma_home: Path, models_dir: Path) -> CollectionVectors:
    with Engine(make_settings(luma_home, models_dir, exact_search_limit=10)) as engine:
        vectors = engine.vectors("luma")
    assert not vectors.exact
    return vectors


def test_the_graphs_codes_score_what_the_float32_tables_score(approximate: CollectionVectors) -> None:
    text = np.asarray(approximate.data.text_vectors)
    codes = approximate.graph_codes("text")
    assert codes is not None and codes.codes.shape == text.shape and codes.codes.dtype == np.uint8
    rows = np.random.default_rng(0).permutation(len(text))[:120]  # any order, any subset
    errors = np.concatenate([codes.scores(q, rows) - text[rows] @ q for q in text[::9]])
    # Luma: at most 1e-3 (2e-4 on average), and no bias: a code stands for the middle of its step
    assert 0 < np.abs(errors).max() < 2e-3 and np.abs(errors).mean() < 4e-4 and abs(errors.mean()) < 2e-5
    for name in ("image", "xmodal"):
        assert approximate.graph_codes(name) is not None
    # The first pass reads the codes; the exact pass the float32 rows.
    q, positions = text[3], np.arange(0, approximate.size, 2)
    first = approximate.text_scores(q, positions, approximate=True)
    exact = approximate.text_scores(q, positions)
    assert np.array_equal(first, codes.scores(q, positions)) and np.allclose(exact, text[positions] @ q, atol=1e-6)
    photo = np.asarray(approximate.xmodal_vectors)[5]
    best, which = approximate.image_scores(photo, positions, shared=True, approximate=True)
    best_exact, _ = approximate.image_scores(photo, positions, shared=True)
    assert np.abs(best - best_exact).max() < 4e-3 and not np.array_equal(best, best_exact) and (which >= 0).all()
    codes.CHUNK = 7  # blocks of any size give the same scores
    assert np.allclose(codes.scores(q, rows), GraphCodes(approximate.text_ann).scores(q, rows), atol=1e-6)


def test_only_a_graph_over_8_bit_codes_lends_its_codes(approximate: CollectionVectors) -> None:
    text = np.ascontiguousarray(approximate.data.text_vectors, dtype=np.float32)
    flat = faiss.IndexHNSWFlat(text.shape[1], 8, faiss.METRIC_INNER_PRODUCT)
    flat.add(text)
    with pytest.raises(TypeError, match="8-bit"):
        GraphCodes(flat)
    graph = build_hnsw(text)
    graph.reset()  # trained, empty
    assert GraphCodes(graph).scores(text[0], np.zeros(0, dtype=np.int64)).shape == (0,)


def _mapped_kb(path: Path) -> int:
    """Resident kB of this process's mappings of `path`."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def test_scattered_rows_of_a_mapped_table_are_read_without_mapping_them(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    table = np.random.default_rng(1).standard_normal((4000, 384)).astype(np.float32)  # 6 MB
    np.save(tmp_path / "t.npy", table)
    mapped = np.load(tmp_path / "t.npy", mmap_mode="r")
    rows = np.asarray([3999, 0, 17, 17, 2048, 5, 1000])
    assert np.array_equal(take_rows(mapped, rows), table[rows])
    assert _mapped_kb(tmp_path / "t.npy") == 0  # nothing of the table entered this process
    assert np.array_equal(take_rows(mapped[10:], rows[1:]), table[10:][rows[1:]])  # a slice: through the mapping
    assert _mapped_kb(tmp_path / "t.npy") > 4  # ... which maps pages around each row it touches
    assert take_rows(mapped, np.zeros(0, dtype=np.int64)).shape == (0, 384)
    with pytest.raises(IndexError):
        take_rows(np.load(tmp_path / "t.npy", mmap_mode="r"), np.asarray([4000]))
    monkeypatch.setattr(mapped_module, "_PREAD", False)  # a system without pread (Windows): through the mapping
    assert np.array_equal(take_rows(np.load(tmp_path / "t.npy", mmap_mode="r"), rows), table[rows])


def test_a_snapshot_table_is_read_after_a_newer_snapshot_deleted_its_file(tmp_path: Path) -> None:
    table = np.arange(3000 * 8, dtype=np.float32).reshape(3000, 8)
    np.save(tmp_path / "t.npy", table)
    held, unheld = (np.load(tmp_path / "t.npy", mmap_mode="r") for _ in range(2))
    keep_open(held)  # as snapshot.load does
    (tmp_path / "t.npy").unlink()
    assert np.array_equal(take_rows(held, np.asarray([2999, 4])), table[[2999, 4]])
    with pytest.raises(FileNotFoundError):
        take_rows(unheld, np.asarray([1]))
    key = id(held)
    del held
    gc.collect()
    assert key not in mapped_module._held_open  # the file is closed with its table


def test_the_facets_of_a_few_candidates_are_counted_from_their_own_entries(approximate: CollectionVectors) -> None:
    rng = np.random.default_rng(2)
    positions, codes, values = approximate.data.facets["colour"]
    shuffled = rng.permutation(len(positions))  # entries in no product order, as a store may read them
    for facets in (approximate.data.facets, {"colour": (positions[shuffled], codes[shuffled], values)}):
        vectors = CollectionVectors(generation=1, data=replace(approximate.data, facets=facets),
                                    image_vectors=approximate.image_vectors, image_start=approximate.image_start,
                                    image_count=approximate.image_count)
        for _ in range(30):  # fewer than a 64th of the products: one or two of Luma's 191
            few = np.unique(rng.choice(vectors.size, rng.integers(1, 3), replace=False))
            mask = np.zeros(vectors.size, dtype=bool)
            mask[few] = True
            assert vectors.facet_counts("colour", few) == facet_counts(*facets["colour"], mask)
        assert vectors.facet_counts("colour", np.zeros(0, dtype=np.int64)) == {}


@pytest.mark.parametrize("dense", [False, True], ids=["looked up", "summed densely"])
def test_a_candidates_keyword_scores_are_its_rows_share_of_every_posting(
        dense: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if dense:  # as for a broad filter's products: a large share of all rows
        monkeypatch.setattr(keywords, "DENSE_ROWS", 100)
    rng = np.random.default_rng(3)
    lists = {w: (rng.choice(500, 120, replace=False), rng.choice(500, 40, replace=False)) for w in "abc"}
    cache = PostingCache()  # sorts what a store read in any order

    def postings(word: str) -> tuple[np.ndarray, np.ndarray]:
        return cache.get(word, 1, lambda: lists.get(word, (np.zeros(0, np.int64), np.zeros(0, np.int64))))

    words = ["a", "b", "zz"]
    rows, scores = keyword_scores(words, postings)
    full = dict(zip(rows.tolist(), scores.tolist(), strict=True))
    asked = rng.permutation(600)  # past the largest row too
    found = keyword_scores_of(words, postings, asked)
    assert found.dtype == np.float32 and found.tolist() == [full.get(r, 0.0) for r in asked.tolist()]
    assert keyword_scores_of([], postings, asked).tolist() == [0.0] * 600


def test_values_held_by_many_products_get_graphs_of_their_own_within_a_budget() -> None:
    n = 100

    def facet(held: dict[str, range]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        values = sorted(held)
        return (np.concatenate([np.asarray(held[v]) for v in values]).astype(np.int32),
                np.concatenate([np.full(len(held[v]), i) for i, v in enumerate(values)]).astype(np.int32), values)

    facets = {"size": facet({"S": range(90), "M": range(80)}),  # most products: over a field's budget
              "colour": facet({"Black": range(30), "black": range(30, 35), "White": range(35, 47),
                               "Red": range(47, 52)}),
              "gender": facet({"Men": range(40), "Women": range(40, 75)})}
    chosen = [(field, value, len(positions)) for field, value, positions in partitions.choose(facets, n)]
    # each field's most held value in turn; "Black" and "black" are one value to a filter; red is too rare;
    # women would take gender past half the products
    assert chosen == [("gender", "men", 40), ("colour", "black", 35), ("colour", "white", 12)]
    parts = [partitions.Partition(field, value, np.zeros(0), np.zeros(0), {}) for field, value, _ in chosen]
    assert partitions.for_filters(parts, Filters(equals={"color": ("BLACK", "White")})) == parts[1:]
    assert partitions.for_filters(parts, Filters(equals={"colour": ("black", "red")})) is None  # red is not
    assert partitions.for_filters(parts, Filters(equals={"colour": ("black",)},
                                                 ranges={"price": RangeFilter(None, 50)})) is None
    assert partitions.for_filters(parts, Filters(equals={"colour": ("black",), "gender": ("men",)})) is None
    assert partitions.images_of(np.asarray([0, 2]), np.asarray([0, 2, 3]), np.asarray([2, 1, 3])).tolist() == \
        [0, 1, 3, 4, 5]


def summary(response: SearchResponse) -> tuple[list[str], list[float], int, dict[str, dict[str, int]]]:
    return [h.id for h in response.hits], [round(h.score, 5) for h in response.hits], response.total, \
        response.facets


def test_a_broad_filter_walks_its_values_graphs_and_finds_what_scoring_it_whole_finds(
        luma_copy: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photo = (LUMA / "images" / "mj01-orange_main.jpg").read_bytes()
    filters = [Filters(equals={"colour": ("BLUE",)}), Filters(equals={"gender": ("Women",)}),
               Filters(equals={"color": ("blue", "Hoodies & Sweatshirts")})]
    queries = [Query(text=text, collection="luma", top_k=10, filters=f, facets=("size", "colour"))
               for text in ("hoodie", "yoga pants", "storm jacket") for f in filters[:2]]
    queries += [Query(image=photo, collection="luma", top_k=10, filters=filters[0]),
                Query(text="jacket", image=photo, collection="luma", top_k=10, filters=filters[1], alpha=0.5)]
    walked: list[object] = []
    settings = make_settings(luma_copy, models_dir, exact_search_limit=10, snapshot_min_products=0,
                             search_cache_size=0)
    with Engine(settings) as engine:
        vectors = engine.vectors("luma")
        assert [(p.field, p.value) for p in vectors.partitions] == \
            [("colour", "blue"), ("gender", "women"), ("category", "hoodies & sweatshirts")]
        assert [p.anns["text"].ntotal for p in vectors.partitions] == [len(p.positions) for p in vectors.partitions]
        candidates = CollectionVectors.ann_candidates

        def spied(self: CollectionVectors, *args: object, **kwargs: object) -> np.ndarray:
            walked.append(kwargs.get("partitions"))
            if kwargs.get("partitions"):  # 82 or 75 of the whole graphs' candidates pass: below NEAR_ENOUGH
                assert args[2] == 3 * 2000, "the values' graphs are walked three times wider"
            return candidates(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(CollectionVectors, "ann_candidates", spied)
        found = [summary(engine.search(q)) for q in queries]
        assert len([w for w in walked if w]) == len(queries)  # each through its values' graphs (and the whole's)
        assert engine.search(Query(text="hoodie", collection="luma", filters=filters[2])).hits  # not partitioned
        walked.clear()
        monkeypatch.setattr(partitions, "for_filters", lambda *_: None)  # each filter scored whole
        assert [summary(engine.search(q)) for q in queries] == found  # 82 and 75 products: the graphs give all
        assert not walked
        monkeypatch.undo()
        blue = Query(text="storm jacket", collection="luma", top_k=20, filters=filters[0])
        moved = engine.search(blue).hits[0].id
        record = record_from_fields("NEW-BLUE", {"title": "Storm jacket", "colour": "Blue"})
        engine.put_product("luma", record, [photo])
        engine.put_product("luma", record_from_fields(moved, {"title": "Storm jacket", "colour": "Red"}), [photo])
        assert engine.vectors("luma").tail is not None  # written since the graphs
        hits = [h.id for h in engine.search(blue).hits]
        assert "NEW-BLUE" in hits and moved not in hits
