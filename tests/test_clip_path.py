"""The real CLIP path end to end, on a tiny randomly initialised CLIP that the test builds and saves
in Hugging Face format (what a user with real weights would point Vitrine at)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CLIP_PROJECTION as PROJECTION
from conftest import luma_rows, write_catalog

from vitrine.cli.main import main as cli
from vitrine.engine import Engine
from vitrine.errors import Conflict, InvalidInput, ModelUnavailable
from vitrine.models.clip_adapter import ClipAdapter, train_adapter
from vitrine.models.clip_encoder import ClipCrossModal
from vitrine.models.colour import COLOUR_DIM
from vitrine.models.training import TrainConfig, TrainingData, holdout_mask, retrieval_score
from vitrine.search.query import Query
from vitrine.training import train_collection


def test_a_collection_searches_with_its_clip_checkpoint(engine: Engine, small_luma: Path, tiny_clip: Path) -> None:
    report = engine.ingest("clipped", small_luma, encoder=f"clip:{tiny_clip}")
    assert report.completed and report.valid == 12
    assert engine.store("clipped").meta()["image_model"] == f"clip:{tiny_clip.resolve()}"
    assert engine.collection_info("clipped")["image_model"] == f"clip:{tiny_clip.name}"  # no server path shown
    vectors = engine.vectors("clipped")
    assert vectors.data.image_features.shape[1] == PROJECTION + COLOUR_DIM
    assert vectors.xmodal_vectors is not None and vectors.xmodal_vectors.shape[1] == PROJECTION

    # A catalog photo finds its own product first: the query went through the same CLIP image tower.
    product = engine.get_product("clipped", "MJ01")
    assert product.main_image is not None
    photo = Path(product.main_image.path).read_bytes()
    hits = engine.search(Query(image=photo, collection="clipped", top_k=3)).hits
    assert hits[0].id == "MJ01" and hits[0].scores["visual"] == pytest.approx(1.0, abs=1e-4)

    # Text queries use the checkpoint's text tower for the cross-modal signal.
    hit = engine.search(Query(text="jacket", collection="clipped", cross_modal_weight=1.0, top_k=12,
                              understand=False)).hits[0]  # the raw cross-modal score, without facet boosts
    checkpoint = engine._clip_model(engine.store("clipped").meta()["image_model"])[0]
    query = checkpoint.encode_texts(["jacket"])[0]
    best = max(float(v @ query) for v in vectors.xmodal_vectors)
    assert hit.score == pytest.approx(best, abs=1e-5)

    # Zero-shot labels read off the checkpoint's space.
    labels = engine.label_image(photo, "clipped")
    assert set(labels) == {"category", "colour", "pattern"}
    assert all(0 <= label.confidence <= 1 for label in labels["colour"])


def test_clip_collections_keep_their_encoder(
    engine: Engine, small_luma: Path, tiny_clip: Path
) -> None:
    engine.ingest("clipped", small_luma, encoder=f"clip:{tiny_clip}")
    with pytest.raises(Conflict):
        engine.ingest("clipped", small_luma, encoder="builtin")
    with pytest.raises(InvalidInput, match="too little to learn from"):  # 12 products; training needs 50
        train_collection(engine, "clipped")
    with pytest.raises(InvalidInput, match="config.json"):
        engine.ingest("other", small_luma, encoder=f"clip:{small_luma.parent}")
    assert "other" not in engine.collection_names()


def test_cli_ingest_with_a_clip_encoder(
    engine: Engine, small_luma: Path, tiny_clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(engine.home)
    engine.close()
    assert cli(["--home", home, "ingest", str(small_luma), "-c", "clipped", "--encoder", f"clip:{tiny_clip}",
                "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] == 12
    assert cli(["--home", home, "search", "clipped", "--text", "bag", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert len(hits) == 10 and all("cross_modal" in h["scores"] for h in hits)
    assert np.isfinite([h["score"] for h in hits]).all()


def test_train_adapts_a_checkpoints_space_for_its_collection(engine: Engine, tiny_clip: Path, tmp_path: Path) -> None:
    """`vitrine train` on a CLIP collection: a version of the checkpoint's space, searched, labelled and
    switched like any model version, and trained on from there."""
    catalog = write_catalog(tmp_path / "catalog", luma_rows()[:70])
    engine.ingest("clipped", catalog, encoder=f"clip:{tiny_clip}")
    bare = engine.heads("clipped")
    assert isinstance(bare, ClipCrossModal)
    config = TrainConfig(epochs=3, patience=3, batch_size=16, threads=1)
    result = train_collection(engine, "clipped", config=config)
    assert result["version"] == "v1" and result["kind"] == "clip-adapter" and result["started_from"] == "base"
    assert result["heldout"]["score"] >= result["heldout_before"]["score"]  # the bare checkpoint was a candidate
    adapted = engine.heads("clipped")
    assert isinstance(adapted, ClipAdapter) and adapted.version == "v1" and adapted.base.checkpoint is bare.checkpoint

    # The collection searches the adapted space: a text query's cross-modal score is the adapted one.
    vectors = engine.vectors("clipped")
    assert vectors.xmodal_vectors is not None
    stored = engine.store("clipped").load_vectors([]).image_features
    np.testing.assert_allclose(vectors.xmodal_vectors, adapted.image_vectors(stored), atol=1e-5)
    query = adapted.text_query(["jacket"], np.zeros((1, 384), np.float32))[0]
    hit = engine.search(Query(text="jacket", collection="clipped", cross_modal_weight=1.0, top_k=70,
                              understand=False)).hits[0]
    assert hit.score == pytest.approx(max(float(v @ query) for v in vectors.xmodal_vectors), abs=1e-5)
    photo = (tmp_path / "catalog" / luma_rows()[0]["images"].split("|")[0]).read_bytes()
    assert set(engine.label_image(photo, "clipped")) == {"category", "colour", "pattern"}

    cards = engine.model_versions("clipped").cards()
    assert cards[0] == {"version": "base", "checkpoint": tiny_clip.name}
    assert cards[1]["version"] == "v1" and cards[1]["kind"] == "clip-adapter"

    # Versions switch like the fashion model's; an adapter at zero is the bare checkpoint.
    assert engine.use_model("clipped", "base") == "base" and engine.heads("clipped") is bare
    engine.use_model("clipped", "v1")
    zero = ClipAdapter(base=bare, weights={k: np.zeros_like(v) for k, v in adapted.weights.items()})
    raw = stored[:5]
    np.testing.assert_allclose(zero.image_vectors(raw), bare.image_vectors(raw), atol=1e-6)
    again = train_collection(engine, "clipped", config=config)
    assert again["version"] == "v2" and again["started_from"] == "v1"
    assert again["heldout"]["score"] >= result["heldout"]["score"] - 1e-9  # v1 itself was a candidate


def test_an_adapter_learns_what_relates_photos_to_texts(engine: Engine, small_luma: Path, tiny_clip: Path) -> None:
    """Texts whose embeddings are a fixed rotation of their photos': the bare space cannot match them,
    the adapter learns to, and held-out products (never trained on) are matched too."""
    engine.ingest("clipped", small_luma, encoder=f"clip:{tiny_clip}")
    bare = engine.heads("clipped")
    assert isinstance(bare, ClipCrossModal)
    rng = np.random.default_rng(0)
    n, dim = 400, bare.dim
    photos = rng.normal(size=(n, dim)).astype(np.float32)
    rotation = np.linalg.qr(rng.normal(size=(dim, dim)))[0].astype(np.float32)
    texts = photos / np.linalg.norm(photos, axis=1, keepdims=True) @ rotation
    data = TrainingData(
        features=np.hstack([photos, np.zeros((n, COLOUR_DIM), np.float32)]), image_product=np.arange(n),
        groups=[f"g{i}" for i in range(n)], views=[[i] for i in range(n)], captions=[f"text {i}" for i in range(n)],
        caption_vectors=texts, short_caption=[-1] * n, title_caption=list(range(n)))
    config = TrainConfig(epochs=40, patience=40, batch_size=64, lr=1e-2, threads=1)
    adapter, card = train_adapter(data, bare, config)
    held = holdout_mask(data.groups, config.holdout, config.seed).nonzero()[0]
    before, after = retrieval_score(bare, data, held), retrieval_score(adapter, data, held)
    assert before["title_mrr"] < 0.2 and after["title_mrr"] > 0.8
    assert card["best_epoch"] >= 1 and card["kind"] == "clip-adapter"
    # Stored and read back as a version; a fashion-heads version is not taken for an adapter.
    restored = ClipAdapter.from_bytes(bare, adapter.to_bytes(), adapter.card, source="test")
    np.testing.assert_allclose(restored.image_vectors(data.features[:5]), adapter.image_vectors(data.features[:5]),
                               atol=1e-6)
    with pytest.raises(ModelUnavailable, match="built-in fashion model"):
        ClipAdapter.from_bytes(bare, adapter.to_bytes(), {"recipe": "x"}, source="test")
