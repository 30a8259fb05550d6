"""`vitrine eval`: retrieval and label quality of a collection against ground truth, through the same
search path users get.

Modes for text queries: `text` (product text only), `image` (the photos' cross-modal match only)
and `fused` (the collection's default mix). Ground truth is the format of the shared data:
`{"text_queries": [{"query", "relevant": [ids]}], "variant_groups": {group: [ids]}}`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.engine import Engine
from vitrine.errors import InvalidInput
from vitrine.models.captions import clean
from vitrine.search.metrics import summarise
from vitrine.search.query import Query
from vitrine.search.scoring import best_per_product, top_indices

MODES: dict[str, float] = {"text": 0.0, "image": 1.0}  # cross_modal_weight per mode; "fused" = default
CURVE_KS = (1, 2, 5, 10, 20, 50, 100)
Progress = Callable[[str, int, int], None]


@dataclass
class GroundTruth:
    text_queries: list[tuple[str, set[str]]] = field(default_factory=list)
    variant_groups: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> GroundTruth:
        try:
            raw = json.loads(path.read_text())
            queries = [(str(q["query"]), {str(r) for r in q["relevant"]}) for q in raw.get("text_queries", [])]
            groups = {str(k): [str(i) for i in v] for k, v in raw.get("variant_groups", {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"cannot read ground truth {path}: {exc}", field="gt") from exc
        return cls(text_queries=queries, variant_groups=groups)


def _curve(runs: Sequence[tuple[Sequence[str], Collection[str]]]) -> dict[str, float]:
    return {str(k): float(np.mean([len(set(r[:k]) & set(g)) / len(g) for r, g in runs])) for k in CURVE_KS}


def _round(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in metrics.items()}


def evaluate_queries(
    engine: Engine, collection: str, queries: Sequence[tuple[str, set[str]]], modes: Sequence[str],
    progress: Progress | None = None, label: str = "text",
) -> dict[str, Any]:
    """Runs each query in each mode; relevant ids absent from the collection are dropped first."""
    known = set(engine.vectors(collection).product_ids())
    usable = [(q, rel & known) for q, rel in queries if rel & known]
    out: dict[str, Any] = {}
    for mode in modes:
        runs = []
        for i, (text, relevant) in enumerate(usable):
            # `text` and `image` measure one signal each, so the words are not understood there (a
            # facet word's boost would lift them); `fused` is the search users get, understanding included.
            response = engine.search(Query(text=text, collection=collection, top_k=max(CURVE_KS),
                                           cross_modal_weight=MODES.get(mode), facets=(),
                                           understand=mode not in MODES))
            runs.append(([h.id for h in response.hits], relevant))
            if progress is not None:
                progress(f"{label}/{mode}", i + 1, len(usable))
        out[mode] = {**_round(summarise(runs)), "recall_curve": _round(_curve(runs))}
    return out


def title_queries(engine: Engine, collection: str, limit: int, seed: int = 0) -> list[tuple[str, set[str]]]:
    """Each product's own title as a query whose one relevant answer is that product (a sample)."""
    ids = engine.vectors(collection).product_ids()
    chosen = sorted(random.Random(seed).sample(range(len(ids)), min(limit, len(ids))))
    products = engine.store(collection).get_products([ids[i] for i in chosen])
    return [(p.title, {p.id}) for p in products if p.title.strip()]


def evaluate_image_to_image(
    engine: Engine, collection: str, groups: Mapping[str, Sequence[str]] | None, limit: int, seed: int = 0
) -> dict[str, Any]:
    """Photo -> photo: with variant groups, the other products of the query's group are relevant;
    without, the query photo's own product is (found through its other photos)."""
    vectors = engine.vectors(collection)
    data = vectors.data
    live = vectors.live_positions()
    position = {data.ids[i]: int(i) for i in live}
    relevant_of: dict[int, set[str]] = {}
    if groups:
        for members in groups.values():
            present = [m for m in members if m in position]
            for m in present:
                others = set(present) - {m}
                if others:
                    relevant_of[position[m]] = others
        queries = [int(vectors.image_start[p]) for p in sorted(relevant_of) if vectors.image_count[p]]
        kind = "variant_groups"
    else:
        several = live[vectors.image_count[live] > 1]
        queries = [int(vectors.image_start[p] + k) for p in several for k in range(int(vectors.image_count[p]))]
        relevant_of = {int(p): {data.ids[int(p)]} for p in several}
        kind = "same_product"
    if not queries:
        return {"kind": kind, "queries": 0}
    queries = sorted(random.Random(seed).sample(queries, min(limit, len(queries))))
    runs = []
    for image in queries:
        owner = int(data.image_product[image])
        scores = vectors.image_vectors @ vectors.image_vectors[image]
        scores[image] = -np.inf  # the query photo itself is not an answer
        best, _ = best_per_product(scores, data.image_product, vectors.size)
        if groups:
            best[owner] = -np.inf
        if vectors.dead is not None:
            best[vectors.dead] = -np.inf
        ranked = [data.ids[i] for i in top_indices(best, max(CURVE_KS))]
        runs.append((ranked, relevant_of[owner]))
    return {"kind": kind, **_round(summarise(runs)), "recall_curve": _round(_curve(runs))}


def evaluate_labels(
    engine: Engine, collection: str, columns: Mapping[str, str], limit: int, seed: int = 0
) -> dict[str, Any]:
    """Zero-shot labels of each sampled product's main photo against a column (kind -> column)."""
    vectors = engine.vectors(collection)
    data = vectors.data
    labeller = engine.labeller(collection)
    with_photo = [i for i in vectors.live_positions().tolist() if vectors.image_count[i]]
    chosen = sorted(random.Random(seed).sample(with_photo, min(limit, len(with_photo))))
    products = engine.store(collection).get_products([data.ids[i] for i in chosen])
    raw = engine.store(collection).load_vectors(()).image_features  # search keeps no raw features in memory
    features = raw[[int(vectors.image_start[i]) for i in chosen]]
    labels = labeller.label(features, top=1)
    out: dict[str, Any] = {}
    for kind, column in columns.items():
        if kind not in labeller.vocabulary:
            raise InvalidInput(f"no label kind {kind!r}; known: {', '.join(labeller.vocabulary)}", field="labels")
        pairs = []
        for product, predicted in zip(products, labels, strict=True):
            truth = clean(str(_field(product, column)))
            if truth:
                pairs.append((truth, clean(predicted[kind][0].value)))
        out[kind] = {"column": column, **_round(label_scores(pairs))}
    return out


def _field(product: Any, column: str) -> Any:
    if column in ("category", "colour", "title", "description"):
        return getattr(product, column)
    return product.attributes.get(column, "")


def label_scores(pairs: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Accuracy and macro-F1 over the true classes, from (truth, predicted) pairs."""
    if not pairs:
        return {"accuracy": 0.0, "macro_f1": 0.0, "products": 0.0}
    classes = sorted({t for t, _ in pairs})
    f1s = []
    for c in classes:
        tp = sum(1 for t, p in pairs if t == c and p == c)
        fp = sum(1 for t, p in pairs if t != c and p == c)
        fn = sum(1 for t, p in pairs if t == c and p != c)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    accuracy = sum(1 for t, p in pairs if t == p) / len(pairs)
    return {"accuracy": accuracy, "macro_f1": float(np.mean(f1s)), "products": float(len(pairs))}


def plot_curves(results: Mapping[str, Any], path: Path, title: str) -> None:
    """Recall@k per method (one line per query set and mode) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in _curves(results):
        ks = [int(k) for k in curve]
        ax.plot(ks, list(curve.values()), marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves(results: Mapping[str, Any]) -> list[tuple[str, dict[str, float]]]:
    found = []
    for section in ("text_queries", "title_queries"):
        for mode, metrics in results.get(section, {}).items():
            found.append((f"{section.replace('_queries', '')} / {mode}", metrics["recall_curve"]))
    if "recall_curve" in results.get("image_to_image", {}):
        found.append((f"image -> image ({results['image_to_image']['kind']})",
                      results["image_to_image"]["recall_curve"]))
    return found
