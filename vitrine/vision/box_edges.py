"""Where a garment's box ends: each box the body's landmarks give (a region of `garments.body_regions`, the
coat's reach, the top under an open coat, the skirt's length), its edges moved by a model learned from street
photos with boxes.

The landmarks say where a body is, not where its clothes end: a dress's or a skirt's hem, how far sleeves and a
coat reach, shoes seen from the side. So per garment group a ridge regression reads
- the region the box came from and where the box lies in the photo;
- the body's landmarks from the shoulders down, in the box's own coordinates, and how visible each is;
- the person's pixels on a GRID x GRID grid over the box, widened by PAD on each side;
- the decisions' probabilities (outerwear, a dress, a skirt or shorts);
- the first principal components of the CNN features of the region's crop (read already for the decisions);
and says how far each edge moves, in the box's width and height. It is learned by `vitrine train-look` from the
train split of street photos (`box_edge_training.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.vision.decisions import DECISIONS, cnn_view, read_model
from vitrine.vision.garments import MIN_SIDE_PX, Box, iou, move_edges
from vitrine.vision.people import Person

MODEL_FILE = Path(__file__).with_name("look-box-edges.npz")
GROUPS = ("top", "bottom", "dress", "outerwear", "shoes")  # the groups whose boxes come from the body
KINDS = ("upper", "inner", "coat", "lower", "short", "full", "feet")
SOURCE = {"coat": "upper", "inner": "upper", "short": "lower"}  # the region whose crop's features a box reads
LANDMARKS = tuple(range(11, 33))  # shoulders to feet
GRID = 8
PAD = 0.25
MAX_MOVE = 1.0  # no edge moves further than the box's own width or height
MIN_KEPT_IOU = 0.3  # a moved box overlapping its own less than this: the model reads a body unlike any it learned from
GEOMETRY = ("log_aspect", "width", "height", "left", "top", "right", "bottom")


def source(kind: str) -> str:
    """The body region whose crop's features a box of this kind reads."""
    return SOURCE.get(kind, kind)


def person_grid(mask: Array, box: Box, width: int, height: int) -> Array:
    """The share of the person's pixels in each cell of a GRID x GRID grid over `box` widened by PAD on each
    side (sampled at 4 x 4 points a cell; a point outside the photo counts as not the person)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    xs = np.linspace(x0 - PAD * w, x1 + PAD * w, 4 * GRID)
    ys = np.linspace(y0 - PAD * h, y1 + PAD * h, 4 * GRID)
    inside = ((ys >= 0) & (ys < height))[:, None] & ((xs >= 0) & (xs < width))[None, :]
    columns = np.clip(xs, 0, width - 1).astype(int)
    rows = np.clip(ys, 0, height - 1).astype(int)
    samples = mask[rows][:, columns].astype(np.float32) * inside
    grid: Array = samples.reshape(GRID, 4, GRID, 4).mean(axis=(1, 3))
    return grid


def box_evidence(box: Box, kind: str, person: Person, width: int, height: int,
                 probabilities: dict[str, float]) -> Array:
    """What the model reads of one box but its crop's features (see the module's docstring)."""
    x0, y0, x1, y1 = box
    w, h = max(x1 - x0, 1), max(y1 - y0, 1)
    marks = person.landmarks[list(LANDMARKS)]
    evidence: Array = np.concatenate([
        np.eye(len(KINDS), dtype=np.float32)[KINDS.index(kind)],
        [np.log(w / h), w / width, h / height, x0 / width, y0 / height, x1 / width, y1 / height],
        np.column_stack([(marks[:, 0] - x0) / w, (marks[:, 1] - y0) / h, marks[:, 2]]).ravel(),
        person_grid(person.mask, box, width, height).ravel(),
        [probabilities.get(name, 0.0) for name in DECISIONS],
    ]).astype(np.float32)
    return evidence


def evidence_names() -> list[str]:
    return ([f"is_{kind}" for kind in KINDS] + list(GEOMETRY)
            + [f"landmark{i}_{axis}" for i in LANDMARKS for axis in ("x", "y", "visibility")]
            + [f"person_{row}_{column}" for row in range(GRID) for column in range(GRID)]
            + [f"p_{name}" for name in DECISIONS])


def moved(box: Box, moves: Array, width: int, height: int) -> Box:
    """`box` with its edges moved as the model says, none by more than MAX_MOVE of the box's width or height; as it
    was where the moved box would leave it (IoU < MIN_KEPT_IOU). On the street photos the model learned from that
    is 8 boxes of 2,145, none found either way in sample; on `messi5.jpg`, a footballer sliding, it took the dress box
    off him onto the pitch."""
    new = move_edges(box, np.clip(moves, -MAX_MOVE, MAX_MOVE), width, height)
    return new if iou(new, box) >= MIN_KEPT_IOU else box


@dataclass
class BoxEdgeModel:
    centre: Array  # (CNN_DIM,) of the principal components
    basis: Array  # (k, CNN_DIM)
    mean: Array  # (len(GROUPS), n): of the evidence, with the components, per group
    scale: Array  # (len(GROUPS), n)
    weights: Array  # (len(GROUPS), n, 4): on standardised evidence, per edge
    bias: Array  # (len(GROUPS), 4)
    card: dict[str, Any]

    def vector(self, evidence: Array, raw: Array | None) -> Array:
        vector: Array = np.concatenate([evidence, (cnn_view(raw, len(self.centre)) - self.centre) @ self.basis.T])
        return vector

    def moves(self, group: str, evidence: Array, raw: Array | None) -> Array:
        g = GROUPS.index(group)
        x = (self.vector(evidence, raw) - self.mean[g]) / self.scale[g]
        found: Array = x @ self.weights[g] + self.bias[g]
        return found

    def refine(self, group: str, kind: str, box: Box, person: Person, probabilities: dict[str, float],
               raw: Array | None, width: int, height: int) -> Box:
        """The box with its edges where the model puts them; as it was for a group it does not know, or where
        the moved box would be too small to be a garment."""
        if group not in GROUPS:
            return box
        evidence = box_evidence(box, kind, person, width, height, probabilities)
        new = moved(box, self.moves(group, evidence, raw), width, height)
        return new if new[2] - new[0] >= MIN_SIDE_PX and new[3] - new[1] >= MIN_SIDE_PX else box

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, centre=self.centre, basis=self.basis, mean=self.mean, scale=self.scale,
                            weights=self.weights, bias=self.bias)
        path.with_suffix(".json").write_text(json.dumps(self.card, indent=2) + "\n")


def load(path: Path = MODEL_FILE) -> BoxEdgeModel:
    card, arrays = read_model(path, "the box edge model")
    return BoxEdgeModel(centre=arrays["centre"], basis=arrays["basis"], mean=arrays["mean"], scale=arrays["scale"],
                        weights=arrays["weights"], bias=arrays["bias"], card=card)
