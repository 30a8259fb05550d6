"""Quality of the fashion model on products it never saw, and what `vitrine train` adds.

1. Each dev catalog (fpi, hm, luma) is split by a seeded hash of its variant group: 80% train,
   20% test, as collections `<catalog>-train` / `<catalog>-test` (ingested once, features cached).
2. `all`: heads trained on the three train splits (the base recipe), evaluated on each test split:
   text-only, cross-modal only and fused text queries, titles, photo -> photo, zero-shot labels;
   and a sweep of the fused weight, which chose the default.
3. Leave one catalog out (hm, fpi): heads trained on the other catalogs' full data, evaluated on the
   left-out test split; then fine-tuned on the left-out train split (`vitrine train`), evaluated again.

    python benchmarks/fashion_model.py            # results/fashion_model.json, plots in docs/img/
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from common import DATA, REPO, bench_settings, save

from vitrine.engine import Engine
from vitrine.models.heads import FashionHeads
from vitrine.models.training import TrainConfig, collect, holdout_mask, train_heads
from vitrine.search import evaluation as ev
from vitrine.training import train_collection

HOME = Path("/tmp/vitrine-quality")
CATALOGS = ("fpi", "hm", "luma")
TEST_SHARE = 0.2
SPLIT_SEED = 1
LABEL_COLUMNS = {"fpi": {"colour": "colour", "category": "category"},
                 "hm": {"colour": "colour", "category": "category", "pattern": "graphical_appearance"},
                 "luma": {}}
GT = {"fpi": DATA / "fpi" / "gt.json", "hm": DATA / "hm" / "gt.json"}
WEIGHTS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


def split(engine: Engine, catalog: str) -> None:
    """`<catalog>-train` and `<catalog>-test` collections: the full catalog, then the other part deleted."""
    for part in ("train", "test"):
        name = f"{catalog}-{part}"
        if name in engine.collection_names():
            continue
        engine.ingest(name, DATA / catalog / "catalog.csv")
        store = engine.store(name)
        ids = store.load_vectors([]).ids
        products = store.get_products(ids)
        test = holdout_mask([str(p.attributes.get("group_id", p.id)) for p in products], TEST_SHARE, SPLIT_SEED)
        store.delete([p.id for p, t in zip(products, test, strict=True) if t == (part == "train")])
        print(f"{name}: {store.count()} products", flush=True)


def install(engine: Engine, collection: str, heads: FashionHeads) -> str:
    version = engine.model_versions(collection).save(FashionHeads(weights=heads.weights, card=dict(heads.card)))
    return engine.use_model(collection, f"v{version}")


def evaluate(engine: Engine, catalog: str, *, labels: bool = True) -> dict[str, Any]:
    name = f"{catalog}-test"
    out: dict[str, Any] = {"products": engine.store(name).count()}
    if catalog in GT:
        gt = ev.GroundTruth.load(GT[catalog])
        out["text_queries"] = ev.evaluate_queries(engine, name, gt.text_queries, ["text", "image", "fused"])
        if gt.variant_groups:
            out["image_to_image"] = ev.evaluate_image_to_image(engine, name, gt.variant_groups, 1000)
    else:
        out["image_to_image"] = ev.evaluate_image_to_image(engine, name, None, 1000)
    out["title_queries"] = ev.evaluate_queries(engine, name, ev.title_queries(engine, name, 1000),
                                               ["text", "image", "fused"], label="titles")
    if labels and LABEL_COLUMNS[catalog]:
        out["labels"] = ev.evaluate_labels(engine, name, LABEL_COLUMNS[catalog], 2000)
    return out


def sweep(engine: Engine, catalog: str) -> dict[str, float]:
    """Fused MRR of the ground-truth text queries per cross-modal weight."""
    gt = ev.GroundTruth.load(GT[catalog])
    found = {}
    for weight in WEIGHTS:
        ev.MODES["sweep"] = weight
        result = ev.evaluate_queries(engine, f"{catalog}-test", gt.text_queries, ["sweep"])
        found[str(weight)] = result["sweep"]["mrr"]
    ev.MODES.pop("sweep", None)
    return found


def train_on(engine: Engine, collections: list[str], seed: int) -> FashionHeads:
    data = collect([engine.store(c) for c in collections], engine.text_encoder)
    heads, card = train_heads(data, TrainConfig(seed=seed, threads=engine.settings.threads))
    print(f"trained on {collections}: held-out {card['heldout']} in {card['train_seconds']} s", flush=True)
    return heads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fresh", action="store_true", help="rebuild the split collections")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(HOME / "collections", ignore_errors=True)
    results: dict[str, Any] = {"test_share": TEST_SHARE, "split_seed": SPLIT_SEED}
    with Engine(bench_settings(HOME)) as engine:
        for catalog in CATALOGS:
            split(engine, catalog)
        heads = train_on(engine, [f"{c}-train" for c in CATALOGS], args.seed)
        results["all"] = {}
        for catalog in CATALOGS:
            install(engine, f"{catalog}-test", heads)
            results["all"][catalog] = evaluate(engine, catalog)
            if catalog in GT:
                results["all"][catalog]["fused_weight_sweep"] = sweep(engine, catalog)
            print(catalog, _brief(results["all"][catalog]), flush=True)
            if catalog in GT:
                ev.plot_curves(results["all"][catalog], REPO / "docs" / "img" / f"recall-{catalog}.png",
                               f"{catalog} test split, heads trained on the train splits")
        results["leave_one_out"] = {}
        for left_out in ("hm", "fpi"):
            others = [f"{c}-train" for c in CATALOGS if c != left_out] + [f"{c}-test" for c in CATALOGS
                                                                          if c != left_out]
            base = train_on(engine, others, args.seed)
            install(engine, f"{left_out}-test", base)
            before = evaluate(engine, left_out, labels=False)
            install(engine, f"{left_out}-train", base)
            card = train_collection(engine, f"{left_out}-train")
            tuned = engine.model_versions(f"{left_out}-train").load(
                card["version"], image_model=engine.image_model_of(f"{left_out}-train"))
            assert tuned is not None
            install(engine, f"{left_out}-test", tuned)
            after = evaluate(engine, left_out, labels=False)
            results["leave_one_out"][left_out] = {"without": before, "fine_tuned": after,
                                                  "train_card": {k: card[k] for k in ("heldout", "heldout_before",
                                                                                      "train_seconds", "data")}}
            print(left_out, "without:", _brief(before), "\n   fine-tuned:", _brief(after), flush=True)
    print(f"saved {save('fashion_model', results)}")


def _brief(result: dict[str, Any]) -> str:
    parts = []
    for mode, m in result.get("text_queries", {}).items():
        parts.append(f"gt/{mode} MRR {m['mrr']:.3f}")
    for mode, m in result.get("title_queries", {}).items():
        parts.append(f"title/{mode} R@10 {m['r@10']:.3f}")
    if "image_to_image" in result:
        parts.append(f"photo MRR {result['image_to_image'].get('mrr', float('nan')):.3f}")
    for kind, m in result.get("labels", {}).items():
        parts.append(f"{kind} acc {m['accuracy']:.3f}")
    return "; ".join(parts)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
