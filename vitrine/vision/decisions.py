"""Which garments a person wears: small models learned from street photos (ccp's train split).

The body regions say where garments can be. What a person wears there is read from evidence gathered
per person:
- the crops' zero-shot shares under the base model (a dress, outerwear, a skirt or shorts);
- whether the legs show apart in the person's segmentation, from the hips to the ankles (trousers do,
  a dress or a skirt does not, down to its hem);
- how alike the upper and lower crops are, in colour and in CNN features (a dress is one garment);
- which regions are visible;
- the first principal components of each crop's CNN features.

Three logistic models read it: outerwear over the upper body, a dress over the full body, a skirt or
shorts over the lower body. Their thresholds, and how far a coat reaches below the upper-body box,
were chosen on the train split as well (`vitrine train-look`). `choose` turns them into garments.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.errors import ModelUnavailable
from vitrine.models.colour import cnn_part, colour_part
from vitrine.vision import garments as body
from vitrine.vision.garments import Box
from vitrine.vision.people import Person

MODEL_FILE = Path(__file__).with_name("look-decisions.npz")
DECISIONS = ("outerwear", "dress", "short")
CROPS = ("upper", "lower", "full")  # whose CNN features give principal components
LEG_LEVELS = 20  # rows from the hips to the ankles where the segmentation is read
HAND_MADE = ("dress_share", "outerwear_share", "short_share", "log_short_share", "log_dress_share",
             "thighs_apart", "shins_apart", "legs_outside_photo", "upper_lower_colour", "upper_lower_cnn",
             "upper_full_colour", "has_lower", "has_full", "has_feet")


def leg_gaps(person: Person, width: int, height: int) -> Array:
    """For LEG_LEVELS rows from the hips down to the ankles: how many separate runs of the person's pixels
    the row holds inside their box (two legs apart: 2 or more), or -1 where the row is outside the photo."""
    hip_y = body._ys(person, body.L_HIP, body.R_HIP)
    ankle_y = body._ys(person, body.L_ANKLE, body.R_ANKLE)
    x0, _, x1, _ = person.box
    runs = np.full(LEG_LEVELS, -1.0, dtype=np.float32)
    for i, share in enumerate(np.linspace(0.0, 1.0, LEG_LEVELS + 1)[:-1]):
        y = int(hip_y + share * (ankle_y - hip_y))
        if 0 <= y < height:
            row = person.mask[y, max(0, x0):min(width, x1)].astype(np.int8)
            runs[i] = float(np.count_nonzero(np.diff(np.concatenate([[0], row, [0]])) == 1))
    return runs


def _cosine(a: Array, b: Array) -> float:
    return float(a @ b / ((np.linalg.norm(a) * np.linalg.norm(b)) or 1.0))


def hand_made(features: dict[str, Array], shares: dict[str, float], gaps: Array) -> Array:
    """The HAND_MADE evidence of one person: `features` are raw built-in features by region kind."""
    thighs, shins = gaps[2:10], gaps[10:]

    def apart(levels: Array) -> float:
        seen = levels[levels >= 0]
        return float((seen >= 2).mean()) if len(seen) else 0.5

    def similar(a: str, b: str, part: Callable[[Array], Array]) -> float:
        return _cosine(part(features[a]), part(features[b])) if a in features and b in features else 0.0

    dress, outer, short = shares.get("dress", 0.0), shares.get("outerwear", 0.0), shares.get("short", 0.0)
    return np.array([
        dress, outer, short, np.log(short + 1e-3), np.log(dress + 1e-3),
        apart(thighs), apart(shins), float((gaps < 0).mean()),
        similar("upper", "lower", colour_part), similar("upper", "lower", cnn_part),
        similar("upper", "full", colour_part),
        float("lower" in features), float("full" in features), float("feet" in features),
    ], dtype=np.float32)


def cnn_view(raw: Array | None, dim: int) -> Array:
    """Power-normalised, unit CNN part of raw features (zeros for a region that is not there)."""
    if raw is None:
        return np.zeros(dim, dtype=np.float32)
    cnn = np.asarray(cnn_part(raw), dtype=np.float32)
    cnn = np.sign(cnn) * np.sqrt(np.abs(cnn))
    unit: Array = cnn / (float(np.linalg.norm(cnn)) or 1.0)
    return unit


def evidence_vector(components: dict[str, tuple[Array, Array]], features: dict[str, Array],
                    shares: dict[str, float], gaps: Array) -> Array:
    """The hand-made evidence, then each crop's principal components."""
    parts = [hand_made(features, shares, gaps)]
    for crop, (centre, basis) in components.items():
        parts.append((cnn_view(features.get(crop), len(centre)) - centre) @ basis.T)
    return np.concatenate(parts).astype(np.float32)


def coat_box(upper: Box, reach: tuple[float, float, float, float], width: int, height: int) -> Box:
    """A coat reaches below the hips and a little wider than the top under it: the upper-body box with
    each edge moved by `reach`, in the box's width and height."""
    return body.move_edges(upper, reach, width, height)


@dataclass(frozen=True)
class Thresholds:
    outerwear: float  # P(outerwear) over the upper body
    dress: float  # P(dress) over the full body
    dress_only: float  # ... sure enough that no top or bottom is read there (above 1: never)
    short: float  # P(skirt or shorts): the lower-body box is shortened to the knees
    trousers: float  # P(skirt or shorts) below this: trousers, so no dress


@dataclass
class DecisionModel:
    mean: Array  # (n,) of the evidence vector
    scale: Array  # (n,)
    components: dict[str, tuple[Array, Array]]  # crop -> (mean (CNN_DIM,), basis (k, CNN_DIM))
    weights: dict[str, Array]  # decision -> (n + 1,): weights then bias, on standardised evidence
    thresholds: Thresholds
    outerwear_reach: tuple[float, float, float, float]  # edges' offsets, in the upper-body box's width/height
    card: dict[str, Any]

    def evidence(self, features: dict[str, Array], shares: dict[str, float], gaps: Array) -> Array:
        return evidence_vector(self.components, features, shares, gaps)

    def probabilities(self, evidence: Array) -> dict[str, float]:
        x = (evidence - self.mean) / self.scale
        return {name: float(1.0 / (1.0 + np.exp(-(x @ w[:-1] + w[-1])))) for name, w in self.weights.items()}

    def outerwear_box(self, upper: Box, width: int, height: int) -> Box:
        return coat_box(upper, self.outerwear_reach, width, height)

    def save(self, path: Path) -> None:
        arrays: dict[str, Array] = {"mean": self.mean, "scale": self.scale,
                                    "outerwear_reach": np.array(self.outerwear_reach, dtype=np.float32)}
        for crop, (centre, basis) in self.components.items():
            arrays[f"pca_{crop}_mean"], arrays[f"pca_{crop}_basis"] = centre, basis.astype(np.float32)
        for name, w in self.weights.items():
            arrays[f"weights_{name}"] = w
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)
        card = dict(self.card, thresholds=self.thresholds.__dict__)
        path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")


def read_model(path: Path, what: str) -> tuple[dict[str, Any], dict[str, Array]]:
    """A look model's card (the .json beside it) and arrays (the .npz), or a clear error naming `what`."""
    try:
        card = json.loads(path.with_suffix(".json").read_text())
        with np.load(path) as data:
            return card, {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot read {what} {path}: {exc}; train it with "
                               "`vitrine train-look ccp/boxes.json`") from exc


def load(path: Path = MODEL_FILE) -> DecisionModel:
    card, arrays = read_model(path, "the garment decisions")
    reach = tuple(float(v) for v in arrays["outerwear_reach"])
    return DecisionModel(
        mean=arrays["mean"], scale=arrays["scale"],
        components={c: (arrays[f"pca_{c}_mean"], arrays[f"pca_{c}_basis"]) for c in CROPS
                    if f"pca_{c}_mean" in arrays},
        weights={name: arrays[f"weights_{name}"] for name in DECISIONS},
        thresholds=Thresholds(**card["thresholds"]), outerwear_reach=reach,  # type: ignore[arg-type]
        card=card)


def choose(kinds: set[str], p: dict[str, float], t: Thresholds) -> list[tuple[str, str]]:
    """(group, region) pairs for one person, from the regions their body shows and the probabilities.
    Regions: upper, lower, full, feet as body_regions gives them; "coat" (the upper body reaching down),
    "inner" (a top under an open coat), "short" (the lower body to the knees)."""
    chosen: list[tuple[str, str]] = []
    trousers = "lower" in kinds and p["short"] < t.trousers
    is_dress = False
    if "full" in kinds and not trousers and p["dress"] >= t.dress:
        chosen.append(("dress", "full"))
        is_dress = p["dress"] >= t.dress_only
    if "upper" in kinds:
        if p["outerwear"] >= t.outerwear:
            chosen.append(("outerwear", "coat"))
            if not is_dress and "inner" in kinds:
                chosen.append(("top", "inner"))
        elif not is_dress:
            chosen.append(("top", "upper"))
    if "lower" in kinds and not is_dress:
        chosen.append(("bottom", "short" if p["short"] >= t.short else "lower"))
    if "feet" in kinds:
        chosen.append(("shoes", "feet"))
    return chosen
