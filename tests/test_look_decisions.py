"""Shop the look's garment decisions: learned from the train split of street photos with boxes (never the
dev split), shipped with their card, and read the way `choose` says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA
from PIL import Image

from vitrine.cli.main import main as cli
from vitrine.engine import Engine
from vitrine.vision import (
    bag_training,
    bags,
    box_edge_training,
    box_edges,
    decision_training,
    decisions,
    drawn_boxes,
)
from vitrine.vision.decision_training import GRID, fit_logistic
from vitrine.vision.decisions import Thresholds, choose, leg_gaps
from vitrine.vision.drawn_box_training import COMPONENTS, L2
from vitrine.vision.evaluation import photo_split, read_photos, true_boxes
from vitrine.vision.garments import L_ANKLE, L_HIP, R_ANKLE, R_HIP, iou
from vitrine.vision.look import LookFinder
from vitrine.vision.people import Person

CCP = DATA / "ccp"


def test_train_look_learns_from_train_photos_only(
    luma_engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A boxes file whose dev photos are missing on disk: training must not need them."""
    photos = json.loads((CCP / "boxes.json").read_text())
    train = [p for p in photos if photo_split(p["image"]) == "train"][:36]
    dev = [p for p in photos if photo_split(p["image"]) == "dev"][:10]
    (tmp_path / "photos").mkdir()
    for photo in train:
        shutil.copyfile(CCP / photo["image"], tmp_path / photo["image"])
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(dev[:5] + train + dev[5:]))
    out = tmp_path / "model" / "decisions.npz"
    assert cli(["--home", str(luma_engine.home), "train-look", str(boxes), "--out", str(out), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["split"] == "train" and card["photos"] == 36 and card["people"] >= 36
    assert card["path"] == str(out) and out.is_file() and out.with_suffix(".json").is_file()
    assert all(card["thresholds"][name] in values for name, values in GRID.items())
    assert card["outerwear_reach"][3] > 0  # coats reach below the upper-body box

    edges = card["box_edges"]  # where the boxes end: learned from the boxes the new decisions show on them
    assert edges["photos"] == 36 and edges["split"] == "train"
    assert edges["path"] == str(out.parent / "look-box-edges.npz")
    assert edges["components"] in box_edge_training.COMPONENTS and edges["l2"] in box_edge_training.L2
    assert 0 < edges["paired"]["shoes"] <= edges["boxes"]["shoes"]
    assert box_edges.load(Path(edges["path"])).card == {k: v for k, v in edges.items() if k != "path"}

    drawn = card["drawn_boxes"]  # what a drawn box holds: learned from the same train photos' true boxes
    assert drawn["photos"] == 36 and drawn["split"] == "train"
    assert drawn["path"] == str(out.parent / "look-drawn-boxes.npz")
    assert drawn["components"] in COMPONENTS and drawn["l2"] in L2 and 0 < drawn["out_of_fold_accuracy"]["all"] <= 1
    assert drawn_boxes.load(Path(drawn["path"])).card == {k: v for k, v in drawn.items() if k != "path"}

    found = card["bags"]  # bags in the whole photo: learned from the same train photos' bag boxes
    assert found["photos"] == 36 and found["split"] == "train" and found["bags"] > 0
    assert found["path"] == str(out.parent / "look-bags.npz") and found["threshold"] in bag_training.THRESHOLDS
    assert set(found["out_of_fold"]) == {str(t) for t in bag_training.THRESHOLDS}
    assert bags.load(Path(found["path"])).card == {k: v for k, v in found.items() if k != "path"}

    model = decisions.load(out)
    assert model.thresholds == Thresholds(**card["thresholds"])
    photo = (CCP / dev[0]["image"]).read_bytes()
    look = LookFinder(luma_engine, decisions=model).find(photo, collection=None)
    assert look.people >= 1 and look.garments


def test_train_look_refuses_photos_without_bags_before_learning_anything(
    luma_engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bag detector needs bag boxes: photos with none are refused before the other models take their minutes."""

    def learned(*args: object, **kwargs: object) -> None:
        raise AssertionError("the decisions were learned before the photos were refused")

    monkeypatch.setattr(decision_training, "train_decisions", learned)
    photos = [p for p in json.loads((CCP / "boxes.json").read_text()) if photo_split(p["image"]) == "train"]
    bagless = [p for p in photos if not any(g == "bag" for g, _ in true_boxes(p))][:2]
    (tmp_path / "photos").mkdir()
    for photo in bagless:
        shutil.copyfile(CCP / photo["image"], tmp_path / photo["image"])
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(bagless))
    out = tmp_path / "model" / "decisions.npz"
    assert cli(["--home", str(luma_engine.home), "train-look", str(boxes), "--out", str(out), "--no-progress"]) != 0
    assert "no bag boxes to learn from" in capsys.readouterr().err
    assert not out.parent.exists()  # nothing written


def test_the_shipped_decisions_and_their_card() -> None:
    model = decisions.load()
    card = model.card
    train = read_photos(CCP / "boxes.json", "train")
    assert card["split"] == "train" and card["photos"] == len(train) and card["trained_on"] == "boxes.json"
    assert set(model.weights) == set(decisions.DECISIONS)
    n = len(decisions.HAND_MADE) + sum(len(basis) for _, basis in model.components.values())
    assert model.mean.shape == model.scale.shape == (n,) and len(card["evidence"]) == n
    assert all(w.shape == (n + 1,) for w in model.weights.values())


def test_the_shipped_drawn_box_model_and_its_card() -> None:
    model = drawn_boxes.load()
    card = model.card
    assert card["split"] == "train" and card["photos"] == len(read_photos(CCP / "boxes.json", "train"))
    n = 2 * len(drawn_boxes.GROUPS) + len(drawn_boxes.GEOMETRY) + card["components"]
    assert model.mean.shape == model.scale.shape == (n,) and len(card["evidence"]) == n
    assert model.weights.shape == (len(drawn_boxes.GROUPS), n + 1) and model.basis.shape[0] == card["components"]
    assert card["out_of_fold_accuracy"]["bag"] > 0.8  # a carried bag: from a quarter (zero-shot) to most


def test_the_shipped_bag_detector_and_its_card() -> None:
    model = bags.load()
    card = model.card
    assert card["split"] == "train" and card["photos"] == len(read_photos(CCP / "boxes.json", "train"))
    assert card["image_model"] == decisions.load().card["image_model"]  # the maps it learned on
    assert model.threshold in bag_training.THRESHOLDS
    chosen = card["out_of_fold"][str(model.threshold)]
    assert chosen["recall"] > 0.25 and chosen["precision"] > 0.25  # out of fold; 0 before it
    assert model.weights["fine.weight"].shape == (bag_training.CHANNELS, 112, 1, 1)
    assert model.weights["coarse.weight"].shape == (bag_training.CHANNELS, 1280, 1, 1)


def test_the_bag_head_runs_in_numpy_as_it_learned_in_pytorch() -> None:
    import torch

    torch.manual_seed(0)
    head = bag_training.head_module().eval()
    rng = np.random.default_rng(0)
    fine = rng.normal(size=(1, 112, bags.GRID_H, bags.GRID_W)).astype(np.float32)
    coarse = rng.normal(size=(1, 1280, bags.GRID_H // 2, bags.GRID_W // 2)).astype(np.float32)
    people = rng.random((1, bags.PEOPLE_CHANNELS, bags.GRID_H, bags.GRID_W)).astype(np.float32)
    with torch.no_grad():
        logits, size = head(torch.from_numpy(fine), torch.from_numpy(coarse), torch.from_numpy(people))
    model = bags.BagModel({k: v.numpy() for k, v in head.state_dict().items()}, threshold=0.5, card={})
    heat, boxes = model.heat(fine[0], coarse[0], people[0])
    assert np.allclose(heat, torch.sigmoid(logits[0]).numpy(), atol=1e-5)
    assert np.allclose(boxes, size[0].numpy(), atol=1e-5)


def test_bag_peaks_are_boxes_in_the_photo() -> None:
    heat = np.zeros((bags.GRID_H, bags.GRID_W), dtype=np.float32)
    heat[20, 5], heat[20, 6], heat[10, 15] = 0.9, 0.6, 0.3  # one peak with a lower neighbour, one too weak
    size = np.zeros((4, bags.GRID_H, bags.GRID_W), dtype=np.float32)
    size[:2, 20, 5] = np.log(3.0), np.log(4.0)  # 3 x 4 cells, centred in its cell
    found = bags.peaks(heat, size, 0.4, 2 * bags.INPUT_W, 2 * bags.INPUT_H)  # a photo twice the input's size
    assert found == [(pytest.approx(0.9), (128, 592, 224, 720))]  # centre (5.5, 20.5) cells = (176, 656) px


def test_bags_are_looked_for_in_portrait_and_square_photos() -> None:
    assert bags.looks_in(341, 512) and bags.looks_in(1080, 1920) and bags.looks_in(800, 800)
    assert not bags.looks_in(1280, 720) and not bags.looks_in(200, 600)  # zidane.jpg; a sliver


def test_people_maps_mark_wrists_elbows_and_hips() -> None:
    mask = np.zeros((512, 352), dtype=bool)
    mask[100:500, 150:200] = True
    marks = np.zeros((33, 3), dtype=np.float32)
    marks[15] = (168, 264, 1.0)  # a wrist in cell (16, 10)
    marks[23] = (168, 300, 0.1)  # a hip too hidden to count
    maps = bags.people_maps([Person(landmarks=marks, box=(150, 100, 200, 500), mask=mask)], 352, 512)
    assert maps.shape == (bags.PEOPLE_CHANNELS, bags.GRID_H, bags.GRID_W)
    assert maps[0, 15, 10] == pytest.approx(1.0) and maps[0, 15, 2] == 0  # the person's pixels, by cell
    assert np.unravel_index(maps[1].argmax(), maps[1].shape) == (16, 10) and not maps[3].any()


def test_the_shipped_box_edge_model_and_its_card() -> None:
    model = box_edges.load()
    card = model.card
    assert card["split"] == "train" and card["photos"] == len(read_photos(CCP / "boxes.json", "train"))
    n = len(box_edges.evidence_names()) + card["components"]
    assert len(card["evidence"]) == n and model.basis.shape[0] == card["components"]
    groups = len(box_edges.GROUPS)
    assert model.mean.shape == model.scale.shape == (groups, n) and model.weights.shape == (groups, n, 4)
    moved, unmoved = card["out_of_fold_recall"]["moved"], card["out_of_fold_recall"]["unmoved"]
    assert all(moved[g] > unmoved[g] for g in box_edges.GROUPS)  # out of fold, every group's boxes gain
    assert card["left_unmoved"] == [] and all(model.weights[g].any() for g in range(groups))


def test_a_dress_box_ends_where_the_dress_does(luma_engine: Engine) -> None:
    """ccp 0287, a dev photo: a dress. The full body's box runs from the shoulders to below the knees, too long and
    too narrow for the true box at IoU 0.5; moved by the box edge model, it finds it."""
    photo = next(p for p in read_photos(CCP / "boxes.json", "dev") if p["image"] == "photos/0287.jpg")
    truth = next(box for group, box in true_boxes(photo) if group == "dress")
    finder = LookFinder(luma_engine)
    look = finder.find((CCP / photo["image"]).read_bytes(), collection=None)
    dress = next(g for g in look.garments if g.group == "dress")
    rgb = np.asarray(Image.open(CCP / photo["image"]).convert("RGB"))
    full = finder.evidence(rgb, finder.detector.detect(rgb)[0]).boxes["full"]
    assert iou(full, truth) < 0.45 and iou(dress.box, truth) >= 0.5


def test_eval_look_measures_the_boxes_unmoved_too(
    luma_engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`eval-look --unmoved`: the boxes where the landmarks put them, so that anyone can measure what the box edge
    model adds. On ccp 0287 (a dev photo) only the moved dress box finds the dress."""
    photo = next(p for p in read_photos(CCP / "boxes.json", "dev") if p["image"] == "photos/0287.jpg")
    (tmp_path / "photos").symlink_to(CCP / "photos")
    (tmp_path / "boxes.json").write_text(json.dumps([photo]))
    found = {}
    for flags in ([], ["--unmoved"]):
        assert cli(["--home", str(luma_engine.home), "eval-look", str(tmp_path / "boxes.json"), "--json", *flags]) == 0
        found[bool(flags)] = json.loads(capsys.readouterr().out)["groups"]["dress"]["recall"]
    assert found == {False: 1.0, True: 0.0}


def test_box_edges_learn_from_fewer_crops_than_components() -> None:
    """`train-look --limit 3`: fewer crops than principal components asked for; the model reads what it has."""
    rng = np.random.default_rng(0)
    n = len(box_edges.evidence_names())
    found = [box_edge_training.Example(0, "top", (10, 10, 60, 90), 100, 100, rng.random(n, dtype=np.float32),
                                       rng.random(1328, dtype=np.float32), np.array([0.1, 0.0, -0.1, 0.2]))
             for _ in range(5)]
    model = box_edge_training.fit(found, components=32, l2=100.0)
    assert len(model.basis) == 5 and model.weights.shape == (len(box_edges.GROUPS), n + 5, 4)
    moves = model.moves("top", found[0].evidence, found[0].raw)
    assert np.allclose(moves, [0.1, 0.0, -0.1, 0.2], atol=1e-3)  # every example moved alike: so is this one
    assert np.allclose(model.moves("shoes", found[0].evidence, found[0].raw), 0.0)  # no shoes seen: left be


def test_moved_boxes_stay_in_the_photo() -> None:
    assert box_edges.moved((10, 10, 50, 90), np.array([-0.5, 0.1, 3.0, 0.0]), 60, 100) == (0, 18, 60, 90)
    assert box_edges.moved((10, 10, 50, 90), np.array([-2.0, 0.0, 0.0, 0.0]), 100, 100)[0] == 0  # at most a width


def test_a_box_moved_off_its_own_region_stays_where_it_was() -> None:
    """A body unlike any the model learned from (messi5.jpg, sliding) must not send the box off the person."""
    box = (100, 100, 200, 300)
    assert box_edges.moved(box, np.array([0.5, 0.0, 0.5, 0.0]), 400, 400) == (150, 100, 250, 300)  # IoU 0.33 ...
    assert box_edges.moved(box, np.array([0.6, 0.0, 0.6, 0.0]), 400, 400) == box  # ... but this would be 0.25


def test_the_person_grid_reads_the_widened_box() -> None:
    mask = np.zeros((100, 100), dtype=bool)
    mask[:, 40:60] = True  # a standing person, a fifth of the photo wide
    grid = box_edges.person_grid(mask, (40, 20, 60, 80), 100, 100)
    assert grid.shape == (box_edges.GRID, box_edges.GRID)
    assert (grid[:, 2:6] == 1).all() and (grid[:, [0, 7]] == 0).all()  # the person in the box, not in its margins
    edge = box_edges.person_grid(np.ones((100, 100), dtype=bool), (0, 0, 40, 40), 100, 100)
    assert (edge[0] < 0.5).all() and edge[7, 7] == 1  # outside the photo counts as not the person


def test_a_coat_reaches_below_the_hips(luma_engine: Engine) -> None:
    """ccp 0003: a long coat. Its box is the upper body's, reaching down as the train photos' coats do."""
    finder = LookFinder(luma_engine)
    look = finder.find((CCP / "photos" / "0003.jpg").read_bytes(), collection=None)
    coat = next(g for g in look.garments if g.group == "outerwear")
    rgb = np.asarray(Image.open(CCP / "photos" / "0003.jpg").convert("RGB"))
    upper = finder.evidence(rgb, finder.detector.detect(rgb)[0]).boxes["upper"]
    assert coat.box[3] > upper[3] + 0.15 * (upper[3] - upper[1])


def test_choose() -> None:
    t = Thresholds(outerwear=0.4, dress=0.3, dress_only=0.8, short=0.4, trousers=0.05)
    every = {"upper", "lower", "full", "feet", "inner", "short", "coat"}
    assert choose(every, {"outerwear": 0.1, "dress": 0.1, "short": 0.02}, t) == [
        ("top", "upper"), ("bottom", "lower"), ("shoes", "feet")]
    assert choose(every, {"outerwear": 0.6, "dress": 0.1, "short": 0.5}, t) == [
        ("outerwear", "coat"), ("top", "inner"), ("bottom", "short"), ("shoes", "feet")]
    # Sure of a dress: no top or bottom under it; a coat over it stays.
    assert choose(every, {"outerwear": 0.6, "dress": 0.9, "short": 0.5}, t) == [
        ("dress", "full"), ("outerwear", "coat"), ("shoes", "feet")]
    # Clearly trousers: no dress, whatever the full body looks like.
    assert ("dress", "full") not in choose(every, {"outerwear": 0.1, "dress": 0.9, "short": 0.01}, t)
    # Waist up: only what the upper body shows.
    assert choose({"upper", "inner", "coat"}, {"outerwear": 0.1, "dress": 0.0, "short": 0.0}, t) == [("top", "upper")]


def _standing(mask: np.ndarray) -> Person:
    marks = np.zeros((33, 3), dtype=np.float32)
    for index, (x, y) in {L_HIP: (40, 40), R_HIP: (60, 40), L_ANKLE: (40, 140), R_ANKLE: (60, 140)}.items():
        marks[index] = (x, y, 1.0)
    return Person(landmarks=marks, box=(20, 0, 80, 150), mask=mask)


def test_leg_gaps_tell_legs_apart_from_a_skirt() -> None:
    trousers = np.zeros((160, 100), dtype=bool)
    trousers[30:145, 32:48] = trousers[30:145, 52:68] = True  # two legs from the hips down
    skirt = trousers.copy()
    skirt[30:100, 30:70] = True  # a skirt to below the knees joins them
    apart, joined = leg_gaps(_standing(trousers), 100, 160), leg_gaps(_standing(skirt), 100, 160)
    assert (apart == 2).all()
    assert (joined[:7] == 1).all() and (joined[-5:] == 2).all()
    cropped = leg_gaps(_standing(trousers), 100, 90)  # the photo ends above the knees
    assert (cropped[:10] == 2).all() and (cropped[10:] == -1).all()


def test_fit_logistic_reaches_the_regularised_optimum() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 5))
    truth = np.array([2.0, -1.0, 0.0, 0.5, 0.0])
    y = (rng.random(400) < 1 / (1 + np.exp(-(x @ truth + 0.3)))).astype(float)
    w = fit_logistic(x, y, l2=1.0).astype(np.float64)
    design = np.hstack([x, np.ones((400, 1))])
    p = 1 / (1 + np.exp(-(design @ w)))
    gradient = design.T @ (p - y) + np.r_[w[:-1], 0.0]
    assert np.abs(gradient).max() < 1e-3
    assert np.sign(w[0]) == 1 and np.sign(w[1]) == -1 and abs(w[2]) < 0.3
