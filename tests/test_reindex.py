"""`vitrine reindex`: a collection moved to another encoder from the photos it keeps (both backends).
Its searches see the old features or the new ones, never a mix; a stopped reindex resumes from the
encoder's cache; a write encoded with the old encoder after the switch is refused."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import DATA, TINY_CLIP_PROJECTION, backend_environment, make_settings

from vitrine import reindexing
from vitrine.catalog.records import ProductRecord
from vitrine.cli.main import main as cli
from vitrine.engine import IMAGE_MODEL, Engine
from vitrine.errors import Conflict
from vitrine.index.store import ImageWrite, ProductWrite
from vitrine.models.clip_encoder import ClipCrossModal
from vitrine.models.colour import COLOUR_DIM
from vitrine.models.heads import FashionHeads, load_base_heads
from vitrine.search.query import Query
from vitrine.settings import Settings


def _own_photo_first(engine: Engine, collection: str, product_id: str) -> None:
    product = engine.get_product(collection, product_id)
    assert product.main_image is not None
    hits = engine.search(Query(image=Path(product.main_image.path).read_bytes(), collection=collection, top_k=3)).hits
    assert hits[0].id == product_id and hits[0].scores["visual"] == pytest.approx(1.0, abs=1e-4)


def test_reindex_moves_a_collection_to_a_checkpoint_and_back(
    engine: Engine, small_luma: Path, tiny_clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine.ingest("shop", small_luma)
    store = engine.store("shop")
    photos = store.photo_count()
    assert photos >= 12 and store.load_vectors([]).image_features.shape[1] > 1000
    base = load_base_heads()
    assert base is not None
    engine.model_versions("shop").save(FashionHeads(weights=dict(base.weights), card={}))
    engine.use_model("shop", "v1")
    _own_photo_first(engine, "shop", "MJ01")

    with backend_environment(engine.home):
        assert cli(["reindex", "shop", "--encoder", f"clip:{tiny_clip}", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["changed"] and result["photos"] == photos and result["encoded"] == photos
    assert result["image_model"] == f"clip:{tiny_clip.name}" and result["previous"] == IMAGE_MODEL
    assert result["swapped"] >= photos

    assert store.meta()["image_model"] == f"clip:{tiny_clip.resolve()}"
    assert engine.active_model("shop") == "base"  # v1 was trained in the old space
    assert store.load_vectors([]).image_features.shape[1] == TINY_CLIP_PROJECTION + COLOUR_DIM
    assert isinstance(engine.heads("shop"), ClipCrossModal)
    vectors = engine.vectors("shop")
    assert vectors.xmodal_vectors is not None and vectors.xmodal_vectors.shape[1] == TINY_CLIP_PROJECTION
    _own_photo_first(engine, "shop", "MJ01")  # the query photo goes through the same CLIP tower as the stored ones
    hits = engine.search(Query(text="jacket", collection="shop", top_k=5)).hits
    assert len(hits) == 5 and all("cross_modal" in h.scores for h in hits)

    # Already there: nothing to do.
    again = reindexing.reindex(engine, "shop", encoder=f"clip:{tiny_clip}")
    assert not again["changed"] and again["encoded"] == 0

    # Back to the built-in model: every photo's features are in its cache since the ingest.
    back = reindexing.reindex(engine, "shop", encoder="builtin")
    assert back["changed"] and back["encoded"] == 0 and back["image_model"] == IMAGE_MODEL
    assert store.load_vectors([]).image_features.shape[1] > 1000
    _own_photo_first(engine, "shop", "MJ01")


def test_a_collection_on_the_imagenet_model_keeps_working_until_reindex_moves_it_to_the_fashion_model(
    engine: Engine, small_luma: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """What a collection made before the fashion-tuned model sees: it searches on as it was, with the
    heads trained on the ImageNet model's features, and `vitrine reindex` moves it over."""
    assert IMAGE_MODEL == "efficientnet-lite0-fashion"
    engine.ingest("old", small_luma, encoder="efficientnet-lite0")
    engine.ingest("new", small_luma)
    store = engine.store("old")
    assert store.meta()["image_model"] == "efficientnet-lite0"
    imagenet = store.load_vectors([]).image_features
    tuned = engine.store("new").load_vectors([]).image_features
    assert imagenet.shape == tuned.shape and not np.allclose(imagenet, tuned, atol=1e-2)  # the tuned tail counts
    old_heads, new_heads = engine.heads("old"), engine.heads("new")
    assert isinstance(old_heads, FashionHeads) and isinstance(new_heads, FashionHeads)
    assert old_heads.card["image_model"] == "efficientnet-lite0"
    assert new_heads.card["image_model"] == IMAGE_MODEL
    _own_photo_first(engine, "old", "MJ01")
    with caplog.at_level(logging.WARNING, logger="vitrine.engine"):
        engine.preload()  # what a server starting over this home does
    told = [r for r in caplog.records if r.getMessage().startswith("collection on an older built-in image model")]
    assert [(r.collection, r.image_model) for r in told] == [("old", "efficientnet-lite0")]  # fields from extra=
    jackets = engine.search(Query(text="jacket", collection="old", top_k=3)).hits
    assert jackets and all("cross_modal" in h.scores for h in jackets)

    with backend_environment(engine.home):
        assert cli(["models", "old"]) == 0
        assert f"`vitrine reindex old` moves it to {IMAGE_MODEL}" in capsys.readouterr().out
        assert cli(["reindex", "old", "--json", "--no-progress"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["changed"] and result["previous"] == "efficientnet-lite0" and result["image_model"] == IMAGE_MODEL
        assert result["encoded"] == 0  # the collection "new" put every photo in the fashion model's cache
        assert cli(["models", "old"]) == 0
        out = capsys.readouterr().out
        assert f"(on {IMAGE_MODEL})" in out and "vitrine reindex" not in out

    assert np.allclose(store.load_vectors([]).image_features, tuned, atol=1e-6)
    heads = engine.heads("old")
    assert isinstance(heads, FashionHeads) and heads.card["image_model"] == IMAGE_MODEL
    _own_photo_first(engine, "old", "MJ01")


def test_a_stopped_reindex_resumes_and_writes_meanwhile_are_kept(
    engine: Engine, small_luma: Path, tiny_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.ingest("shop", small_luma)
    store = engine.store("shop")
    total = store.photo_count()
    monkeypatch.setattr(reindexing, "BATCH", 5)

    class Stop(Exception):
        pass

    def stop_after_one_batch(done: int, _total: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        reindexing.reindex(engine, "shop", encoder=f"clip:{tiny_clip}", progress=stop_after_one_batch)
    assert store.meta()["image_model"] == IMAGE_MODEL  # nothing switched
    assert store.load_vectors([]).image_features.shape[1] > 1000
    _own_photo_first(engine, "shop", "MJ01")

    # A product written while the photos are encoded, with the encoder the collection still has.
    photo = (DATA / "ccp" / "photos" / "0003.jpg").read_bytes()
    record = ProductRecord(id="NEW1", title="long brown coat", description="", category="Coats", colour="brown",
                           price=80.0, image_refs=())

    def write_midway(done: int, all_photos: int) -> None:
        if done == all_photos and "NEW1" not in store.product_hashes():
            engine.put_product("shop", record, [photo])

    result = reindexing.reindex(engine, "shop", encoder=f"clip:{tiny_clip}", progress=write_midway)
    assert result["changed"] and result["photos"] == total
    assert result["encoded"] == total - 5  # the first batch was encoded before the stop
    features = store.load_vectors([]).image_features
    assert result["swapped"] == len(features)  # every photo row, the one written meanwhile too
    assert features.shape[1] == TINY_CLIP_PROJECTION + COLOUR_DIM and np.isfinite(features).all()
    _own_photo_first(engine, "shop", "NEW1")  # swapped too, though written after its photos were listed

    # A write encoded with the old encoder that reaches the store after the switch is refused.
    old = engine.embedder.features(photo)
    write = ProductWrite(record=ProductRecord(id="OLD1", title="coat", description="", category="Coats", colour="",
                                              price=None, image_refs=("x",)),
                         text_vector=engine.text_encoder.encode(["coat"])[0],
                         images=(ImageWrite(ref="x", path="x", sha256="0" * 64, features=old),))
    with pytest.raises(Conflict, match="moved to encoder"):
        store.upsert([write], image_model=IMAGE_MODEL)
    assert "OLD1" not in store.product_hashes()


def test_snapshots_of_the_old_encoder_are_not_served(
    settings: Settings, small_luma: Path, tiny_clip: Path, models_dir: Path
) -> None:
    """With vector snapshots on, the snapshot written before the swap holds the old encoder's features:
    this process and the next build anew instead of loading it."""
    snapshotting = make_settings(settings.home, models_dir, snapshot_min_products=0)
    with Engine(snapshotting) as engine:
        engine.ingest("shop", small_luma)
        _own_photo_first(engine, "shop", "MJ01")  # builds and writes the snapshot
        assert list((engine.home / "collections" / "shop" / "snapshots").glob("i*-g*"))
        reindexing.reindex(engine, "shop", encoder=f"clip:{tiny_clip}")
        _own_photo_first(engine, "shop", "MJ01")
    with Engine(snapshotting) as engine:
        _own_photo_first(engine, "shop", "MJ01")
        reindexing.reindex(engine, "shop", encoder="builtin")
    with Engine(snapshotting) as engine:
        _own_photo_first(engine, "shop", "MJ01")
        assert engine.vectors("shop").data.image_features.shape[1] in (0, 1328)


def test_during_the_swap_reads_go_on_and_a_waiting_write_is_refused_never_mixed_in(
    engine: Engine, small_luma: Path, tiny_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the swap's transaction runs, another thread reads the collection as it was, without waiting
    for it (a search goes on). A product written with the old encoder meanwhile waits for the write
    lock, then finds the collection moved and is refused. Every stored photo ends in the new space."""
    engine.ingest("shop", small_luma)
    store = engine.store("shop")
    record = ProductRecord(id="LATE1", title="long brown coat", description="", category="Coats", colour="brown",
                           price=80.0, image_refs=())
    photo = (DATA / "ccp" / "photos" / "0003.jpg").read_bytes()
    writing, outcome = threading.Event(), []
    upsert, swap = store.upsert, store.swap_image_features

    def signalled_upsert(products: Any, **kwargs: Any) -> None:
        if any(p.record.id == "LATE1" for p in products):
            writing.set()  # encoded with the old encoder, now asking for the write lock
        upsert(products, **kwargs)

    def writer() -> None:
        try:
            engine.put_product("shop", record, [photo])
            outcome.append("written")
        except Conflict as exc:
            outcome.append(str(exc))

    thread = threading.Thread(target=writer)

    def swap_with_a_writer(features_of: Any, meta: Any) -> int:
        def first_batch_starts_the_writer(refs: Any) -> Any:
            if not thread.is_alive() and not outcome:
                seen: list[Any] = []
                reader = threading.Thread(target=lambda: seen.extend([store.meta()["image_model"],
                                                                      len(store.get_products(["MJ01"]))]))
                reader.start()
                reader.join(60)
                assert not reader.is_alive() and seen == [IMAGE_MODEL, 1]  # not held up, and the old state
                thread.start()
                assert writing.wait(60)  # the writer is at the lock while this transaction holds it
            return features_of(refs)
        return swap(first_batch_starts_the_writer, meta)

    monkeypatch.setattr(store, "upsert", signalled_upsert)
    monkeypatch.setattr(store, "swap_image_features", swap_with_a_writer)
    result = reindexing.reindex(engine, "shop", encoder=f"clip:{tiny_clip}")
    thread.join(60)
    assert result["changed"] and len(outcome) == 1 and "moved to encoder" in outcome[0]
    assert "LATE1" not in store.product_hashes()
    features = store.load_vectors([]).image_features
    assert features.shape[1] == TINY_CLIP_PROJECTION + COLOUR_DIM and np.isfinite(features).all()
    engine.put_product("shop", record, [photo])  # written again, it is encoded with the new encoder
    _own_photo_first(engine, "shop", "LATE1")
