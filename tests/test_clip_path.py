"""The real CLIP path end to end, on a tiny randomly initialised CLIP that the test builds and saves
in Hugging Face format (what a user with real weights would point Vitrine at)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CLIP_PROJECTION as PROJECTION

from vitrine.cli.main import main as cli
from vitrine.engine import Engine
from vitrine.errors import Conflict, InvalidInput
from vitrine.models.colour import COLOUR_DIM
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


def test_clip_collections_keep_their_encoder_and_are_not_fine_tuned(
    engine: Engine, small_luma: Path, tiny_clip: Path
) -> None:
    engine.ingest("clipped", small_luma, encoder=f"clip:{tiny_clip}")
    with pytest.raises(Conflict):
        engine.ingest("clipped", small_luma, encoder="builtin")
    with pytest.raises(InvalidInput, match="own checkpoint"):
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
