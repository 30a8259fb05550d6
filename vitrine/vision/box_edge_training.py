"""`vitrine train-look`, its third model: where a garment's box ends (`box_edges.py`), learned from the train split
of street photos with boxes (the dev split stays for `vitrine eval-look`).

The boxes are those shop the look shows: the people and evidence gathered for the decisions, the decisions just
learned. Each box is paired with the true box of its group that it overlaps most, when they overlap at IoU >=
MIN_IOU (a box far from any is a wrong decision, not a misplaced edge), and a ridge regression per group learns how
far each edge moves. The number of principal components and the L2 weight are those whose moved boxes find the
most true boxes (mean recall over the groups at IoU >= 0.5), out of fold (five folds by photo). A group whose
boxes, moved, find fewer true boxes out of fold than unmoved is left unmoved (few photos to learn from).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.errors import InvalidInput
from vitrine.vision.box_edges import GROUPS, BoxEdgeModel, box_evidence, evidence_names, moved, source
from vitrine.vision.decision_training import Person, relative_offsets
from vitrine.vision.decisions import DecisionModel, choose, cnn_view
from vitrine.vision.evaluation import rates_of, true_boxes
from vitrine.vision.garments import Box, iou

COMPONENTS = (8, 16, 32)
L2 = (100.0, 300.0, 1000.0)
FOLDS = 5
MIN_IOU = 0.25


@dataclass
class Example:
    photo: int  # index among the train photos
    group: str
    box: Box
    width: int
    height: int
    evidence: Array  # box_evidence
    raw: Array | None  # raw built-in features of the box's source region's crop
    target: Array | None  # how far the edges of the true box it overlaps most lie, when at IoU >= MIN_IOU


def examples(photos: list[dict[str, Any]], people: list[Person], decisions: DecisionModel) -> list[Example]:
    """Every box the decisions show on the train photos' people, with its evidence and its target."""
    found = []
    for person in people:
        evidence = person.evidence
        boxes = dict(evidence.boxes)
        if "upper" in boxes:
            boxes["coat"] = decisions.outerwear_box(boxes["upper"], person.width, person.height)
        p = decisions.probabilities(decisions.evidence(evidence.features, evidence.shares, evidence.gaps))
        truth = true_boxes(photos[person.photo])
        for group, kind in choose(set(boxes), p, decisions.thresholds):
            if group not in GROUPS:
                continue
            box = boxes[kind]
            same = [b for g, b in truth if g == group]
            best = max(same, key=lambda b: iou(box, b), default=None)
            target = np.clip(relative_offsets(box, best), -1.0, 1.0) \
                if best is not None and iou(box, best) >= MIN_IOU else None
            found.append(Example(person.photo, group, box, person.width, person.height,
                                 box_evidence(box, kind, person.body, person.width, person.height, p),
                                 evidence.features.get(source(kind)), target))
    return found


def fit(found: list[Example], components: int, l2: float) -> BoxEdgeModel:
    cnn = np.array([cnn_view(e.raw, 0) for e in found if e.raw is not None])
    centre = cnn.mean(axis=0)
    basis = np.linalg.svd(cnn - centre, full_matrices=False)[2][:components]
    model = BoxEdgeModel(centre=centre.astype(np.float32), basis=basis.astype(np.float32), mean=np.empty(0),
                         scale=np.empty(0), weights=np.empty(0), bias=np.empty(0), card={})
    n = len(found[0].evidence) + len(basis)  # fewer components than asked when there are fewer crops
    mean, scale = np.zeros((len(GROUPS), n)), np.ones((len(GROUPS), n))
    weights, bias = np.zeros((len(GROUPS), n, 4)), np.zeros((len(GROUPS), 4))
    for g, group in enumerate(GROUPS):
        paired = [e for e in found if e.group == group and e.target is not None]
        if not paired:  # nothing to learn from: the boxes stay where they are
            continue
        x = np.array([model.vector(e.evidence, e.raw) for e in paired], dtype=np.float64)
        y = np.array([e.target for e in paired])
        mean[g], scale[g] = x.mean(axis=0), x.std(axis=0)
        scale[g][scale[g] < 1e-6] = 1.0
        x = (x - mean[g]) / scale[g]
        bias[g] = y.mean(axis=0)
        weights[g] = np.linalg.solve(x.T @ x + l2 * np.eye(n), x.T @ (y - bias[g]))
    model.mean, model.scale = mean.astype(np.float32), scale.astype(np.float32)
    model.weights, model.bias = weights.astype(np.float32), bias.astype(np.float32)
    return model


def recall(photos: list[dict[str, Any]], found: list[Example], boxes: list[Box]) -> dict[str, float]:
    """Recall per group at IoU >= 0.5 on these photos, with these boxes for the examples, as `eval-look` counts."""
    predicted: list[list[tuple[str, Box]]] = [[] for _ in photos]
    for example, box in zip(found, boxes, strict=True):
        predicted[example.photo].append((example.group, box))
    return {g: m["recall"] or 0.0 for g, m in rates_of(photos, predicted).items() if g in GROUPS}


def out_of_fold(found: list[Example], folds: Array, components: int, l2: float) -> list[Box]:
    """Each box as moved by the model fitted on the other folds."""
    boxes = [e.box for e in found]
    for fold in range(FOLDS):
        kept = [e for e, f in zip(found, folds, strict=True) if f != fold]
        if not kept:
            continue
        model = fit(kept, components, l2)
        for i in np.flatnonzero(folds == fold):
            e = found[i]
            boxes[i] = moved(e.box, model.moves(e.group, e.evidence, e.raw), e.width, e.height)
    return boxes


def train_box_edges(photos: list[dict[str, Any]], people: list[Person], decisions: DecisionModel,
                    boxes_file: Path) -> BoxEdgeModel:
    started = time.perf_counter()
    found = examples(photos, people, decisions)
    if not any(e.target is not None for e in found):
        raise InvalidInput(f"no box shown on the train photos of {boxes_file} is near a true one", field="boxes")
    fold_of_photo = np.random.default_rng(0).permutation(len(photos)) % FOLDS
    folds = fold_of_photo[[e.photo for e in found]]
    before = recall(photos, found, [e.box for e in found])
    tried = {(k, l2): recall(photos, found, out_of_fold(found, folds, k, l2))
             for k, l2 in itertools.product(COMPONENTS, L2)}
    (components, l2), chosen = max(tried.items(), key=lambda item: float(np.mean(list(item[1].values()))))
    model = fit(found, components, l2)
    unmoved = [g for g in GROUPS if chosen[g] < before[g]]  # moving these lost boxes out of fold: leave them be
    for group in unmoved:
        model.weights[GROUPS.index(group)], model.bias[GROUPS.index(group)] = 0.0, 0.0
    model.card = {
        "name": "look-box-edges", "trained_on": boxes_file.name, "split": "train", "photos": len(photos),
        "command": f"vitrine train-look {boxes_file.name}", "image_model": decisions.card.get("image_model"),
        "boxes": {g: sum(1 for e in found if e.group == g) for g in GROUPS},
        "paired": {g: sum(1 for e in found if e.group == g and e.target is not None) for g in GROUPS},
        "min_iou": MIN_IOU, "evidence": evidence_names() + [f"pc{i}" for i in range(len(model.basis))],
        "components": len(model.basis), "l2": l2, "folds": FOLDS,
        "out_of_fold_recall": {"unmoved": {g: round(v, 4) for g, v in before.items()},
                               "moved": {g: round(v, 4) for g, v in chosen.items()}},
        "left_unmoved": unmoved,
        "seconds": round(time.perf_counter() - started, 1), "trained_at": time.strftime("%Y-%m-%d"),
    }
    return model
