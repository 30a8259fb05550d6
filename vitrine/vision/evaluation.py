"""Garment detection quality on street photos with boxes (the ccp/boxes.json format): per garment
group, recall and precision at IoU >= 0.5, group label accuracy on matched boxes, the photos with
garments where nobody was found, photos per second."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vitrine.errors import InvalidInput
from vitrine.vision.garments import Box, iou
from vitrine.vision.look import LookFinder

IOU = 0.5
GROUPS = ("top", "bottom", "dress", "outerwear", "shoes", "bag")
# The dataset's garment labels by group; accessories, belts, socks, glasses... are not garments we find.
DATASET_GROUPS: dict[str, str] = {
    **dict.fromkeys(("blouse", "shirt", "t-shirt", "top", "sweater", "cardigan", "sweatshirt", "jumper", "hoodie",
                     "vest", "bodysuit", "bra"), "top"),
    **dict.fromkeys(("pants", "jeans", "skirt", "shorts", "leggings"), "bottom"),
    **dict.fromkeys(("dress", "romper", "jumpsuit"), "dress"),
    **dict.fromkeys(("coat", "jacket", "blazer", "cape"), "outerwear"),
    **dict.fromkeys(("shoes", "boots", "sandals", "loafers", "heels", "pumps", "sneakers", "flats", "wedges"),
                    "shoes"),
    **dict.fromkeys(("bag", "purse"), "bag"),
}


SPLITS = ("all", "train", "dev")
DEV_SHARE = 0.25


def photo_split(image: str) -> str:
    """"dev" for a quarter of the photos, chosen by a hash of the photo's path (stable as the set grows):
    whatever is learned from street photos learns from "train" and is measured on "dev"."""
    digest = hashlib.sha256(f"ccp:{image}".encode()).digest()
    return "dev" if int.from_bytes(digest[:8], "big") / 2**64 < DEV_SHARE else "train"


def read_photos(boxes_file: Path, split: str) -> list[dict[str, Any]]:
    """The photos of a boxes file in one split (all, train or dev)."""
    if split not in SPLITS:
        raise InvalidInput(f"split must be one of {', '.join(SPLITS)}", field="split")
    try:
        photos = json.loads(boxes_file.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {boxes_file}: {exc}", field="boxes") from exc
    if not isinstance(photos, list):
        raise InvalidInput(f"{boxes_file} is not a list of photos with boxes", field="boxes")
    return [p for p in photos if split == "all" or photo_split(p["image"]) == split]


def true_boxes(photo: dict[str, Any]) -> list[tuple[str, list[int]]]:
    """(group, box) of the photo's garments that Vitrine finds (not belts, glasses...)."""
    return [(DATASET_GROUPS[b["label"]], b["bbox_xyxy"]) for b in photo["boxes"] if b["label"] in DATASET_GROUPS]


Counts = dict[str, dict[str, int]]


def new_counts() -> Counts:
    return {g: {"gt": 0, "found": 0, "predicted": 0} for g in GROUPS}


def count_matches(truth: list[tuple[str, list[int]]], predicted: list[tuple[str, Box]], counts: Counts) -> None:
    """Adds one photo: a true box is found by a predicted box of its group at IoU >= 0.5, each used once."""
    for group, _ in truth:
        counts[group]["gt"] += 1
    for group, _ in predicted:
        if group in counts:
            counts[group]["predicted"] += 1
    used: set[int] = set()
    for group, box in truth:
        best = max(((iou(p_box, box), i) for i, (p_group, p_box) in enumerate(predicted)
                    if p_group == group and i not in used), default=(0.0, -1))
        if best[0] >= IOU:
            used.add(best[1])
            counts[group]["found"] += 1


def rates(counts: Counts) -> dict[str, dict[str, Any]]:
    return {group: {"boxes": c["gt"], "predicted": c["predicted"],
                    "recall": round(c["found"] / c["gt"], 4) if c["gt"] else None,
                    "precision": round(c["found"] / c["predicted"], 4) if c["predicted"] else None}
            for group, c in counts.items()}


def rates_of(photos: list[dict[str, Any]], predicted: list[list[tuple[str, Box]]]) -> dict[str, dict[str, Any]]:
    """Recall and precision per group of these boxes (a list per photo) on these photos."""
    counts = new_counts()
    for photo, shown in zip(photos, predicted, strict=True):
        count_matches(true_boxes(photo), shown, counts)
    return rates(counts)


def evaluate_looks(finder: LookFinder, boxes_file: Path, *, limit: int | None = None, split: str = "all",
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    photos = read_photos(boxes_file, split)
    photos = photos[:limit] if limit else photos
    counts = new_counts()
    labelled = same_group = 0
    worn: list[str] = []  # photos with garment boxes, so with somebody to find
    missed: list[str] = []
    started = time.perf_counter()
    for n, photo in enumerate(photos):
        look = finder.find((boxes_file.parent / photo["image"]).read_bytes(), collection=None)
        truth = true_boxes(photo)
        if truth:
            worn.append(photo["image"])
            if not look.people:
                missed.append(photo["image"])
        predicted = [(g.group, g.box) for g in look.garments]
        count_matches(truth, predicted, counts)
        for group, box in truth:  # label accuracy: the best-overlapping box of any group, is its group right?
            overlaps = [(iou(p_box, box), p_group) for p_group, p_box in predicted]
            if overlaps and max(overlaps)[0] >= IOU:
                labelled += 1
                same_group += max(overlaps)[1] == group
        if progress is not None:
            progress(n + 1, len(photos))
    elapsed = time.perf_counter() - started
    return {"photos": len(photos), "split": split, "iou": IOU, "groups": rates(counts),
            "group_label_accuracy": round(same_group / labelled, 4) if labelled else None,
            "people_found": {"photos": len(worn), "found": len(worn) - len(missed), "missed": missed},
            "photos_per_s": round(len(photos) / elapsed, 2) if elapsed else None}
