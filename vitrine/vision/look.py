"""Shop the look: people -> garment regions -> labelled crops on white -> matching products.

Which regions become garments is decided per person by the models of `decisions`: a dress or not
over the full body, a coat or a top over the upper body (a coat's box reaches below the hips, with
the top under it when it is open), which bottom over the lower body (a skirt's box is shortened).
Each box's edges are then moved where the model of `box_edges` puts the garment's.
Bags, which no body region places, are found in the whole photo by the detector of `bags`.
Every crop but a bag's and shoes' is masked with the person's segmentation and set on white, like a
catalog photo, before it is labelled (among its group's categories) and matched.
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
from vitrine.index.store import Filters, normalise_field
from vitrine.models.imaging import decode_image
from vitrine.models.labels import Label, ZeroShotLabeller
from vitrine.models.registry import image_model_spec
from vitrine.search.query import Hit, Query
from vitrine.vision.bags import BagModel, FeatureMaps, looks_in, people_maps, photo_pixels
from vitrine.vision.bags import load as load_bags
from vitrine.vision.box_edges import BoxEdgeModel, source
from vitrine.vision.box_edges import load as load_box_edges
from vitrine.vision.decisions import DecisionModel, choose, leg_gaps
from vitrine.vision.decisions import load as load_decisions
from vitrine.vision.drawn_boxes import DrawnBoxModel, box_geometry
from vitrine.vision.drawn_boxes import load as load_drawn_model
from vitrine.vision.garments import GROUP_WORDS, Box, body_regions, garment_group, inner_top, skirt_length
from vitrine.vision.people import PeopleDetector, Person

SHORT_BOTTOMS = ("skirt", "shorts")
# The groups whose products a garment is matched with: a top and a coat are close enough that a shopper
# looking at one may want the other (and the decision between them is the least sure).
MATCH_GROUPS: dict[str, tuple[str, ...]] = {"top": ("top", "outerwear"), "outerwear": ("outerwear", "top")}
PLURALS = {"top": "tops", "bottom": "bottoms", "dress": "dresses", "outerwear": "coats or jackets", "shoes": "shoes",
           "bag": "bags"}
MAX_CATEGORIES = 100_000  # a shop's categories read for matching (value_counts' default stops at 500)
MATCH_ALPHA = 0.7  # image weight when matching a crop together with its label words
NO_PERSON = "no person found in the photo"
# A drawn box is cut as drawn for these: the person segmentation cuts into feet and into a carried bag.
UNMASKED_GROUPS = ("shoes", "bag")
MIN_MASKED_SHARE = 0.3  # a drawn box less than this much person is cut as drawn (a bag on a bench)
Stage = Callable[[str], None]


@dataclass
class Garment:
    person: int | None  # None: a garment somebody drew
    group: str  # top, bottom, dress, outerwear, shoes, bag
    box: Box  # in the original photo's pixels
    labels: dict[str, list[Label]]
    crop_png: bytes = b""
    matches: list[Hit] = field(default_factory=list)
    unmatched: str | None = None  # why it has no matches ("the collection has no shoes")

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


def _crop_on_white(rgb: Array, mask: Array | None, box: Box, *, masked: bool) -> bytes:
    """The box's pixels as a PNG, those not `mask` set to white. Compressed fast (level 1): a look cuts eight crops
    a person, and level 6 took 8 ms each for 1% less size."""
    x0, y0, x1, y1 = box
    crop = rgb[y0:y1, x0:x1].copy()
    if masked and mask is not None:
        crop[~mask[y0:y1, x0:x1]] = 255
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


@dataclass
class PersonEvidence:
    boxes: dict[str, Box]  # by region kind: upper, lower, full, feet, and inner, short derived from them
    features: dict[str, Array]  # raw built-in features of the body regions' crops
    shares: dict[str, float]  # zero-shot: dress, outerwear, short
    gaps: Array  # leg_gaps


class LookFinder:
    def __init__(self, engine: Engine, decisions: DecisionModel | None = None,
                 box_edges: BoxEdgeModel | None = None, *, move_edges: bool = True) -> None:
        """`move_edges=False` leaves the boxes where the body's landmarks put them (`eval-look --unmoved`)."""
        self.engine = engine
        self.detector = PeopleDetector()
        self._decisions = decisions
        self._box_edges = box_edges
        self.move_edges = move_edges
        self._bags: tuple[BagModel, FeatureMaps] | None = None
        self._drawn_model: DrawnBoxModel | None = None
        self._choosers: dict[tuple[str, str], tuple[ZeroShotLabeller, ZeroShotLabeller]] = {}
        self._by_group: dict[str, tuple[tuple[str, int], dict[str, list[str]]]] = {}

    @property
    def drawn_model(self) -> DrawnBoxModel:
        """Loaded on first use, like the decisions."""
        if self._drawn_model is None:
            self._drawn_model = load_drawn_model()
        return self._drawn_model

    @property
    def box_edges(self) -> BoxEdgeModel:
        """Loaded on first use, like the decisions."""
        if self._box_edges is None:
            self._box_edges = load_box_edges()
        return self._box_edges

    @property
    def bags(self) -> tuple[BagModel, FeatureMaps]:
        """The bag detector and the feature maps of the image model it learned on, loaded on first use."""
        if self._bags is None:
            model = load_bags()
            spec = image_model_spec(model.card["image_model"])
            self._bags = (model, FeatureMaps(spec, model_dir=self.engine.home / "models",
                                             threads=self.engine.settings.threads))
        return self._bags

    @property
    def decisions(self) -> DecisionModel:
        """Loaded on first use: `vitrine train-look` gathers evidence before any decisions exist."""
        if self._decisions is None:
            self._decisions = load_decisions()
        return self._decisions

    def _chooser(self, collection: str | None, groups: tuple[str, ...], *, own_words: bool = False) -> ZeroShotLabeller:
        """A labeller over the category words of some garment groups only (dress or not, which bottom).

        `own_words`: over the collection's own categories of those groups (and the default list's), so that a
        box's label is a category the shop uses and is never one of another group ("shoes: Blue Pants").
        """
        base = self.engine.labeller(collection)  # cached by the engine until the collection changes
        key = (collection or "", ",".join(groups) + (":own" if own_words else ""))
        found = self._choosers.get(key)
        if found is None or found[0] is not base:  # a new model version means new word vectors
            if own_words:  # weighed as the collection's labels are
                words = [v for v in base.vocabulary["category"] if garment_group(v) in groups]
                counts = base.counts
            else:
                words, counts = [w for g in groups for w in GROUP_WORDS[g]], {}
            found = (base, ZeroShotLabeller(base.heads, self.engine.text_encoder, {"category": words}, counts))
            self._choosers[key] = found
        return found[1]

    def _categories_by_group(self, collection: str) -> dict[str, list[str]]:
        """The collection's categories by garment group, read once per generation of the collection."""
        store = self.engine.store(collection)
        key = (collection, store.generation())
        found = self._by_group.get(collection)
        if found is None or found[0] != key:
            found = (key, categories_by_group(store.value_counts("category", limit=MAX_CATEGORIES)))
            self._by_group[collection] = found
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
        garments += self._bag_garments(image, rgb, people, collection)
        stage("MATCHING")
        if collection:
            for garment in garments:
                words = f"{garment.label('colour')} {garment.label('category')}".strip()
                garment.matches, garment.unmatched = self.match(garment.crop_png, words, garment.group,
                                                                collection=collection, top_k=top_k, filters=filters)
        reason = None if garments else "people found, but no garment clearly visible"
        return Look(width=image.width, height=image.height, people=len(people), garments=garments, reason=reason)

    def match(self, crop_png: bytes, words: str, group: str, *, collection: str, top_k: int,
              filters: Filters | None = None) -> tuple[list[Hit], str | None]:
        """A garment's matches in `collection`, among its group's categories, or why there are none."""
        within = match_filters(filters or Filters(), self._categories_by_group(collection), group)
        if within is None:
            return [], f"the collection has no {PLURALS.get(group, group)}"
        response = self.engine.search(Query(image=crop_png, text=words or None, alpha=MATCH_ALPHA,
                                            collection=collection, top_k=top_k, filters=within, facets=()))
        return response.hits, None

    def drawn(self, photo: bytes, box: Box, *, collection: str | None, group: str | None = None) -> Garment:
        """A garment where somebody drew its box: one the look missed (a bag, often), or a box corrected.
        It is cut from the photo (`cut`); its group is read by the drawn-box model unless given; its labels
        are read as the look's own garments' are. `box` must lie inside the photo."""
        image = decode_image(photo, max_pixels=self.engine.settings.max_image_pixels)
        rgb = np.asarray(image, dtype=np.uint8)
        everyone = self.detector.segment(rgb)
        crop, masked = self.cut(rgb, everyone, box)
        raw = None  # the built-in model's features of `crop`, once read
        if group is None:
            raw = self.engine.embedder.features(crop)
            group = self.drawn_model.group(raw, self.group_shares(raw),
                                           box_geometry(box, everyone, image.width, image.height))
        if masked and group in UNMASKED_GROUPS:
            crop, raw = self.cut(rgb, None, box)[0], None
        embedder = self.engine.embedder_for(collection) if collection else self.engine.embedder
        features = raw if raw is not None and embedder is self.engine.embedder else embedder.features(crop)
        labels = self.engine.labeller(collection).label(features)[0]
        labels["category"] = self._chooser(collection, (group,), own_words=True).label(features)[0]["category"]
        return Garment(person=None, group=group, box=box, labels=labels, crop_png=crop)

    @staticmethod
    def cut(rgb: Array, everyone: Array | None, box: Box) -> tuple[bytes, bool]:
        """A drawn box's crop, set on white by the person segmentation `everyone` when at least
        MIN_MASKED_SHARE of the box is person (else as drawn), and whether it was."""
        x0, y0, x1, y1 = box
        masked = everyone is not None and float(everyone[y0:y1, x0:x1].mean()) >= MIN_MASKED_SHARE
        return _crop_on_white(rgb, everyone, box, masked=masked), masked

    def group_shares(self, features: Array) -> Array:
        """The zero-shot shares of each garment group's words in a crop's built-in features (GROUP_WORDS order)."""
        chooser = self._chooser(None, tuple(GROUP_WORDS))
        shares = dict.fromkeys(GROUP_WORDS, 0.0)
        for label in chooser.label(features, top=len(chooser.vocabulary["category"]))[0]["category"]:
            group = garment_group(label.value)
            if group is not None:
                shares[group] += label.confidence
        return np.array(list(shares.values()), dtype=np.float32)

    def evidence(self, rgb: Array, person: Person) -> PersonEvidence:
        """A person's regions and what the decisions read, from the built-in model whatever the collection
        (the decisions were learned on its features)."""
        height, width = rgb.shape[:2]
        boxes = {r.kind: r.box for r in body_regions(person, width, height)}
        crops = [_crop_on_white(rgb, person.mask, box, masked=kind != "feet") for kind, box in boxes.items()]
        features = dict(zip(boxes, self.engine.embedder.features_many(crops), strict=True))
        shares: dict[str, float] = {}
        if "lower" in features:
            shares["short"] = self._share(None, ("bottom",), features["lower"], words=SHORT_BOTTOMS)
        if "full" in features:
            shares["dress"] = self._share(None, ("dress", "top", "bottom"), features["full"], "dress")
        if "upper" in features:
            shares["outerwear"] = self._share(None, ("top", "outerwear"), features["upper"], "outerwear")
        if "upper" in boxes:
            inner = inner_top(boxes["upper"], person)
            if inner is not None:
                boxes["inner"] = inner
        if "lower" in boxes:
            boxes["short"] = skirt_length(boxes["lower"], person, width, height)
        return PersonEvidence(boxes=boxes, features=features, shares=shares,
                              gaps=leg_gaps(person, width, height))

    def _garments(self, rgb: Array, person: Person, number: int, collection: str | None) -> list[Garment]:
        found = self.evidence(rgb, person)
        model = self.decisions
        boxes = dict(found.boxes)
        if "upper" in boxes:
            boxes["coat"] = model.outerwear_box(boxes["upper"], rgb.shape[1], rgb.shape[0])
        p = model.probabilities(model.evidence(found.features, found.shares, found.gaps))
        # A collection on a CLIP checkpoint labels crops in its own space, so they go through its image tower.
        embedder = self.engine.embedder_for(collection) if collection else self.engine.embedder
        labeller = self.engine.labeller(collection)
        height, width = rgb.shape[:2]
        chosen = [(group, kind, self.box_edges.refine(group, kind, boxes[kind], person, p,
                                                       found.features.get(source(kind)), width, height)
                   if self.move_edges else boxes[kind])
                  for group, kind in choose(set(boxes), p, model.thresholds)]
        crops = [_crop_on_white(rgb, person.mask, box, masked=kind != "feet") for _, kind, box in chosen]
        # A box the model left where it was keeps the features its region's crop already has.
        kept = [embedder is self.engine.embedder and kind in found.features and box == boxes[kind]
                for _, kind, box in chosen]
        encoded = iter(embedder.features_many([crop for crop, same in zip(crops, kept, strict=True) if not same]))
        garments = []
        for (group, kind, box), crop, same in zip(chosen, crops, kept, strict=True):
            features = found.features[kind] if same else next(encoded)
            labels = labeller.label(features)[0]
            labels["category"] = self._chooser(collection, (group,), own_words=True).label(features)[0]["category"]
            garments.append(Garment(person=number, group=group, box=box, labels=labels, crop_png=crop))
        return garments

    def _bag_garments(self, image: Image.Image, rgb: Array, people: list[Person],
                      collection: str | None) -> list[Garment]:
        """The bags the detector finds, cut as they are (the segmentation cuts into a carried bag), each given to
        the person whose wrists or hips are nearest. None in a landscape photo (`bags.looks_in`)."""
        if not looks_in(image.width, image.height):
            return []
        model, maps = self.bags
        fine, coarse = maps(photo_pixels(image, maps.spec)[None])
        found = model.bags(fine[0], coarse[0], people_maps(people, image.width, image.height), image.width,
                           image.height)
        if not found:
            return []
        crops = [_crop_on_white(rgb, None, box, masked=False) for _, box in found]
        embedder = self.engine.embedder_for(collection) if collection else self.engine.embedder
        labeller = self.engine.labeller(collection)
        garments = []
        for (_, box), crop, features in zip(found, crops, embedder.features_many(crops), strict=True):
            labels = labeller.label(features)[0]
            labels["category"] = self._chooser(collection, ("bag",), own_words=True).label(features)[0]["category"]
            garments.append(Garment(person=nearest_person(box, people), group="bag", box=box, labels=labels,
                                    crop_png=crop))
        return garments


def nearest_person(box: Box, people: list[Person]) -> int:
    """The index of the person whose visible wrists or hips lie nearest the box's centre (who carries it)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2

    def distance(person: Person) -> float:
        points = [person.landmarks[i] for i in (15, 16, 23, 24) if person.landmarks[i][2] >= 0.3]
        if not points:
            x0, y0, x1, y1 = person.box
            points = [np.array([(x0 + x1) / 2, (y0 + y1) / 2, 1.0])]
        return min(float(np.hypot(p[0] - cx, p[1] - cy)) for p in points)

    return min(range(len(people)), key=lambda i: distance(people[i]))


def categories_by_group(counts: list[tuple[str, int]]) -> dict[str, list[str]]:
    """A collection's categories (from `value_counts`) by the garment group each names; others left out."""
    out: dict[str, list[str]] = {}
    for value, _ in counts:
        group = garment_group(value)
        if group is not None:
            out.setdefault(group, []).append(value)
    return out


def match_filters(filters: Filters, by_group: dict[str, list[str]], group: str) -> Filters | None:
    """The filters a garment's matches are searched with: the shopper's, narrowed to the collection's
    categories of the garment's group, so that shoes are never matched with tights. None when the
    collection sells none of that group. Left as they are when no category of the collection names a
    garment group (nothing to go by), or when the shopper filters on category themselves."""
    if not by_group or any(normalise_field(f) == "category" for f in filters.equals):
        return filters
    categories = [c for g in MATCH_GROUPS.get(group, (group,)) for c in by_group.get(g, [])]
    if not categories:
        return None
    return Filters(equals={**filters.equals, "category": tuple(categories)}, ranges=filters.ranges)


def match_as_dict(hit: Hit) -> dict[str, Any]:
    return {"collection": hit.collection, "id": hit.id, "title": hit.title, "score": round(hit.score, 4),
            "category": hit.category, "colour": hit.colour, "price": hit.price}


def garment_as_dict(garment: Garment, index: int) -> dict[str, Any]:
    return {
        "index": index, "person": garment.person, "group": garment.group, "box": list(garment.box),
        "labels": {k: [{"value": x.value, "confidence": x.confidence} for x in v] for k, v in garment.labels.items()},
        "matches": [match_as_dict(h) for h in garment.matches],
        "unmatched": garment.unmatched,
    }


def look_as_dict(look: Look) -> dict[str, Any]:
    """The JSON shape of a look (CLI --json and the job result); the API adds the crops' URLs."""
    return {"width": look.width, "height": look.height, "people": look.people,
            "garments": [garment_as_dict(g, i) for i, g in enumerate(look.garments)], "reason": look.reason}
