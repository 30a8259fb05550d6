"""The fashion model: colour descriptor, packaged heads in search, per-collection training and
versions, zero-shot labels, and `vitrine eval` / `label` / `models` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import LUMA, make_settings
from vitrine.cli.main import main as cli
from vitrine.engine import IMAGE_MODEL, Engine
from vitrine.errors import InvalidInput, ModelUnavailable, NotFound
from vitrine.models import image_encoder
from vitrine.models.captions import clean
from vitrine.models.colour import PALETTE_RGB, colour_descriptors
from vitrine.models.heads import FashionHeads, load_base_heads
from vitrine.models.imaging import to_model_input
from vitrine.models.labels import PRIOR_WEIGHT, ZeroShotLabeller
from vitrine.models.registry import PACKAGED_MODELS, image_model_spec
from vitrine.models.training import TrainConfig, collect, train_heads
from vitrine.search.query import Query
from vitrine.training import train_collection

PALETTE = [name for name, _ in PALETTE_RGB]


def _garment_on_white(rgb: tuple[int, int, int]) -> np.ndarray:
    image = Image.new("RGB", (200, 260), (255, 255, 255))
    image.paste(Image.new("RGB", (110, 180), rgb), (45, 40))
    return to_model_input(image, size_px=224, mean=127.0, std=128.0)


@pytest.mark.parametrize("rgb, expected", [((190, 25, 35), "red"), ((28, 36, 80), "navy"), ((20, 20, 20), "black")])
def test_colour_descriptor_sees_the_garment_not_the_background(rgb: tuple[int, int, int], expected: str) -> None:
    descriptor = colour_descriptors(_garment_on_white(rgb)[None], mean=127.0, std=128.0)[0]
    whole, centre = descriptor[: len(PALETTE)], descriptor[len(PALETTE):]
    assert PALETTE[int(np.argmax(whole))] == expected
    assert PALETTE[int(np.argmax(centre))] == expected
    assert whole.sum() == pytest.approx(1.0, abs=1e-4)
    assert whole[PALETTE.index("white")] < 0.05  # the white background is not counted


def test_the_packaged_base_model_has_a_card_and_finds_bags_by_their_look(luma_engine: Engine) -> None:
    heads = load_base_heads()
    assert heads is not None
    assert heads.card["recipe"] and heads.card["config"]["seed"] == 0
    assert set(heads.card["data"]["collections"]) == {"base-fpi", "base-hm", "base-luma"}
    assert luma_engine.active_model("luma") == "base"
    hits = luma_engine.search(Query(text="bag", collection="luma", cross_modal_weight=1.0, top_k=5,
                                    understand=False)).hits
    assert sum(h.category == "Bags" for h in hits) >= 4  # from the photos alone: the words are not used
    assert all(h.matched_image is not None for h in hits)  # the photo that matched the words


def test_the_fashion_tuned_image_model_has_a_card_and_its_heads_were_trained_on_it() -> None:
    spec = image_model_spec(IMAGE_MODEL)
    assert spec.tuned_tail is not None
    card = json.loads((PACKAGED_MODELS / f"{spec.name}.json").read_text())
    assert card["name"] == spec.name and card["tuned_from_block"] == spec.tuned_from_block
    assert card["trained_on"] and card["dev"]["image_only_mrr"]["hm"] > 0.6
    heads = load_base_heads(IMAGE_MODEL)
    assert heads is not None and heads.card["image_model"] == IMAGE_MODEL
    older = load_base_heads("efficientnet-lite0")
    assert older is not None and older.card["image_model"] == "efficientnet-lite0"


def test_a_damaged_tuned_tail_is_refused_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = image_model_spec(IMAGE_MODEL)
    assert spec.tuned_tail is not None
    monkeypatch.setattr(image_encoder, "PACKAGED_MODELS", tmp_path)
    (tmp_path / spec.tuned_tail).write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ModelUnavailable, match="cannot read the tuned weights"):
        image_encoder._torch_feature_model(spec)
    np.savez(tmp_path / spec.tuned_tail, **{"head.weight": np.zeros((3, 3), np.float16)})
    with pytest.raises(ModelUnavailable, match="do not fit its backbone"):
        image_encoder._torch_feature_model(spec)


def test_cross_modal_weight_moves_scores_between_signals(luma_engine: Engine) -> None:
    # understand=False: the signals alone, without the boost "red" and "jacket" earn as facet words
    text_only = luma_engine.search(Query(text="red jacket", collection="luma", cross_modal_weight=0.0,
                                         understand=False)).hits[0]
    photo_only = luma_engine.search(Query(text="red jacket", collection="luma", cross_modal_weight=1.0,
                                          understand=False)).hits[0]
    assert text_only.score == pytest.approx(text_only.scores["text"])
    assert photo_only.score == pytest.approx(photo_only.scores["cross_modal"])
    with pytest.raises(InvalidInput, match="cross_modal_weight"):
        Query(text="red jacket", cross_modal_weight=1.5)


def test_training_is_deterministic_for_a_seed(luma_engine: Engine) -> None:
    data = collect([luma_engine.store("luma")], luma_engine.text_encoder)
    config = TrainConfig(seed=3, epochs=2, patience=5)
    first, _ = train_heads(data, config)
    second, card = train_heads(data, config)
    for name in first.weights:
        np.testing.assert_array_equal(first.weights[name], second.weights[name])
    assert card["data"]["products"] == 191 and card["data"]["heldout_products"] > 0


def test_train_a_collection_then_switch_versions(luma_home: Path, models_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Engine(make_settings(home, models_dir)) as engine:
        engine.ingest("luma", LUMA / "catalog.csv")
        store = engine.store("luma")
        store.add_training_pair("MH01", "cosy black hoodie for running", "click")
        base_score = engine.search(Query(text="hoodie", collection="luma", cross_modal_weight=1.0)).hits[0].score
        card = train_collection(engine, "luma", config=TrainConfig(epochs=3, lr=3e-4))
        assert card["version"] == "v1" and card["started_from"] == "base"
        assert "cosy black hoodie for running" in collect([store], engine.text_encoder).captions
        assert engine.active_model("luma") == "v1"
        assert isinstance(engine.heads("luma"), FashionHeads)
        generation = store.generation()
        engine.use_model("luma", "base")
        assert store.generation() > generation  # cached results of the old model are not served
        again = engine.search(Query(text="hoodie", collection="luma", cross_modal_weight=1.0)).hits[0].score
        assert again == pytest.approx(base_score)
        with pytest.raises(NotFound):
            engine.use_model("luma", "v7")
    assert cli(["--home", str(home), "models", "luma", "--json"]) == 0


def test_a_collection_with_too_little_text_is_refused_clearly(engine: Engine, small_luma: Path) -> None:
    engine.ingest("tiny", small_luma)
    with pytest.raises(InvalidInput, match="too little"):
        train_collection(engine, "tiny")
    assert engine.model_versions("tiny").numbers() == []


def test_zero_shot_labels_of_a_photo(luma_engine: Engine) -> None:
    photo = (LUMA / "images" / "mh03-green_main.jpg").read_bytes()  # a green hoodie
    labels = luma_engine.label_image(photo)
    assert list(labels) == ["category", "colour", "pattern"]
    assert labels["colour"][0].value == "green" and labels["category"][0].value == "hoodie"
    assert labels["colour"][0].confidence > labels["colour"][1].confidence
    assert sum(x.confidence for x in labels["colour"]) <= 1.0
    # With a collection: its model, and its own values join the default lists.
    assert "Hoodies & Sweatshirts" in luma_engine.labeller("luma").vocabulary["category"]
    assert luma_engine.label_image(photo, "luma")["colour"][0].value == "Green"  # as the catalog spells it


def test_a_collection_s_labels_weigh_its_values_by_how_many_products_hold_them(luma_engine: Engine) -> None:
    photo = luma_engine.embedder.features((LUMA / "images" / "mh03-green_main.jpg").read_bytes())
    heads, text = load_base_heads(), luma_engine.text_encoder
    assert heads is not None
    words = {"colour": ["green", "dark green", "multi"]}
    plain = ZeroShotLabeller(heads, text, words).label(photo, top=3)[0]["colour"]
    counts = {"colour": {"dark green": 999, "multi": 3}}
    weighed = ZeroShotLabeller(heads, text, words, counts).label(photo, top=3)[0]["colour"]
    p, w = ({x.value: x.confidence for x in found} for found in (plain, weighed))
    # Each value's odds move by (products + 1) ** PRIOR_WEIGHT against a value no product holds.
    assert w["dark green"] / w["green"] == pytest.approx(p["dark green"] / p["green"] * 1000 ** PRIOR_WEIGHT, rel=0.01)
    assert w["multi"] / w["green"] == pytest.approx(p["multi"] / p["green"] * 4 ** PRIOR_WEIGHT, rel=0.01)
    assert w["dark green"] > 2 * p["dark green"] and w["green"] > w["dark green"]  # it weighs, not overrules
    # Over the collection, the counts are its products'.
    held = luma_engine.store("luma").value_counts("category")
    found = luma_engine.labeller("luma").counts["category"]
    assert found == {clean(value): n for value, n in held} and sum(found.values()) > 50


def test_cli_eval_label_and_models(luma_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"text_queries": [
        {"query": "bag", "relevant": ["24-MB01", "24-MB04", "24-MB03", "24-MB05"]},
        {"query": "yoga pants", "relevant": ["WP01", "WP02", "WP03"]},
    ]}))
    plot = tmp_path / "curves.png"
    assert cli(["--home", str(luma_home), "eval", "luma", "--gt", str(gt), "--title-queries", "40",
                "--image-queries", "50", "--labels", "category=category", "--label-products", "60",
                "--plot", str(plot), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["text_queries"]) == {"text", "image", "fused"}
    assert result["text_queries"]["fused"]["mrr"] > 0.5 and 0 <= result["text_queries"]["image"]["r@10"] <= 1
    assert result["title_queries"]["text"]["queries"] == 40
    assert result["image_to_image"]["kind"] == "same_product" and result["image_to_image"]["queries"] == 50
    assert result["labels"]["category"]["products"] == 60
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    photo = next(p for p in (LUMA / "images").rglob("*.jpg"))
    assert cli(["--home", str(luma_home), "label", str(photo), "--json"]) == 0
    labels = json.loads(capsys.readouterr().out)
    assert len(labels["colour"]) == 3 and labels["colour"][0]["confidence"] >= labels["colour"][1]["confidence"]

    assert cli(["--home", str(luma_home), "eval", "luma", "--modes", "sideways"]) == 2
    assert "unknown mode" in capsys.readouterr().err
    assert cli(["--home", str(luma_home), "train"]) == 2
