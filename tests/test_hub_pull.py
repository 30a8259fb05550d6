"""`vitrine models pull`: a checkpoint comes from a Hugging Face-like hub that the test serves on loopback
(the same HTTP path as the real Hub), then `--encoder NAME` creates collections on it. Offline, the pull
fails with a message that says how to copy a checkpoint in, and leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import COMMIT, DATA, FakeHub, free_port, pull_with_cli

from vitrine.cli.main import main as cli
from vitrine.engine import Engine
from vitrine.errors import InvalidInput, ModelUnavailable
from vitrine.models import hub
from vitrine.vision.garments import garment_group
from vitrine.vision.look import LookFinder


def test_pull_then_search_label_and_shop_the_look_on_the_pulled_checkpoint(
    engine: Engine, small_luma: Path, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home, pulled, folder = pull_with_cli(engine, fake_hub, "fashion-clip", monkeypatch, capsys)
    assert pulled["repo"] == "patrickjohncyh/fashion-clip" and pulled["path"] == str(folder)
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert not (folder / "tf_model.h5").exists() and not (Path(home) / "checkpoints" / "escape.json").exists()
    assert not any("tf_model.h5" in p or "escape" in p for p in fake_hub.requested)
    assert json.loads((folder / hub.SOURCE_FILE).read_text())["commit"] == COMMIT

    # Pulling again is refused unless forced: a pulled checkpoint is never silently replaced.
    assert cli(["--home", home, "models", "pull", "fashion-clip"]) != 0
    assert "--force" in capsys.readouterr().err

    assert cli(["--home", home, "ingest", str(small_luma), "-c", "fc", "--encoder", "fashion-clip", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] == 12
    assert cli(["--home", home, "search", "fc", "--text", "jacket", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits and all("cross_modal" in h["scores"] for h in hits)

    with Engine(engine.settings) as again:
        assert again.store("fc").meta()["image_model"] == f"clip:{folder.resolve()}"
        photo = (DATA / "ccp" / "photos" / "0003.jpg").read_bytes()
        assert set(again.label_image(photo, "fc")) == {"category", "colour", "pattern"}
        # Shop the look labels and matches crops in the checkpoint's own space.
        look = LookFinder(again).find(photo, collection="fc", top_k=2)
        assert look.garments and all(len(g.matches) == 2 for g in look.garments if g.group != "shoes")
        assert all(g.unmatched == "the collection has no shoes" for g in look.garments if g.group == "shoes")
        assert all(garment_group(g.label("category")) == g.group for g in look.garments)


def test_offline_the_pull_says_how_to_copy_a_checkpoint_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VITRINE_HUB_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    home = tmp_path / "home"
    assert cli(["--home", str(home), "models", "pull", "fashion-clip"]) != 0
    message = capsys.readouterr().err
    assert "cannot download patrickjohncyh/fashion-clip" in message
    assert f"copy the folder fashion-clip to {home / 'checkpoints' / 'fashion-clip'}" in message
    assert "--encoder fashion-clip" in message
    assert not any((home / "checkpoints").glob("*")) if (home / "checkpoints").exists() else True


def test_a_pull_that_breaks_midway_leaves_nothing_to_use(
    engine: Engine, small_luma: Path, fake_hub: FakeHub
) -> None:
    fake_hub.broken.add("model.safetensors")
    with pytest.raises(ModelUnavailable, match="cannot download"):
        hub.pull("fashion-clip", home=engine.home, hub_url=fake_hub.url)
    assert list((engine.home / "checkpoints").iterdir()) == []
    with pytest.raises(InvalidInput, match="models pull fashion-clip"):
        engine.ingest("fc", small_luma, encoder="fashion-clip")
    assert "fc" not in engine.collection_names()


def test_names_and_hub_ids(fake_hub: FakeHub, tmp_path: Path) -> None:
    assert hub.resolve("fashion-clip") == ("fashion-clip", "patrickjohncyh/fashion-clip")
    assert hub.resolve("Marqo-FashionSigLIP") == ("marqo-fashionsiglip", "Marqo/marqo-fashionSigLIP")
    assert hub.resolve("openai/clip-vit-base-patch32") == ("clip-vit-base-patch32", "openai/clip-vit-base-patch32")
    for bad in ("../etc/passwd", "a/b/c", "owner/..", "", "nope"):
        with pytest.raises(InvalidInput):
            hub.resolve(bad)
    with pytest.raises(ModelUnavailable, match="not on"):
        hub.pull("someone/missing", home=tmp_path, hub_url=fake_hub.url)
    assert hub.wanted_files([{"rfilename": "pytorch_model.bin", "size": 5}, {"rfilename": "model.safetensors"},
                             {"rfilename": "config.json"}, {"rfilename": "/etc/passwd"}]) == [
        ("model.safetensors", 0), ("config.json", 0)]
