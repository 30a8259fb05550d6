"""open_clip SigLIP checkpoints (Marqo-FashionSigLIP's format), on a tiny one that real open_clip and timm
wrote (tests/fixtures/open_clip_siglip/make.py) with the embeddings open_clip computed from it: Vitrine reads
it through transformers' SigLIP, without open_clip, and must compute the same."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import COMMIT, REPO, FakeHub, pull_with_cli
from safetensors.torch import load_file, save_file

from vitrine.cli.main import main as cli
from vitrine.engine import Engine
from vitrine.errors import InvalidInput, ModelUnavailable
from vitrine.models import open_clip_siglip
from vitrine.models.clip_encoder import ClipCheckpoint, checkpoint_path
from vitrine.search.query import Query

FIXTURE = REPO / "tests" / "fixtures" / "open_clip_siglip"
TOKENIZER = ("spiece.model", "tokenizer_config.json")


def _copy(folder: Path, *, tokenizer: bool = True) -> Path:
    folder.mkdir(parents=True)
    for file in ("open_clip_config.json", "open_clip_model.safetensors") + (TOKENIZER if tokenizer else ()):
        shutil.copyfile(FIXTURE / file, folder / file)
    return folder


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_the_converted_checkpoint_computes_what_open_clip_computed(tmp_path: Path) -> None:
    import torch

    folder = _copy(tmp_path / "siglip")
    checkpoint = ClipCheckpoint(checkpoint_path(f"clip:{folder}"), threads=1)
    assert checkpoint.kind == "siglip" and checkpoint.dim == 32 and checkpoint.context_length == 16
    assert checkpoint.spec.size_px == 32 and checkpoint.spec.mean == (127.5, 127.5, 127.5)
    reference = np.load(FIXTURE / "reference.npz")
    image = checkpoint.encode(reference["pixels"])
    np.testing.assert_allclose(image, _unit(reference["image"]), atol=1e-5)
    checkpoint.load()
    with torch.no_grad():
        text = checkpoint._model.get_text_features(input_ids=torch.from_numpy(reference["input_ids"]))
    np.testing.assert_allclose(_unit(getattr(text, "pooler_output", text).numpy()), _unit(reference["text"]),
                               atol=1e-5)
    assert checkpoint.logit_scale == pytest.approx(float(np.exp(reference["logit_scale"])), rel=1e-6)

    # Texts are cleaned as open_clip cleans them for SigLIP (no punctuation, lower case), then padded.
    np.testing.assert_allclose(checkpoint.encode_texts(["Navy COAT!", "red_dress"]),
                               checkpoint.encode_texts(["navy coat", "red dress"]), atol=1e-6)
    assert open_clip_siglip.canonicalize(" Men's  T-Shirt &amp; Jeans ") == "mens tshirt jeans"

    # Converted once: a second checkpoint object reads the same folder without writing it again.
    converted = folder / open_clip_siglip.CONVERTED / "model.safetensors"
    written = converted.stat().st_mtime_ns
    again = ClipCheckpoint(folder, threads=1)
    np.testing.assert_allclose(again.encode(reference["pixels"]), image, atol=1e-6)
    assert converted.stat().st_mtime_ns == written
    assert [p.name for p in folder.iterdir() if p.name.endswith(".partial")] == []


def test_a_collection_on_a_copied_in_open_clip_checkpoint(engine: Engine, small_luma: Path) -> None:
    _copy(engine.home / "checkpoints" / "marqo-fashionsiglip")
    report = engine.ingest("marqo", small_luma, encoder="marqo-fashionsiglip")
    assert report.completed and report.valid == 12
    product = engine.get_product("marqo", "MJ01")
    assert product.main_image is not None
    photo = Path(product.main_image.path).read_bytes()
    hits = engine.search(Query(image=photo, collection="marqo", top_k=3)).hits
    assert hits[0].id == "MJ01" and hits[0].scores["visual"] == pytest.approx(1.0, abs=1e-4)
    hits = engine.search(Query(text="black jacket", collection="marqo", top_k=5)).hits
    assert len(hits) == 5 and all("cross_modal" in h.scores for h in hits)
    assert set(engine.label_image(photo, "marqo")) == {"category", "colour", "pattern"}


def test_what_cannot_be_read_fails_before_a_collection_exists(engine: Engine, small_luma: Path) -> None:
    no_tokenizer = _copy(engine.home / "no-tokenizer", tokenizer=False)
    with pytest.raises(InvalidInput, match="no tokenizer.*timm/ViT-B-16-SigLIP"):
        engine.ingest("a", small_luma, encoder=f"clip:{no_tokenizer}")

    # A weight the mapping does not know (here a layer scale) is refused, never dropped.
    extra = _copy(engine.home / "extra")
    weights = load_file(str(extra / "open_clip_model.safetensors"))
    weights["visual.trunk.blocks.0.ls1.gamma"] = weights["visual.trunk.norm.weight"].clone()
    save_file(weights, str(extra / "open_clip_model.safetensors"))
    with pytest.raises(InvalidInput, match="does not know.*ls1.gamma"):
        engine.ingest("b", small_luma, encoder=f"clip:{extra}")

    # An open_clip model that is not a SigLIP (a CLIP ViT: class token, no attention pooling).
    clip = _copy(engine.home / "clip")
    config = json.loads((clip / "open_clip_config.json").read_text())
    config["model_cfg"]["vision_cfg"] = {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16}
    (clip / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidInput, match="only SigLIP"):
        engine.ingest("c", small_luma, encoder=f"clip:{clip}")
    assert engine.collection_names() == []
    for folder in (no_tokenizer, extra, clip):
        assert not (folder / open_clip_siglip.CONVERTED).exists()


def test_a_hugging_face_checkpoint_missing_weights_is_refused(tiny_clip: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_clip, broken)
    weights = load_file(str(broken / "model.safetensors"))
    del weights[next(k for k in weights if k.startswith("vision_model.encoder"))]
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelUnavailable, match="lacks weights"):
        ClipCheckpoint(broken, threads=1).load()


def test_pull_marqo_fashionsiglip_with_its_tokenizer_from_the_repository_it_names(
    engine: Engine, small_luma: Path, fake_hub: FakeHub, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    fake_hub.repos["Marqo/marqo-fashionSigLIP"] = _copy(tmp_path / "marqo", tokenizer=False)
    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir()
    for file in TOKENIZER:
        shutil.copyfile(FIXTURE / file, tokenizer / file)
    (tokenizer / "open_clip_model.safetensors").write_bytes(b"not wanted")
    fake_hub.repos["timm/ViT-B-16-SigLIP"] = tokenizer
    home, pulled, folder = pull_with_cli(engine, fake_hub, "marqo-fashionsiglip", monkeypatch, capsys)
    assert pulled["repo"] == "Marqo/marqo-fashionSigLIP" and pulled["files"] == 4
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["open_clip_config.json", "open_clip_model.safetensors", *TOKENIZER, "vitrine-source.json",
         open_clip_siglip.CONVERTED])
    assert f"/timm/ViT-B-16-SigLIP/resolve/{COMMIT}/spiece.model" in fake_hub.requested
    assert f"/timm/ViT-B-16-SigLIP/resolve/{COMMIT}/open_clip_model.safetensors" not in fake_hub.requested

    assert cli(["--home", home, "ingest", str(small_luma), "-c", "marqo", "--encoder", "marqo-fashionsiglip",
                "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] == 12
    assert cli(["--home", home, "search", "marqo", "--text", "navy jacket", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits and all("cross_modal" in h["scores"] for h in hits)
