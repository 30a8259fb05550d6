"""What a box somebody draws on a look holds, when they do not say (a garment the look missed, often a bag).

Read zero-shot from the crop alone, the group is right for half of the ccp dev boxes: a carried bag's crop holds
hips and reads as a bottom, a top's as a coat. Where the box lies on the person says much of what the crop does
not, so a one-vs-rest logistic model per group reads:
- the crop's zero-shot shares of each group's words (and their logs);
- where the box lies: in the photo, within the person's pixels in its columns, and within everybody's;
- how much of it is person;
- the first principal components of the crop's CNN features.
It is learned from the true boxes of the train split of street photos (`vitrine train-look`,
`drawn_box_training.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.vision.decisions import cnn_view, read_model
from vitrine.vision.garments import GROUP_WORDS, Box

MODEL_FILE = Path(__file__).with_name("look-drawn-boxes.npz")
GROUPS = tuple(GROUP_WORDS)
GEOMETRY = ("centre_y", "height", "width", "centre_x", "log_aspect",
            "person_centre_y", "person_height", "person_top", "person_bottom",
            "everyone_centre_y", "everyone_height", "everyone_top", "everyone_bottom", "person_share")


def box_geometry(box: Box, everyone: Array | None, width: int, height: int) -> Array:
    """The GEOMETRY of a box: in the photo's width and height, then in the height of the person's pixels in
    the box's columns and of everybody's pixels in the photo (their top at 0, their bottom at 1)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cy = (y0 + y1) / 2
    person = everyone if everyone is not None else np.ones((height, width), dtype=bool)
    values = [cy / height, h / height, w / width, (x0 + x1) / 2 / width, float(np.log(w / h))]
    for rows in (person[:, x0:x1].any(axis=1), person.any(axis=1)):
        ys = np.flatnonzero(rows)
        top, bottom = (int(ys[0]), int(ys[-1]) + 1) if len(ys) else (0, height)
        span = max(bottom - top, 1)
        values += [(cy - top) / span, h / span, (y0 - top) / span, (y1 - top) / span]
    values.append(float(person[y0:y1, x0:x1].mean()))
    return np.array(values, dtype=np.float32)


def evidence_vector(centre: Array, basis: Array, raw: Array, shares: Array, geometry: Array) -> Array:
    """Shares and their logs, the geometry, then the CNN features' principal components."""
    vector: Array = np.concatenate([shares, np.log(shares + 1e-3), geometry,
                                    (cnn_view(raw, len(centre)) - centre) @ basis.T]).astype(np.float32)
    return vector


@dataclass
class DrawnBoxModel:
    mean: Array  # (n,) of the evidence vector
    scale: Array  # (n,)
    centre: Array  # (CNN_DIM,) of the principal components
    basis: Array  # (k, CNN_DIM)
    weights: Array  # (len(GROUPS), n + 1): weights then bias per group, on standardised evidence
    card: dict[str, Any]

    def scores(self, raw: Array, shares: Array, geometry: Array) -> Array:
        x = (evidence_vector(self.centre, self.basis, raw, shares, geometry) - self.mean) / self.scale
        scores: Array = self.weights[:, :-1] @ x + self.weights[:, -1]
        return scores

    def group(self, raw: Array, shares: Array, geometry: Array) -> str:
        return GROUPS[int(np.argmax(self.scores(raw, shares, geometry)))]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, mean=self.mean, scale=self.scale, centre=self.centre,
                            basis=self.basis.astype(np.float32), weights=self.weights)
        path.with_suffix(".json").write_text(json.dumps(self.card, indent=2) + "\n")


def load(path: Path = MODEL_FILE) -> DrawnBoxModel:
    card, arrays = read_model(path, "the drawn-box model")
    return DrawnBoxModel(mean=arrays["mean"], scale=arrays["scale"], centre=arrays["centre"], basis=arrays["basis"],
                         weights=arrays["weights"], card=card)
