"""Shop the look on real photos: detection, the job's states, index-a-look, a label correction."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, admin_token, wait_for
from fastapi.testclient import TestClient
from PIL import Image

from vitrine.api.app import create_app
from vitrine.cli.look_commands import GROUP_COLOURS, draw_look
from vitrine.cli.main import main as cli
from vitrine.engine import Engine
from vitrine.errors import ImageError, InvalidInput
from vitrine.index.store import Filters, RangeFilter
from vitrine.logs import NATIVE_CHATTER, native_chatter_logged
from vitrine.vision import people as people_module
from vitrine.vision import service as look_service
from vitrine.vision.evaluation import evaluate_looks, photo_split
from vitrine.vision.garments import garment_group, iou
from vitrine.vision.look import MATCH_GROUPS, NO_PERSON, LookFinder, categories_by_group, match_filters
from vitrine.vision.people import PeopleDetector, Person
from vitrine.vision.service import LookService

CCP = DATA / "ccp"
BOXES = {p["image"]: p for p in json.loads((CCP / "boxes.json").read_text())}


def test_garments_of_a_street_photo_overlap_the_true_boxes(luma_engine: Engine) -> None:
    look = LookFinder(luma_engine).find((CCP / "photos" / "0003.jpg").read_bytes(), collection="luma", top_k=3)
    assert look.people == 1 and look.reason is None
    found = {g.group: g for g in look.garments}
    truth = {b["label"]: b["bbox_xyxy"] for b in BOXES["photos/0003.jpg"]["boxes"]}
    assert iou(found["outerwear"].box, truth["coat"]) >= 0.5
    assert iou(found["shoes"].box, truth["boots"]) >= 0.35
    for garment in look.garments:
        assert set(garment.labels) == {"category", "colour", "pattern"}
        assert garment.crop_png[:8] == b"\x89PNG\r\n\x1a\n"
        if garment.group == "shoes":  # Luma sells no shoes: her boots are not matched with its tights
            assert garment.matches == [] and garment.unmatched == "the collection has no shoes"
            continue
        assert len(garment.matches) == 3 and all(m.collection == "luma" for m in garment.matches)
        assert {garment_group(m.category) for m in garment.matches} <= set(MATCH_GROUPS.get(garment.group,
                                                                                            (garment.group,)))


def test_matches_keep_to_the_garment_s_group_and_the_shopper_s_filters() -> None:
    by_group = categories_by_group([("Tees", 24), ("Jackets", 23), ("Pants", 25), ("Watches", 9)])
    assert by_group == {"top": ["Tees"], "outerwear": ["Jackets"], "bottom": ["Pants"]}
    shopper = Filters(equals={"colour": ("Red",)}, ranges={"price": RangeFilter(high=50)})
    top = match_filters(shopper, by_group, "top")
    assert top is not None and top.equals == {"colour": ("Red",), "category": ("Tees", "Jackets")}
    assert top.ranges == shopper.ranges
    bottom = match_filters(shopper, by_group, "bottom")
    assert bottom is not None and bottom.equals["category"] == ("Pants",)
    assert match_filters(shopper, by_group, "shoes") is None  # nothing of that group: no matches at all
    own = Filters(equals={"Category": ("Watches",)})  # the shopper's own category choice stands
    assert match_filters(own, by_group, "shoes") is own
    assert match_filters(shopper, {}, "shoes") is shopper  # no category names a group: nothing to go by


def test_people_seen_from_the_waist_up_side_by_side_are_found(luma_engine: Engine) -> None:
    """zidane.jpg: two men in suits, upper body, in a wide photo; the whole-photo pose run finds nobody."""
    look = LookFinder(luma_engine).find((DATA / "people" / "zidane.jpg").read_bytes(), collection=None)
    assert look.people == 2
    widest: dict[int, tuple[int, int, int, int]] = {}  # each man's outermost upper-body garment
    for g in look.garments:
        if g.group in ("top", "outerwear") and (g.person not in widest or g.box[2] - g.box[0] >
                                                widest[g.person][2] - widest[g.person][0]):
            widest[g.person] = g.box
    uppers = sorted(widest.values())
    assert len(uppers) == 2
    assert uppers[0][2] <= 700 < uppers[1][0] - 20  # one each side: Zidane on the left, Ancelotti on the right
    assert all(box[3] >= 700 for box in uppers)  # their hips are below the photo: the jackets run off its bottom


def test_somebody_the_pose_model_misses_at_first_is_found_on_a_second_look(luma_engine: Engine) -> None:
    """ccp 0869: a full-length coat under a fur hat; the whole-photo pose run finds nobody, the mirrored
    photo finds her, and her landmarks come back on the right sides."""
    photo = BOXES["photos/0869.jpg"]
    finder = LookFinder(luma_engine)
    look = finder.find((CCP / photo["image"]).read_bytes(), collection=None)
    assert look.people == 1
    coat = next(b["bbox_xyxy"] for b in photo["boxes"] if b["label"] == "coat")
    assert any(g.group == "outerwear" and iou(g.box, coat) >= 0.5 for g in look.garments)
    rgb = np.asarray(Image.open(CCP / photo["image"]).convert("RGB"))
    person = finder.detector.detect(rgb)[0]
    assert person.point(11)[0] > person.point(12)[0]  # she faces us: her left shoulder is on the photo's right


def test_a_carried_bag_is_found_and_cut_as_it_is(luma_engine: Engine) -> None:
    """ccp 0170 (dev): a bag held in front; the detector finds it, labels it among bags, and gives it to her."""
    photo = BOXES["photos/0170.jpg"]
    look = LookFinder(luma_engine).find((CCP / photo["image"]).read_bytes(), collection=None)
    bag = next(b["bbox_xyxy"] for b in photo["boxes"] if b["label"] in ("bag", "purse"))
    found = [g for g in look.garments if g.group == "bag"]
    assert len(found) == 1 and iou(found[0].box, bag) >= 0.8 and found[0].person == 0
    assert garment_group(found[0].label("category")) == "bag"
    x0, y0, x1, y1 = found[0].box
    crop = np.asarray(Image.open(io.BytesIO(found[0].crop_png)).convert("RGB"))
    assert crop.shape[:2] == (y1 - y0, x1 - x0)
    assert np.array_equal(crop, np.asarray(Image.open(CCP / photo["image"]).convert("RGB"))[y0:y1, x0:x1])  # as is


def test_the_tallest_person_the_segmentation_misses_is_drawn_from_their_landmarks(luma_engine: Engine) -> None:
    """basketball1.png: the segmentation sees only the man on the right, close to the camera. The man on the left,
    in full view and the tallest, got only his shoes; now his top and trousers are found on him too."""
    look = LookFinder(luma_engine).find((DATA / "people" / "basketball1.png").read_bytes(), collection=None)
    on_him = {g.group for g in look.garments if g.box[2] <= 170 and g.box[0] >= 30}  # his landmarks: x 52-159
    assert {"top", "bottom", "shoes"} <= on_him


def test_passers_by_the_segmentation_misses_are_left_out() -> None:
    """Only the tallest people the segmentation missed are drawn: shorter ones are passers-by, not the look."""
    marks = np.zeros((33, 3), dtype=np.float32)
    body = {11: (40, 40), 12: (60, 40), 23: (42, 100), 24: (58, 100), 25: (42, 150), 26: (58, 150),
            27: (42, 195), 28: (58, 195)}
    for index, (x, y) in body.items():
        marks[index] = (x, y, 1.0)
    tall = Person(landmarks=marks, box=(40, 40, 60, 195), mask=np.zeros((200, 200), dtype=bool))
    short = Person(landmarks=marks * [0.5, 0.5, 1.0], box=(20, 20, 30, 98), mask=np.zeros((200, 200), dtype=bool))
    drawn, passer_by = people_module._drawn_where_unsegmented([tall, short], 200, 200)
    assert not passer_by.mask.any()
    assert drawn.mask[70, 50] and drawn.mask[170, 42] and drawn.mask[170, 58]  # torso and both shins
    assert not drawn.mask[170, 50] and not drawn.mask[10, 150]  # apart below the knees; nothing off the body


def test_mediapipe_s_own_log_lines_go_to_the_debug_log(capfd: pytest.CaptureFixture[str],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """MediaPipe's C++ prints its graphs' warnings straight to stderr, under the CLI's table and between the
    server's JSON lines; they are logged at debug level instead. Other lines written there meanwhile stay."""
    rgb = np.asarray(Image.open(DATA / "people" / "bus.jpg").convert("RGB"))
    with caplog.at_level(logging.DEBUG, logger="vitrine.vision.people"):
        assert len(PeopleDetector().detect(rgb)) == 2  # a new detector starts its own graphs, which warn
        with native_chatter_logged(logging.getLogger("test")):
            os.write(2, b"W0000 00:00:1.0 x.cc:1] chatter\nnot chatter\n")
    err = capfd.readouterr().err.splitlines()
    assert "not chatter" in err
    assert not [line for line in err if NATIVE_CHATTER.match(line)]
    assert any("inference_feedback_manager" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("photo", ["people/bus.jpg", "ccp/photos/0001.jpg", "ccp/photos/0010.jpg"])
def test_a_box_is_labelled_with_a_kind_of_its_own_group(luma_engine: Engine, photo: str) -> None:
    """Never "shoes: Blue Pants": every category label offered for a box names a garment of its group,
    with Luma's own categories among the candidates."""
    look = LookFinder(luma_engine).find((DATA / photo).read_bytes(), collection="luma", top_k=1)
    assert look.garments
    for garment in look.garments:
        assert {garment_group(label.value) for label in garment.labels["category"]} == {garment.group}


def test_a_photo_without_people_is_a_result_not_an_error(luma_engine: Engine) -> None:
    photo = next((DATA / "luma" / "images").glob("luma-yoga-brick.jpg")).read_bytes()
    look = LookFinder(luma_engine).find(photo, collection=None)
    assert look.people == 0 and look.garments == [] and look.reason == NO_PERSON


def test_non_images_and_bombs_are_refused(luma_engine: Engine) -> None:
    service = LookService(luma_engine)
    with pytest.raises(ImageError):
        service.save_photo(b"%PDF-1.4 definitely not a photo")
    with pytest.raises(ImageError):
        service.save_photo((CCP / "photos" / "0003.jpg").read_bytes()[:300])  # truncated


def test_a_drawn_box_adds_the_garment_the_look_missed_and_a_moved_box_is_cut_again(
        luma_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """ccp 0003: the look finds her bag but not the purse she also carries. The shopper draws the purse, says it is
    a bag, and it is cut from the photo as drawn and matched with Luma's bags. A garment's box moved onto her
    trousers is cut again there and its labels read again, all but the one she corrected."""
    service = LookService(luma_engine)
    photo = (CCP / "photos" / "0003.jpg").read_bytes()
    look_id, _ = service.save_photo(photo)
    look = service.run(look_id, collection="luma", top_k=2)
    truth = {b["label"]: b["bbox_xyxy"] for b in BOXES["photos/0003.jpg"]["boxes"]}
    found = [g["box"] for g in look["garments"] if g["group"] == "bag"]
    assert [iou(box, truth["bag"]) >= 0.5 for box in found] == [True] and iou(found[0], truth["purse"]) < 0.1

    bag = service.add(look_id, truth["purse"], group="bag")
    assert bag["index"] == len(look["garments"]) and bag["person"] is None and bag["group"] == "bag"
    assert bag["unmatched"] is None and len(bag["matches"]) == 2 and {m["category"] for m in bag["matches"]} == {"Bags"}
    assert {garment_group(label["value"]) for label in bag["labels"]["category"]} == {"bag"}
    x0, y0, x1, y1 = truth["purse"]
    crop = Image.open(io.BytesIO(service.crop(look_id, bag["index"])))
    assert crop.size == (x1 - x0, y1 - y0)
    assert np.array_equal(np.asarray(crop.convert("RGB")),  # a bag is cut as drawn, not whitened where
                          np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))[y0:y1, x0:x1])  # the person ends
    assert service.get(look_id)["garments"][-1] == bag

    trousers = service.add(look_id, truth["pants"])  # no group given: read by the drawn-box model
    assert trousers["group"] == "bottom" and trousers["index"] == bag["index"] + 1
    assert all(garment_group(m["category"]) == "bottom" for m in trousers["matches"])

    top = next(g for g in look["garments"] if g["group"] in ("top", "outerwear"))
    service.correct(look_id, top["index"], labels={"colour": "plum"})
    moved = service.correct(look_id, top["index"], box=truth["blouse"])
    assert moved["box"] == truth["blouse"] and moved["corrected"] == {"colour": "plum", "box": truth["blouse"]}
    assert moved["labels"]["colour"][0]["value"] == "plum"  # corrected: kept
    assert moved["labels"]["category"] != top["labels"]["category"]  # read again from the new crop
    x0, y0, x1, y1 = truth["blouse"]
    assert Image.open(io.BytesIO(service.crop(look_id, top["index"]))).size == (x1 - x0, y1 - y0)
    assert [m["id"] for m in moved["matches"]] != [m["id"] for m in top["matches"]]

    for box in ([0, 0, 9999, 5], [10, 10, 12, 12]):  # outside the photo; a slip of the mouse
        with pytest.raises(InvalidInput, match="box"):
            service.add(look_id, box)
    with pytest.raises(InvalidInput, match="group"):
        service.add(look_id, truth["purse"], group="hat")
    monkeypatch.setattr(look_service, "MAX_DRAWN", 2)  # a shopper may draw without a key: a look holds so many
    with pytest.raises(InvalidInput, match="at most 2 drawn garments"):
        service.add(look_id, truth["bag"], group="bag")
    assert len(service.get(look_id)["garments"]) == len(look["garments"]) + 2  # nothing stored by the refusals


@pytest.mark.parametrize(("photo", "expected"), [
    ("photos/0006.jpg", {"purse": "bag", "skirt": "bottom", "shoes": "shoes"}),
    ("photos/0058.jpg", {"pants": "bottom", "purse": "bag", "shoes": "shoes"}),
])
def test_what_a_drawn_box_holds_is_read_from_the_crop_and_where_it_lies(luma_engine: Engine, photo: str,
                                                                       expected: dict[str, str]) -> None:
    """Dev photos (the drawn-box model never saw them): a carried purse, read zero-shot from its crop alone, is a
    bottom or a top; where it lies on the person makes it a bag."""
    assert photo_split(photo) == "dev"
    finder = LookFinder(luma_engine)
    data = (CCP / photo).read_bytes()
    for box in BOXES[photo]["boxes"]:
        if box["label"] in expected:
            garment = finder.drawn(data, tuple(box["bbox_xyxy"]), collection="luma")
            assert garment.group == expected[box["label"]], box
            assert {garment_group(label.value) for label in garment.labels["category"]} == {garment.group}


def test_look_job_states_index_and_correction(settings: object, luma_home: Path) -> None:
    auth = {"Authorization": f"Bearer {admin_token(settings.home)}"}  # type: ignore[attr-defined]
    reader = {"Authorization": f"Bearer {admin_token(settings.home, 'read')}"}  # type: ignore[attr-defined]
    with Engine(settings) as engine, TestClient(create_app(engine=engine), headers=auth) as client:  # type: ignore[arg-type]
        engine.ingest("luma", DATA / "luma" / "catalog.csv")
        photo = (CCP / "photos" / "0001.jpg").read_bytes()
        accepted = client.post("/looks", files={"image": ("street.jpg", photo)},
                               data={"collection": "luma", "top_k": "2"})
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["state"] == "QUEUED" and accepted.json()["kind"] == "look"
        job = wait_for(lambda: client.get(f"/jobs/{accepted.json()['id']}").json(),
                       lambda j: j["state"] in ("COMPLETE", "FAILED"))
        assert job["state"] == "COMPLETE", job
        assert (job["done"], job["total"]) == (3, 3)  # DETECTING, ANALYZING, MATCHING all ran
        look_id = job["result"]["id"]
        look = client.get(f"/looks/{look_id}").json()
        assert look["people"] == 1 and len(look["garments"]) >= 2
        assert {"shoes"} <= {g["group"] for g in look["garments"]}
        assert client.get(look["photo_url"]).content == photo  # the original, stored by content
        crop = client.get(look["garments"][0]["crop_url"])
        assert crop.status_code == 200 and crop.headers["content-type"] == "image/png"

        fixed = client.patch(f"/looks/{look_id}/garments/0", json={"labels": {"category": "blouse"}})
        assert fixed.status_code == 200 and fixed.json()["corrected"] == {"category": "blouse"}
        assert fixed.json()["group"] == "top" and len(fixed.json()["matches"]) == 2  # the look's top_k
        assert {garment_group(m["category"]) for m in fixed.json()["matches"]} <= {"top", "outerwear"}
        # A correction to a kind of another group moves the garment there, and it is matched again.
        shoes = next(g["index"] for g in look["garments"] if g["group"] == "shoes")
        assert look["garments"][shoes]["unmatched"] == "the collection has no shoes"
        moved = client.patch(f"/looks/{look_id}/garments/{shoes}", json={"labels": {"category": "gym bag"}}).json()
        assert moved["group"] == "bag" and moved["unmatched"] is None
        assert len(moved["matches"]) == 2 and all(m["category"] == "Bags" for m in moved["matches"])
        assert client.get(f"/looks/{look_id}").json()["garments"][0]["labels"]["category"][0]["value"] == "blouse"
        assert client.patch(f"/looks/{look_id}/garments/0", json={"box": [0, 0, 9999, 5]}).status_code == 422
        assert client.patch(f"/looks/{look_id}/garments/42", json={"labels": {"colour": "red"}}).status_code == 404
        # A garment the look missed, drawn by the shopper: 201, with its crop and its matches in the look's collection.
        skirt = next(b["bbox_xyxy"] for b in BOXES["photos/0001.jpg"]["boxes"] if b["label"] == "skirt")
        drawn = client.post(f"/looks/{look_id}/garments", json={"box": skirt, "group": "bottom"})
        assert drawn.status_code == 201, drawn.text
        assert drawn.json()["index"] == len(look["garments"]) and len(drawn.json()["matches"]) == 2
        assert client.get(drawn.json()["crop_url"]).headers["content-type"] == "image/png"
        look["garments"].append(drawn.json())  # indexed below with the others
        keyless = client.post(f"/looks/{look_id}/garments", json={"box": skirt}, headers={"Authorization": ""})
        assert keyless.status_code == 201  # a shopper draws on their own look as they made it: no key needed
        assert client.patch(f"/looks/{look_id}/garments/0", json={"labels": {"colour": "red"}},
                            headers={"Authorization": ""}).status_code == 401  # label corrections are curation
        assert client.patch(f"/looks/{look_id}/garments/0", json={"labels": {"colour": "red"}},
                            headers=reader).json()["error"]["code"] == "forbidden"  # a read key: 403
        blouse = next(b["bbox_xyxy"] for b in BOXES["photos/0001.jpg"]["boxes"] if b["label"] == "blouse")
        moved = client.patch(f"/looks/{look_id}/garments/0", json={"box": blouse}, headers={"Authorization": ""})
        assert moved.status_code == 200 and moved.json()["box"] == blouse  # a box is the shopper's own look's
        assert client.delete(f"/looks/{look_id}/garments/{keyless.json()['index']}",
                             headers={"Authorization": ""}).status_code == 204  # not a garment after all
        assert client.get(f"/looks/{look_id}").json()["garments"][-1]["removed"] is True  # indices stay
        assert client.delete(f"/looks/{look_id}/garments/99").status_code == 404
        refused = client.post(f"/looks/{look_id}/garments", json={"box": skirt, "group": "hat"})
        assert refused.status_code == 422 and "group" in refused.json()["error"]["field"]
        assert client.post("/looks/0123456789abcdef/garments", json={"box": skirt}).status_code == 404

        indexed = client.post(f"/looks/{look_id}/index", json={"collection": "wardrobe"}).json()
        assert len(indexed["products"]) == len(look["garments"])  # not the removed one
        first = client.get(f"/collections/wardrobe/products/{indexed['products'][0]}").json()
        assert first["category"] == "blouse" and first["attributes"]["look"] == look_id
        # The correction is now a training pair of that product.
        assert (indexed["products"][0], "blouse") in {(p, t) for _, p, t in engine.store("wardrobe").training_pairs()}

        assert client.delete("/collections/luma").status_code in (200, 204)
        orphan = client.patch(f"/looks/{look_id}/garments/0", json={"labels": {"colour": "red"}})
        assert orphan.status_code == 200 and orphan.json()["labels"]["colour"][0]["value"] == "red"
        assert orphan.json()["matches"] == [] and orphan.json()["unmatched"] == "the collection 'luma' is gone"

        refused = client.post("/looks", files={"image": ("x.jpg", b"GIF89a broken")})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "image"
        assert client.get("/looks/../../etc").status_code == 404


def test_cli_look_draws_the_boxes(luma_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drawn = tmp_path / "look.png"
    purse = ",".join(map(str, next(b["bbox_xyxy"] for b in BOXES["photos/0003.jpg"]["boxes"] if b["label"] == "purse")))
    assert cli(["--home", str(luma_home), "look", str(CCP / "photos" / "0003.jpg"), "-c", "luma", "-k", "2",
                "--draw", str(drawn), "--box", f"{purse}=bag", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    bag = result["garments"].pop()  # the purse the look missed, shopped from its box
    assert bag["person"] is None and bag["group"] == "bag" and bag["box"] == [int(v) for v in purse.split(",")]
    assert len(bag["matches"]) == 2 and {m["category"] for m in bag["matches"]} == {"Bags"}
    assert result["garments"] and all(len(g["matches"]) == 2 and g["unmatched"] is None
                                      for g in result["garments"] if g["group"] != "shoes")
    shoes = [g for g in result["garments"] if g["group"] == "shoes"]
    assert shoes and all(g["matches"] == [] and g["unmatched"] == "the collection has no shoes" for g in shoes)
    assert drawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli(["--home", str(luma_home), "look", str(tmp_path / "missing.jpg")]) == 2
    with pytest.raises(SystemExit) as exited:  # not a box: argparse says so
        cli(["--home", str(luma_home), "look", str(CCP / "photos" / "0003.jpg"), "--box", "1,2,3"])
    assert exited.value.code == 2 and "four whole numbers" in capsys.readouterr().err
    photo = str(CCP / "photos" / "0003.jpg")
    assert cli(["--home", str(luma_home), "look", photo, "--box", "0,0,9999,10"]) == 2  # outside the photo
    assert "box must be" in capsys.readouterr().err


def test_drawn_labels_of_nested_boxes_do_not_cover_each_other() -> None:
    """A coat and the top under it start at the same corner: the top's label goes to the bottom of its box."""
    photo = io.BytesIO()
    Image.new("RGB", (400, 400), "white").save(photo, "PNG")
    labels = {"colour": [{"value": "grey"}], "category": [{"value": "coat"}]}
    look = {"garments": [{"group": "outerwear", "box": [10, 10, 300, 300], "labels": labels},
                         {"group": "top", "box": [12, 12, 200, 200], "labels": labels}]}
    drawn = np.asarray(draw_look(photo.getvalue(), look))

    def share(colour: tuple[int, int, int], rows: slice) -> float:
        return float((drawn[rows, 20:60] == colour).all(axis=-1).mean())

    assert share(GROUP_COLOURS["outerwear"], slice(14, 22)) > 0.3  # the coat's label, not covered
    assert share(GROUP_COLOURS["top"], slice(180, 196)) > 0.3  # the top's, at the bottom of its box


def test_detection_evaluation_counts(luma_engine: Engine, tmp_path: Path) -> None:
    handbag = {"image": "fpi/21510.jpg", "boxes": [{"label": "bag", "bbox_xyxy": [20, 20, 200, 200]}]}
    subset = [BOXES["photos/0001.jpg"], BOXES["photos/0003.jpg"], handbag]  # a product photo: nobody in it
    (tmp_path / "photos").symlink_to(CCP / "photos")
    (tmp_path / "fpi").symlink_to(DATA / "fpi" / "images")
    (tmp_path / "boxes.json").write_text(json.dumps(subset))
    result = evaluate_looks(LookFinder(luma_engine), tmp_path / "boxes.json")
    assert result["photos"] == 3 and result["groups"]["shoes"]["boxes"] == 2
    assert result["groups"]["outerwear"]["recall"] == 1.0  # the coat of 0003
    assert result["people_found"] == {"photos": 3, "found": 2, "missed": ["fpi/21510.jpg"]}
    assert result["photos_per_s"] > 0


def test_the_dev_split_is_a_stable_quarter_of_the_photos_apart_from_train() -> None:
    images = list(BOXES)
    dev = {i for i in images if photo_split(i) == "dev"}
    assert 0.2 < len(dev) / len(images) < 0.3
    assert {photo_split(i) for i in images} == {"dev", "train"}
    assert photo_split("photos/0001.jpg") == photo_split("photos/0001.jpg")
    with pytest.raises(InvalidInput):
        evaluate_looks(None, CCP / "boxes.json", split="test")  # type: ignore[arg-type]


def test_garment_choices_follow_the_collections_model_version(engine: Engine, small_luma: Path) -> None:
    from vitrine.models.heads import FashionHeads, load_base_heads

    engine.ingest("shop", small_luma)
    finder = LookFinder(engine)
    before = finder._chooser("shop", ("top", "outerwear"))
    base = load_base_heads()
    assert base is not None and before.heads.version == "base"
    shifted = FashionHeads(weights={k: v * 1.01 for k, v in base.weights.items()}, card=dict(base.card))
    engine.model_versions("shop").save(shifted)
    engine.use_model("shop", "v1")
    after = finder._chooser("shop", ("top", "outerwear"))
    assert after is not before and after.heads is engine.heads("shop") and after.heads.version == "v1"
