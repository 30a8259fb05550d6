"""Shop the look: people -> garment regions -> labelled crops on white -> matching products.

Which regions become garments is the labeller's call: the full-body crop is asked "dress or not",
the upper body "top or outerwear", the lower body which bottom (a skirt's box is then shortened).
Every crop is masked with the person's segmentation and set on white, like a catalog photo,
before it is labelled and matched.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from vitrine.arrays import Array
from vitrine.engine import Engine
from vitrine.index.store import Filters
from vitrine.models.imaging import decode_image
from vitrine.models.labels import Label, ZeroShotLabeller
from vitrine.search.query import Hit, Query
from vitrine.vision.garments import GROUP_WORDS, Box, Region, body_regions, garment_group, inner_top, skirt_length
from vitrine.vision.people import PeopleDetector, Person

DRESS_SHARE = 0.5  # P(dress words) on the full-body crop needed to call it a dress
DRESS_ONLY = 0.85  # ... and to be sure it is not a top and a skirt
OUTERWEAR_SHARE = 0.5
# P(skirt or shorts) among the bottom words, on the lower-body crop. On ccp photos it is 0 to 0.02 for
# 90% of trousers and above 0.04 for half the skirts: the frozen features separate them only weakly.
TROUSERS_BELOW = 0.01  # clearly trousers: the photo shows no dress
SKIRT_SHARE = 0.04  # a skirt or shorts: the box is shortened to the knees
SHORT_BOTTOMS = ("skirt", "shorts")
MATCH_ALPHA = 0.7  # image weight when matching a crop together with its label words
NO_PERSON = "no person found in the photo"
Stage = Callable[[str], None]


@dataclass
class Garment:
    person: int
    group: str  # top, bottom, dress, outerwear, shoes, bag
    box: Box  # in the original photo's pixels
    labels: dict[str, list[Label]]
    crop_png: bytes = b""
    matches: list[Hit] = field(default_factory=list)

    def label(self, kind: str) -> str:
        found = self.labels.get(kind) or []
        return found[0].value if found else ""


@dataclass
class Look:
    width: int
    height: int
    people: int
    garments: list[Garment]
    reason: str | None = None


def _crop_on_white(rgb: Array, mask: Array, box: Box, *, masked: bool) -> bytes:
    x0, y0, x1, y1 = box
    crop = rgb[y0:y1, x0:x1].copy()
    if masked:
        crop[~mask[y0:y1, x0:x1]] = 255
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, "PNG")
    return buffer.getvalue()


class LookFinder:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.detector = PeopleDetector()
        self._choosers: dict[tuple[str, str], tuple[ZeroShotLabeller, ZeroShotLabeller]] = {}

    def _chooser(self, collection: str | None, groups: tuple[str, ...], *, own_words: bool = False) -> ZeroShotLabeller:
        """A labeller over the category words of some garment groups only (dress or not, which bottom).

        `own_words`: over the collection's own categories of those groups (and the default list's), so that a
        box's label is a category the shop uses and is never one of another group ("shoes: Blue Pants").
        """
        base = self.engine.labeller(collection)  # cached by the engine until the collection changes
        key = (collection or "", ",".join(groups) + (":own" if own_words else ""))
        found = self._choosers.get(key)
        if found is None or found[0] is not base:  # a new model version means new word vectors
            if own_words:
                words = [v for v in base.vocabulary["category"] if garment_group(v) in groups]
            else:
                words = [w for g in groups for w in GROUP_WORDS[g]]
            found = (base, ZeroShotLabeller(base.heads, self.engine.text_encoder, {"category": words}))
            self._choosers[key] = found
        return found[1]

    def _share(self, collection: str | None, groups: tuple[str, ...], features: Array, group: str = "",
               words: tuple[str, ...] = ()) -> float:
        """The probability mass the chooser over `groups` gives to `group`'s words (or to `words`)."""
        chooser = self._chooser(collection, groups)
        labels = chooser.label(features, top=len(chooser.vocabulary["category"]))[0]["category"]
        wanted = words or GROUP_WORDS[group]
        return sum(x.confidence for x in labels if x.value in wanted)

    def find(self, photo: bytes, *, collection: str | None, top_k: int = 5, filters: Filters | None = None,
             stage: Stage | None = None) -> Look:
        stage = stage or (lambda name: None)
        stage("DETECTING")
        image = decode_image(photo, max_pixels=self.engine.settings.max_image_pixels)
        rgb = np.asarray(image, dtype=np.uint8)
        people = self.detector.detect(rgb)
        if not people:
            return Look(width=image.width, height=image.height, people=0, garments=[], reason=NO_PERSON)
        stage("ANALYZING")
        garments: list[Garment] = []
        for number, person in enumerate(people):
            garments += self._garments(rgb, person, number, collection)
        stage("MATCHING")
        if collection:
            for garment in garments:
                words = f"{garment.label('colour')} {garment.label('category')}".strip()
                response = self.engine.search(Query(image=garment.crop_png, text=words or None, alpha=MATCH_ALPHA,
                                                    collection=collection, top_k=top_k, filters=filters or Filters(),
                                                    facets=()))
                garment.matches = response.hits
        reason = None if garments else "people found, but no garment clearly visible"
        return Look(width=image.width, height=image.height, people=len(people), garments=garments, reason=reason)

    def _garments(self, rgb: Array, person: Person, number: int, collection: str | None) -> list[Garment]:
        height, width = rgb.shape[:2]
        regions = {r.kind: r for r in body_regions(person, width, height)}
        crops = {kind: _crop_on_white(rgb, person.mask, r.box, masked=kind != "feet") for kind, r in regions.items()}
        # A collection on a CLIP checkpoint labels crops in its own space, so they go through its image tower.
        embedder = self.engine.embedder_for(collection) if collection else self.engine.embedder
        features = {kind: embedder.features(data) for kind, data in crops.items()}
        chosen: list[tuple[str, Region]] = []
        short_share = SKIRT_SHARE
        if "lower" in regions:
            short_share = self._share(collection, ("bottom",), features["lower"], words=SHORT_BOTTOMS)
        trousers = short_share < TROUSERS_BELOW
        is_dress = False  # sure enough to drop the top and bottom it would otherwise be read as
        if "full" in regions and not trousers:
            dress = self._share(collection, ("dress", "top", "bottom"), features["full"], "dress")
            if dress >= DRESS_SHARE:
                chosen.append(("dress", regions["full"]))
                is_dress = dress >= DRESS_ONLY
        if "upper" in regions:
            outer = self._share(collection, ("top", "outerwear"), features["upper"], "outerwear") >= OUTERWEAR_SHARE
            if outer:
                chosen.append(("outerwear", regions["upper"]))
                inner = inner_top(regions["upper"].box, person)
                if not is_dress and inner is not None:  # the top under an open coat
                    crops["inner"] = _crop_on_white(rgb, person.mask, inner, masked=True)
                    features["inner"] = embedder.features(crops["inner"])
                    chosen.append(("top", Region("inner", inner)))
            elif not is_dress:
                chosen.append(("top", regions["upper"]))
        if "lower" in regions and not is_dress:
            region = regions["lower"]
            if short_share >= SKIRT_SHARE:
                region = Region("lower", skirt_length(region.box, person, width, height))
                crops["lower"] = _crop_on_white(rgb, person.mask, region.box, masked=True)
                features["lower"] = embedder.features(crops["lower"])
            chosen.append(("bottom", region))
        if "feet" in regions:
            chosen.append(("shoes", regions["feet"]))
        labeller = self.engine.labeller(collection)
        garments = []
        for group, region in chosen:
            labels = labeller.label(features[region.kind])[0]
            labels["category"] = self._chooser(collection, (group,), own_words=True).label(features[region.kind])[0][
                "category"]
            garments.append(Garment(person=number, group=group, box=region.box, labels=labels,
                                    crop_png=crops[region.kind]))
        return garments


def look_as_dict(look: Look, *, crop_url: Callable[[int], str] | None = None) -> dict[str, Any]:
    """The JSON shape of a look (CLI --json and the job result)."""
    garments = []
    for i, g in enumerate(look.garments):
        item: dict[str, Any] = {
            "index": i, "person": g.person, "group": g.group, "box": list(g.box),
            "labels": {k: [{"value": x.value, "confidence": x.confidence} for x in v] for k, v in g.labels.items()},
            "matches": [{"collection": h.collection, "id": h.id, "title": h.title, "score": round(h.score, 4),
                         "category": h.category, "colour": h.colour, "price": h.price} for h in g.matches],
        }
        if crop_url is not None:
            item["crop_url"] = crop_url(i)
        garments.append(item)
    return {"width": look.width, "height": look.height, "people": look.people, "garments": garments,
            "reason": look.reason}
