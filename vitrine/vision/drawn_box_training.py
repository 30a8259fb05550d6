"""`vitrine train-look`, its second model: what a drawn box holds (`drawn_boxes.py`), learned from the true
garment boxes of the train split of street photos (the dev split stays for measuring it).

Each true box is cut from its photo as a drawn box is (`LookFinder.cut`) and its evidence gathered. The number
of principal components and the L2 weight are those with the best out-of-fold accuracy (five folds by photo);
the model is then fitted on every train box.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitrine.arrays import Array
from vitrine.errors import InvalidInput
from vitrine.models.imaging import decode_image
from vitrine.vision.decision_training import fit_logistic
from vitrine.vision.decisions import cnn_view
from vitrine.vision.drawn_boxes import GEOMETRY, GROUPS, DrawnBoxModel, box_geometry, evidence_vector
from vitrine.vision.evaluation import read_photos, true_boxes
from vitrine.vision.look import LookFinder

COMPONENTS = (8, 16, 32)
L2 = (1.0, 10.0)
FOLDS = 5
Progress = Callable[[int, int], None]


@dataclass
class Example:
    photo: int  # index among the train photos
    group: str
    raw: Array  # the crop's raw built-in features
    shares: Array  # zero-shot shares of each group's words, in GROUPS order
    geometry: Array


def gather(finder: LookFinder, boxes_file: Path, *, limit: int | None = None,
           progress: Progress | None = None) -> tuple[int, list[Example]]:
    """How many train photos were read, and every true garment box in them as a drawn box's evidence."""
    photos = read_photos(boxes_file, "train")
    photos = photos[:limit] if limit else photos
    examples = []
    for n, photo in enumerate(photos):
        image = decode_image((boxes_file.parent / photo["image"]).read_bytes(),
                             max_pixels=finder.engine.settings.max_image_pixels)
        rgb = np.asarray(image, dtype=np.uint8)
        everyone = finder.detector.segment(rgb)
        for group, (x0, y0, x1, y1) in true_boxes(photo):
            box = (max(0, x0), max(0, y0), min(image.width, x1), min(image.height, y1))
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            raw = finder.engine.embedder.features(finder.cut(rgb, everyone, box)[0])
            examples.append(Example(n, group, raw, finder.group_shares(raw),
                                    box_geometry(box, everyone, image.width, image.height)))
        if progress is not None:
            progress(n + 1, len(photos))
    return len(photos), examples


def fit(examples: list[Example], components: int, l2: float) -> DrawnBoxModel:
    cnn = np.array([cnn_view(e.raw, 0) for e in examples])
    centre = cnn.mean(axis=0)
    basis = np.linalg.svd(cnn - centre, full_matrices=False)[2][:components]
    evidence = np.array([evidence_vector(centre, basis, e.raw, e.shares, e.geometry) for e in examples])
    mean, scale = evidence.mean(axis=0), evidence.std(axis=0)
    scale[scale < 1e-6] = 1.0
    x = (evidence - mean) / scale
    y = np.array([GROUPS.index(e.group) for e in examples])
    weights = np.stack([fit_logistic(x, (y == g).astype(np.float64), l2) for g in range(len(GROUPS))])
    return DrawnBoxModel(mean=mean.astype(np.float32), scale=scale.astype(np.float32),
                         centre=centre.astype(np.float32), basis=basis.astype(np.float32), weights=weights, card={})


def out_of_fold(examples: list[Example], folds: Array, components: int, l2: float) -> list[str]:
    """Each box's group as read by the model fitted on the other folds."""
    predicted = [""] * len(examples)
    for fold in range(FOLDS):
        held = np.flatnonzero(folds == fold)
        kept = [e for e, f in zip(examples, folds, strict=True) if f != fold]
        if len(held) and kept:
            model = fit(kept, components, l2)
            for i in held:
                predicted[i] = model.group(examples[i].raw, examples[i].shares, examples[i].geometry)
    return predicted


def rates(predicted: list[str], examples: list[Example]) -> dict[str, float]:
    """Share of boxes whose group is read right, overall ("all") and per group."""
    right = np.array([p == e.group for p, e in zip(predicted, examples, strict=True)])
    groups = np.array([e.group for e in examples])
    return {"all": round(float(right.mean()), 4),
            **{g: round(float(right[groups == g].mean()), 4) for g in GROUPS if (groups == g).any()}}


def train_drawn_boxes(finder: LookFinder, boxes_file: Path, *, limit: int | None = None,
                      progress: Progress | None = None) -> DrawnBoxModel:
    started = time.perf_counter()
    photos, examples = gather(finder, boxes_file, limit=limit, progress=progress)
    if len({e.group for e in examples}) < 2:
        raise InvalidInput(f"the train photos of {boxes_file} hold fewer than two garment groups", field="boxes")
    fold_of_photo = np.random.default_rng(0).permutation(photos) % FOLDS
    folds = fold_of_photo[[e.photo for e in examples]]
    tried = {(k, l2): rates(out_of_fold(examples, folds, k, l2), examples)
             for k, l2 in itertools.product(COMPONENTS, L2)}
    (components, l2), chosen = max(tried.items(), key=lambda item: item[1]["all"])
    model = fit(examples, components, l2)
    model.card = {
        "name": "look-drawn-boxes", "trained_on": boxes_file.name, "split": "train", "photos": photos,
        "boxes": {g: sum(1 for e in examples if e.group == g) for g in GROUPS},
        "command": f"vitrine train-look {boxes_file.name}", "image_model": finder.engine.image_encoder.spec.name,
        "evidence": [f"{g}_share" for g in GROUPS] + [f"log_{g}_share" for g in GROUPS] + list(GEOMETRY)
        + [f"pc{i}" for i in range(components)],
        "components": components, "l2": l2, "folds": FOLDS, "out_of_fold_accuracy": chosen,
        "seconds": round(time.perf_counter() - started, 1), "trained_at": time.strftime("%Y-%m-%d"),
    }
    return model
