"""Zero-shot labels read off the cross-modal space: category, colour and pattern of any photo.

Each candidate value is a text ("black", "trousers", "striped"); the heads were trained with such
single words among each product's texts, so a value's vector sits near the photos it describes.
Confidences are a softmax over the vocabulary at the model's trained temperature.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from vitrine.arrays import Array
from vitrine.models.captions import clean
from vitrine.models.heads import CrossModal
from vitrine.models.text_encoder import TextEncoder

DEFAULT_VOCABULARY: dict[str, tuple[str, ...]] = {
    "category": (
        "t-shirt", "shirt", "blouse", "top", "vest top", "sweater", "cardigan", "hoodie", "sweatshirt", "jacket",
        "coat", "blazer", "dress", "skirt", "trousers", "jeans", "shorts", "leggings", "jumpsuit", "bodysuit",
        "bra", "underwear", "swimwear", "bikini", "socks", "tights", "shoes", "sneakers", "boots", "sandals",
        "heels", "flip flops", "bag", "handbag", "backpack", "wallet", "belt", "hat", "cap", "scarf",
        "sunglasses", "watch", "jewellery", "earrings", "necklace", "gloves", "tie",
    ),
    "colour": (
        "black", "white", "grey", "dark grey", "light grey", "navy", "blue", "dark blue", "light blue", "turquoise",
        "green", "dark green", "khaki", "olive", "yellow", "mustard", "orange", "red", "dark red", "burgundy",
        "pink", "light pink", "purple", "lilac", "beige", "cream", "brown", "tan", "gold", "silver", "multi",
    ),
    "pattern": (
        "solid", "striped", "checked", "dotted", "floral", "all over pattern", "printed", "graphic print",
        "colour blocking", "denim", "melange", "lace", "embroidery", "animal print", "camouflage", "metallic",
    ),
}
# Attribute names that hold a pattern in common catalogs.
PATTERN_FIELDS = ("pattern", "graphical_appearance", "print")
TOP_LABELS = 3


@dataclass(frozen=True)
class Label:
    value: str
    confidence: float


class ZeroShotLabeller:
    def __init__(self, heads: CrossModal, text_encoder: TextEncoder,
                 vocabulary: Mapping[str, Iterable[str]] | None = None) -> None:
        self.heads = heads
        self.vocabulary = {k: _distinct(v) for k, v in (vocabulary or DEFAULT_VOCABULARY).items()}
        self.scale = heads.logit_scale
        self._vectors = {}
        for name, values in self.vocabulary.items():
            if values:
                prompts = [clean(v) for v in values]  # the lower-case words the heads were trained on
                self._vectors[name] = heads.text_query(prompts, text_encoder.encode(prompts))

    def label(self, raw_features: Array, *, top: int = TOP_LABELS) -> list[dict[str, list[Label]]]:
        """For each stored-feature row: per label kind, the `top` values with their confidences."""
        photos = self.heads.image_vectors(np.atleast_2d(raw_features))
        out: list[dict[str, list[Label]]] = [{} for _ in range(len(photos))]
        for name, vectors in self._vectors.items():
            logits = self.scale * photos @ vectors.T
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            for i, row in enumerate(probs):
                best = np.argsort(-row, kind="stable")[:top]
                out[i][name] = [Label(self.vocabulary[name][j], round(float(row[j]), 4)) for j in best]
        return out


def _distinct(values: Iterable[str]) -> list[str]:
    """Values as shown (the first spelling met), one per cleaned form ("Hoodies & Sweatshirts" = "hoodies
    sweatshirts"), so a collection's own value wins over the default list's."""
    seen: dict[str, str] = {}
    for value in values:
        key = clean(value)
        if key and key not in seen:
            seen[key] = value.strip()
    return list(seen.values())


def collection_vocabulary(found: Mapping[str, Iterable[str]], *, include_defaults: bool = True) -> dict[str, list[str]]:
    """The default fashion lists plus the values a collection holds (`found`: kind -> values)."""
    vocabulary: dict[str, list[str]] = {}
    for name in dict.fromkeys([*DEFAULT_VOCABULARY, *found]):
        values = list(found.get(name, ()))
        if include_defaults:
            values += list(DEFAULT_VOCABULARY.get(name, ()))
        vocabulary[name] = _distinct(values)
    return vocabulary
