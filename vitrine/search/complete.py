"""Complete the look: for a product, items of *other* garment groups that go with it.

What the shop's data says goes together comes first (the garments of one indexed look, products
clicked in the same searches); then, and for products without such data, the rules a stylist would
use: garment groups that are worn together (a top with bottoms, shoes, outerwear, a bag), the same
gender, colours in harmony (a neutral goes with anything; complementary hues pair), a similar price
tier, and a shared style (the products' text vectors are close: "running" with "running").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vitrine.index.vectors import CollectionVectors
from vitrine.search.words import tokens
from vitrine.vision.garments import GROUP_WORDS, garment_group

# What each group is worn with, the most important first.
PAIRS: dict[str, tuple[str, ...]] = {
    "top": ("bottom", "shoes", "outerwear", "bag"),
    "bottom": ("top", "shoes", "outerwear", "bag"),
    "dress": ("shoes", "bag", "outerwear"),
    "outerwear": ("top", "bottom", "shoes", "dress"),
    "shoes": ("bottom", "top", "dress", "bag"),
    "bag": ("dress", "top", "bottom", "shoes"),
}
NEUTRALS = frozenset({"black", "white", "grey", "gray", "beige", "cream", "navy", "brown", "khaki", "tan", "charcoal",
                      "nude", "taupe", "silver", "denim", "ivory", "camel", "melange"})
COMPLEMENTS = frozenset({frozenset(p) for p in (("blue", "orange"), ("red", "green"), ("purple", "yellow"),
                                                 ("pink", "green"), ("lavender", "yellow"), ("navy", "orange"))})
PER_GROUP = 2


def colour_harmony(a: Sequence[str], b: Sequence[str]) -> float:
    """How well two products' colours go together, 0-1 (the best pair of their colours)."""
    if not a or not b:
        return 0.5
    best = 0.0
    for x in a:
        for y in b:
            hx, hy = (tokens(x) or [""])[-1], (tokens(y) or [""])[-1]
            if hx in NEUTRALS and hy in NEUTRALS:
                score = 0.8
            elif hx in NEUTRALS or hy in NEUTRALS:
                score = 1.0
            elif frozenset((hx, hy)) in COMPLEMENTS:
                score = 0.7
            elif hx == hy:
                score = 0.6
            else:
                score = 0.3
            best = max(best, score)
    return best


@dataclass(frozen=True)
class Match:
    position: int
    group: str
    score: float


def complete_the_look(vectors: CollectionVectors, position: int, limit: int,
                      together: dict[int, float] | None = None) -> list[Match]:
    """Up to `limit` products of the groups worn with the product at `position`, PER_GROUP per group
    in turn, the best first within each. `together`: what the shop's data says goes with it (products
    of the same indexed look, products clicked in the same searches), position -> a bonus that
    outweighs the rules."""
    data = vectors.data
    values_of = _values_per_product(vectors)
    categories = values_of.get("category", {})
    own_group = next((g for c in categories.get(position, ()) if (g := garment_group(c))), None)
    wanted = PAIRS.get(own_group or "", tuple(GROUP_WORDS))
    genders = values_of.get("gender", {})
    own_gender = {g.lower() for g in genders.get(position, ())}
    colours = values_of.get("colour", {})
    own_colours = colours.get(position, [])
    style = data.text_vectors @ data.text_vectors[position]
    prices = data.prices if data.prices is not None else np.full(vectors.size, np.nan, dtype=np.float32)
    own_price = float(prices[position])
    by_group: dict[str, list[Match]] = {g: [] for g in wanted}
    for p in vectors.live_positions().tolist():
        if p == position:
            continue
        group = next((g for c in categories.get(p, ()) if (g := garment_group(c))), None)
        if group not in by_group:
            continue
        theirs = {g.lower() for g in genders.get(p, ())}
        if own_gender and theirs and not (own_gender & theirs) and "unisex" not in theirs:
            continue
        score = colour_harmony(own_colours, colours.get(p, [])) + 0.5 * float(style[p])
        price = float(prices[p])
        if np.isfinite(own_price) and np.isfinite(price) and own_price > 0 and price > 0:
            score += 0.2 * max(0.0, 1.0 - abs(np.log(price / own_price)))
        if together:
            score += together.get(p, 0.0)
        by_group[group].append(Match(p, group, score))
    ranked = {g: sorted(m, key=lambda m: (-m.score, m.position)) for g, m in by_group.items()}
    chosen: list[Match] = []
    for turn in range(0, max((len(m) for m in ranked.values()), default=0), PER_GROUP):
        for group in wanted:
            chosen += ranked[group][turn : turn + PER_GROUP]
        if len(chosen) >= limit:
            break
    return chosen[:limit]


def _values_per_product(vectors: CollectionVectors) -> dict[str, dict[int, list[str]]]:
    found: dict[str, dict[int, list[str]]] = {}
    for name in ("category", "colour", "gender"):
        if name not in vectors.data.facets:
            continue
        positions, codes, values = vectors.data.facets[name]
        table: dict[int, list[str]] = {}
        for p, c in zip(positions.tolist(), codes.tolist(), strict=True):
            table.setdefault(p, []).append(values[c])
        found[name] = table
    return found
