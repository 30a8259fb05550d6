"""Garment regions derived from a person's body landmarks, as pure functions.

Regions: upper body (tops, outerwear), lower body (trousers, skirts, shorts), full body (dresses,
jumpsuits), feet (shoes). Each needs its key landmarks to be visible and inside the photo; the box's
width is then tightened to the person's segmented pixels in that band. Which regions become
garments (a dress, or a top and a skirt) is decided later, by the labeller.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitrine.arrays import Array
from vitrine.search.words import tokens
from vitrine.vision.people import Person

Box = tuple[int, int, int, int]

NOSE, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW = 0, 11, 12, 13, 14
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
L_HEEL, R_HEEL, L_FOOT, R_FOOT = 29, 30, 31, 32
VISIBLE = 0.5
MIN_SIDE_PX = 24
MIN_PERSON_SHARE = 0.25  # at least this much of a region must be the person's pixels (else: hidden)

# Garment groups by the category words the labeller chooses among.
GROUP_WORDS: dict[str, tuple[str, ...]] = {
    "dress": ("dress", "jumpsuit", "romper", "playsuit", "gown"),
    "outerwear": ("coat", "jacket", "blazer", "parka", "cape", "outdoor"),
    "top": ("t-shirt", "tee", "shirt", "blouse", "top", "sweater", "cardigan", "hoodie", "sweatshirt", "vest",
            "bodysuit", "bra", "polo", "tank", "jumper", "knit"),
    "bottom": ("trousers", "pants", "jeans", "shorts", "skirt", "leggings", "tights", "joggers", "chinos"),
    "shoes": ("shoes", "sneakers", "boots", "sandals", "heels", "flip flops", "loafers", "pumps", "trainers",
              "flats", "slippers"),
    "bag": ("bag", "handbag", "backpack", "purse", "wallet", "clutch", "tote"),
}

_GROUP_OF_WORD = {tokens(w)[-1]: g for g, words in GROUP_WORDS.items() for w in words if tokens(w)}


def garment_group(category: str) -> str | None:
    """"Hoodies & Sweatshirts" -> top, "Casual Shoes" -> shoes, "Watches" -> None: the last word that names a
    group decides ("Shirt Dress" is a dress)."""
    for word in reversed(tokens(category)):
        if word in _GROUP_OF_WORD:
            return _GROUP_OF_WORD[word]
    return None


@dataclass(frozen=True)
class Region:
    kind: str  # upper, lower, full, feet
    box: Box


def _visible(person: Person, *indices: int, width: int, height: int) -> bool:
    for i in indices:
        x, y, v = person.point(i)
        if v < VISIBLE or not (0 <= x < width and 0 <= y < height):
            return False
    return True


def _either_visible(person: Person, pair: tuple[int, int], width: int, height: int) -> bool:
    return any(_visible(person, i, width=width, height=height) for i in pair)


def _ys(person: Person, *indices: int) -> float:
    return float(np.mean([person.point(i)[1] for i in indices if person.point(i)[2] >= VISIBLE] or
                         [person.point(i)[1] for i in indices]))


def _xs(person: Person, *indices: int) -> list[float]:
    return [person.point(i)[0] for i in indices if person.point(i)[2] >= VISIBLE]


def body_regions(person: Person, width: int, height: int) -> list[Region]:
    """The garment regions this person's visible body allows, in the photo's pixels."""
    regions: list[Region] = []
    if not _either_visible(person, (L_SHOULDER, R_SHOULDER), width, height):
        return regions
    shoulder_y = _ys(person, L_SHOULDER, R_SHOULDER)
    hips_seen = _either_visible(person, (L_HIP, R_HIP), width, height)
    if hips_seen:
        hip_y = _ys(person, L_HIP, R_HIP)
    elif _ys(person, L_HIP, R_HIP) >= height:  # waist up: the hips are below the photo, the top runs off it
        hip_y = float(height) + 0.06 * max(height - shoulder_y, 8.0)
    else:  # hips hidden in the photo (a table, a bag): the top ends about 1.3 shoulder widths down
        shoulders = _xs(person, L_SHOULDER, R_SHOULDER)
        if len(shoulders) < 2:
            return regions
        hip_y = min(float(height), shoulder_y + 1.3 * abs(shoulders[1] - shoulders[0]))
    torso = max(hip_y - shoulder_y, 8.0)
    shoulder_xs = _xs(person, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_HIP, R_HIP)
    margin = 0.08 * torso
    upper = (min(shoulder_xs) - margin, shoulder_y - 0.15 * torso, max(shoulder_xs) + margin, hip_y - 0.06 * torso)
    regions.append(Region("upper", _fit(upper, person.mask, width, height)))

    knees_seen = hips_seen and _either_visible(person, (L_KNEE, R_KNEE), width, height)
    ankles_seen = _either_visible(person, (L_ANKLE, R_ANKLE), width, height)
    if knees_seen:
        knee_y = _ys(person, L_KNEE, R_KNEE)
        bottom_y = _ys(person, L_ANKLE, R_ANKLE) if ankles_seen else knee_y + 0.3 * torso
        leg_xs = _xs(person, L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE)
        leg_margin = 0.12 * torso
        lower = (min(leg_xs) - leg_margin, hip_y - 0.1 * torso, max(leg_xs) + leg_margin, bottom_y)
        regions.append(Region("lower", _fit(lower, person.mask, width, height)))
        full_bottom = knee_y + 0.2 * max(bottom_y - knee_y, 0.0)
        full = (min(shoulder_xs + leg_xs) - margin, shoulder_y - 0.15 * torso,
                max(shoulder_xs + leg_xs) + margin, full_bottom)
        regions.append(Region("full", _fit(full, person.mask, width, height)))
    if ankles_seen and hips_seen:
        feet = [person.point(i) for i in (L_ANKLE, R_ANKLE, L_HEEL, R_HEEL, L_FOOT, R_FOOT)]
        seen = [(x, y) for x, y, v in feet if v >= VISIBLE * 0.6]
        if seen:
            xs, ys = [p[0] for p in seen], [p[1] for p in seen]
            pad = max(0.12 * torso, 6.0)
            box = (min(xs) - pad, min(ys), max(xs) + pad, max(ys) + 0.6 * pad)
            regions.append(Region("feet", _clip(box, width, height)))
    return [r for r in regions if _big_enough(r.box) and _mostly_person(r, person.mask)]


def inner_top(box: Box, person: Person) -> Box | None:
    """What shows of a top under an open coat: the upper-body box, a little narrower."""
    inset = int(0.08 * (box[2] - box[0]))
    inner = (box[0] + inset, box[1], box[2] - inset, box[3])
    return inner if _big_enough(inner) else None


def skirt_length(box: Box, person: Person, width: int, height: int) -> Box:
    """A lower-body box for a skirt or shorts: from the waist (a quarter of the hip-knee length above the
    hips) to just above the knees, a little wider than the legs (measured on street photos with boxes)."""
    hip_y, knee_y = _ys(person, L_HIP, R_HIP), _ys(person, L_KNEE, R_KNEE)
    length = max(knee_y - hip_y, 8.0)
    x0, _, x1, _ = box
    flare = 0.1 * (x1 - x0)
    return _clip((x0 - flare, hip_y - 0.25 * length, x1 + flare, hip_y + 0.95 * length), width, height)


def move_edges(box: Box, moves: tuple[float, float, float, float] | Array, width: int, height: int) -> Box:
    """`box` with each edge (left, top, right, bottom) moved by `moves`, in the box's width and height, kept in
    the photo."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    return (max(0, round(x0 + float(moves[0]) * w)), max(0, round(y0 + float(moves[1]) * h)),
            min(width, round(x1 + float(moves[2]) * w)), min(height, round(y1 + float(moves[3]) * h)))


def _clip(box: tuple[float, float, float, float], width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    return (max(0, int(x0)), max(0, int(y0)), min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1))))


def _fit(box: tuple[float, float, float, float], mask: Array, width: int, height: int) -> Box:
    """Clips to the photo, then narrows the width to the person's pixels in the box's rows."""
    x0, y0, x1, y1 = _clip(box, width, height)
    band = mask[y0:y1, x0:x1]
    columns = np.flatnonzero(band.sum(0) > max(2, 0.03 * (y1 - y0)))
    if len(columns) >= MIN_SIDE_PX:
        x0, x1 = x0 + int(columns[0]), x0 + int(columns[-1]) + 1
    return (x0, y0, x1, y1)


def _big_enough(box: Box) -> bool:
    return box[2] - box[0] >= MIN_SIDE_PX and box[3] - box[1] >= MIN_SIDE_PX


def _mostly_person(region: Region, mask: Array) -> bool:
    if region.kind == "feet":  # shoes are often outside the segmentation
        return True
    x0, y0, x1, y1 = region.box
    return bool(mask[y0:y1, x0:x1].mean() >= MIN_PERSON_SHARE) if (x1 > x0 and y1 > y0) else False


def iou(a: Box | list[int], b: Box | list[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
