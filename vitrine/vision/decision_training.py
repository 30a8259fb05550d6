"""`vitrine train-look`: the garment decisions (`decisions.py`) learned from street photos with boxes
(the ccp/boxes.json format), on the train split only: the dev split stays for `vitrine eval-look`.

Each train photo's people are found and their evidence gathered once, as shop the look does. Then:
- how far a coat reaches: the median offsets of each edge of the true outerwear boxes from the
  upper-body box;
- what each person wears, as the true boxes say: a coat over the upper body, a dress over the full body,
  a skirt or shorts over the lower body;
- principal components of the crops' CNN features, and three L2-regularised logistic regressions
  (Newton's method: a few dozen features, a few hundred people);
- the thresholds: those with the best mean F1 over tops, bottoms, dresses and outerwear at IoU >= 0.5,
  scored with out-of-fold probabilities (five folds by photo), through the same `choose` and matching
  as shop the look and `eval-look`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.errors import InvalidInput
from vitrine.models.heads import base_heads_path
from vitrine.models.imaging import decode_image
from vitrine.vision.decisions import (
    CROPS,
    DECISIONS,
    HAND_MADE,
    DecisionModel,
    Thresholds,
    choose,
    cnn_view,
    coat_box,
    evidence_vector,
)
from vitrine.vision.evaluation import DATASET_GROUPS, rates_of, read_photos, true_boxes
from vitrine.vision.garments import Box, iou
from vitrine.vision.look import LookFinder, PersonEvidence
from vitrine.vision.people import Person as Body

COMPONENTS = 8  # principal components per crop
L2 = 1.0
FOLDS = 5
PRESENT_IOU = {"outerwear": 0.3, "dress": 0.3, "short": 0.2}  # a true box this close to the region: worn there
GRID = {"outerwear": (0.3, 0.35, 0.4, 0.5), "dress": (0.25, 0.3, 0.4, 0.5), "dress_only": (0.6, 0.8, 1.1),
        "short": (0.3, 0.4, 0.5), "trousers": (0.0, 0.05)}
SCORED = ("top", "bottom", "dress", "outerwear")
Progress = Callable[[int, int], None]


@dataclass
class Person:
    photo: int  # index among the train photos
    width: int
    height: int
    evidence: PersonEvidence
    body: Body  # the landmarks and pixels the evidence was read from


def gather(finder: LookFinder, boxes_file: Path, *, limit: int | None = None,
           progress: Progress | None = None) -> tuple[list[dict[str, Any]], list[Person]]:
    """The train photos and the evidence of every person found in them."""
    photos = read_photos(boxes_file, "train")[:limit] if limit else read_photos(boxes_file, "train")
    if not photos:
        raise InvalidInput(f"{boxes_file} has no photos in its train split", field="boxes")
    people: list[Person] = []
    for n, photo in enumerate(photos):
        image = decode_image((boxes_file.parent / photo["image"]).read_bytes(),
                             max_pixels=finder.engine.settings.max_image_pixels)
        rgb = np.asarray(image, dtype=np.uint8)
        for person in finder.detector.detect(rgb):
            people.append(Person(n, image.width, image.height, finder.evidence(rgb, person), person))
        if progress is not None:
            progress(n + 1, len(photos))
    return photos, people


def relative_offsets(region: Box, truth: list[int] | Box) -> Array:
    """The true box's edges from the region's, in the region's width and height."""
    w, h = max(region[2] - region[0], 1), max(region[3] - region[1], 1)
    return np.array([(truth[0] - region[0]) / w, (truth[1] - region[1]) / h,
                     (truth[2] - region[2]) / w, (truth[3] - region[3]) / h])


def outerwear_reach(photos: list[dict[str, Any]], people: list[Person]) -> tuple[float, float, float, float]:
    offsets = []
    for n, photo in enumerate(photos):
        uppers = [p.evidence.boxes["upper"] for p in people if p.photo == n and "upper" in p.evidence.boxes]
        for group, box in true_boxes(photo):
            if group == "outerwear" and uppers:
                best = max(uppers, key=lambda u: iou(u, box))
                if iou(best, box) >= 0.1:
                    offsets.append(relative_offsets(best, box))
    if not offsets:
        return (0.0, 0.0, 0.0, 0.0)
    reach = np.median(np.array(offsets), axis=0)
    return (float(reach[0]), float(reach[1]), float(reach[2]), float(reach[3]))


def worn(photo: dict[str, Any], person: Person, reach: tuple[float, float, float, float]) -> dict[str, bool | None]:
    """What the true boxes say this person wears (None: the region is not visible)."""
    boxes = person.evidence.boxes
    labelled = [(DATASET_GROUPS.get(b["label"]), b["label"], b["bbox_xyxy"]) for b in photo["boxes"]]

    def near(region: str, wanted: Callable[[str | None, str], bool], decision: str) -> bool | None:
        if region not in boxes:
            return None
        box = coat_box(boxes[region], reach, person.width, person.height) if decision == "outerwear" \
            else boxes[region]
        return any(wanted(g, label) and iou(box, b) >= PRESENT_IOU[decision] for g, label, b in labelled)

    return {"outerwear": near("upper", lambda g, _: g == "outerwear", "outerwear"),
            "dress": near("full", lambda g, _: g == "dress", "dress"),
            "short": near("lower", lambda _, label: label in ("skirt", "shorts"), "short")}


def fit_logistic(x: Array, y: Array, l2: float = L2, steps: int = 50) -> Array:
    """Weights then bias of an L2-regularised logistic regression (the bias is not regularised)."""
    design = np.hstack([x, np.ones((len(x), 1))]).astype(np.float64)
    w = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        gradient = design.T @ (p - y) + penalty * w
        hessian = (design.T * (p * (1 - p))) @ design + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return w.astype(np.float32)


def _components(people: list[Person], k: int) -> dict[str, tuple[Array, Array]]:
    found = {}
    for crop in CROPS:
        rows = np.array([cnn_view(p.evidence.features[crop], 0) for p in people if crop in p.evidence.features])
        if len(rows) <= k:
            continue
        centre = rows.mean(axis=0)
        _, _, vt = np.linalg.svd(rows - centre, full_matrices=False)
        found[crop] = (centre.astype(np.float32), vt[:k].astype(np.float32))
    return found


def _probabilities(weights: dict[str, Array], x: Array) -> list[dict[str, float]]:
    scores = {name: 1.0 / (1.0 + np.exp(-(x @ w[:-1] + w[-1]))) for name, w in weights.items()}
    return [{name: float(scores[name][i]) for name in weights} for i in range(len(x))]


def _fit(x: Array, labels: list[dict[str, bool | None]], rows: Array) -> dict[str, Array]:
    weights = {}
    for name in DECISIONS:
        use = [i for i in rows if labels[i][name] is not None]
        y = np.array([bool(labels[i][name]) for i in use], dtype=np.float64)
        weights[name] = fit_logistic(x[use], y)
    return weights


def score(photos: list[dict[str, Any]], people: list[Person], probabilities: list[dict[str, float]],
          thresholds: Thresholds, reach: tuple[float, float, float, float]) -> dict[str, dict[str, Any]]:
    """Recall and precision per group of these decisions on these photos, as `eval-look` counts them."""
    predicted: list[list[tuple[str, Box]]] = [[] for _ in photos]
    for person, p in zip(people, probabilities, strict=True):
        boxes = dict(person.evidence.boxes)
        if "upper" in boxes:
            boxes["coat"] = coat_box(boxes["upper"], reach, person.width, person.height)
        predicted[person.photo] += [(group, boxes[kind]) for group, kind in choose(set(boxes), p, thresholds)]
    return rates_of(photos, predicted)


def mean_f1(result: dict[str, dict[str, Any]]) -> float:
    f1 = []
    for group in SCORED:
        r, p = result[group]["recall"] or 0.0, result[group]["precision"] or 0.0
        f1.append(2 * r * p / (r + p) if r + p else 0.0)
    return float(np.mean(f1))


def train_decisions(finder: LookFinder, boxes_file: Path, photos: list[dict[str, Any]], people: list[Person], *,
                    components: int = COMPONENTS) -> DecisionModel:
    """The decisions, from the train photos and their people as `gather` read them."""
    started = time.perf_counter()
    if not people:
        raise InvalidInput(f"nobody was found in the train photos of {boxes_file}", field="boxes")
    reach = outerwear_reach(photos, people)
    labels = [worn(photos[p.photo], p, reach) for p in people]
    pcs = _components(people, components)
    raw = np.array([evidence_vector(pcs, p.evidence.features, p.evidence.shares, p.evidence.gaps) for p in people])
    mean, scale = raw.mean(axis=0), raw.std(axis=0)
    scale[scale < 1e-6] = 1.0
    x = (raw - mean) / scale

    # Out-of-fold probabilities for the thresholds, folds by photo.
    order = np.random.default_rng(0).permutation(len(photos))
    fold_of_photo = np.empty(len(photos), dtype=int)
    fold_of_photo[order] = np.arange(len(photos)) % FOLDS
    folds = fold_of_photo[[p.photo for p in people]]
    out_of_fold: list[dict[str, float]] = [{} for _ in people]
    for fold in range(FOLDS):
        held = np.flatnonzero(folds == fold)
        weights = _fit(x, labels, np.flatnonzero(folds != fold))
        for i, p in zip(held, _probabilities(weights, x[held]), strict=True):
            out_of_fold[i] = p
    best: tuple[float, Thresholds, dict[str, Any]] | None = None
    for values in itertools.product(*GRID.values()):
        thresholds = Thresholds(**dict(zip(GRID, values, strict=True)))
        result = score(photos, people, out_of_fold, thresholds, reach)
        if best is None or mean_f1(result) > best[0]:
            best = (mean_f1(result), thresholds, result)
    assert best is not None
    positives = {name: sum(1 for label in labels if label[name]) for name in DECISIONS}
    image_model = finder.engine.image_encoder.spec.name
    card = {
        "name": "look-decisions", "trained_on": str(boxes_file.name), "split": "train", "photos": len(photos),
        "command": f"vitrine train-look {boxes_file.name}",
        "image_model": image_model,
        "zero_shot_shares_from": f"the packaged base model ({base_heads_path(image_model).name})",
        "people": len(people), "positives": positives, "evidence": list(HAND_MADE) + [
            f"{crop}_pc{i}" for crop in pcs for i in range(components)],
        "outerwear_reach": [round(v, 4) for v in reach], "l2": L2, "folds": FOLDS,
        "out_of_fold": {"mean_f1": round(best[0], 4), "groups": best[2]},
        "seconds": round(time.perf_counter() - started, 1), "trained_at": time.strftime("%Y-%m-%d"),
    }
    return DecisionModel(mean=mean.astype(np.float32), scale=scale.astype(np.float32), components=pcs,
                         weights=_fit(x, labels, np.arange(len(people))), thresholds=best[1], outerwear_reach=reach,
                         card=card)
