"""Query understanding on and off, on the same collections and queries:

- the dev ground truth (hm/gt.json, fpi/gt.json: colour + type queries): no query may get worse
  beyond noise;
- the same queries misspelt (one letter of the longest word swapped with its neighbour): typo tolerance;
- constrained queries written from the Luma catalog (price phrases, colours, gender, categories,
  typos and synonyms), relevant = the products that meet every constraint.

Needs the hm and fpi collections (run ingest_throughput.py first); ingests luma if missing.

    python benchmarks/query_understanding.py [--boost 0.05]
"""

from __future__ import annotations

import argparse
import csv
import json
from typing import Any

from common import DATA, bench_settings, save

from vitrine.engine import Engine
from vitrine.search import searcher
from vitrine.search.metrics import ndcg_at, reciprocal_rank, summarise
from vitrine.search.query import Query

WORSE = 0.1  # a query whose reciprocal rank drops by more than this counts as worse

# (query, category path contains, colour, lowest price, highest price); "cheap" is the collection's
# lower quartile, written here as its value (29.0) so relevance is fixed.
LUMA: list[tuple[str, str, str | None, float | None, float | None]] = [
    ("hoodies under 50", "Hoodies", None, None, 50),
    ("men's jackets below $80", "Men/Tops/Jackets", None, None, 80),
    ("women tees between 20 and 30", "Women/Tops/Tees", None, 20, 30),
    ("cheap shorts", "Shorts", None, None, 29),
    ("black hoodie for men", "Men/Tops/Hoodies", "Black", None, None),
    ("red jacket", "Jackets", "Red", None, None),
    ("yellow tank", "Tanks", "Yellow", None, None),
    ("women pants 40-60", "Women/Bottoms/Pants", None, 40, 60),
    ("bags under 40", "Gear/Bags", None, None, 40),
    ("purple shorts for women", "Women/Bottoms/Shorts", "Purple", None, None),
    ("gray sweatshirt over 60", "Hoodies & Sweatshirts", "Gray", 60, None),
    ("orange tee", "Tees", "Orange", None, None),
    ("blue womens jacket", "Women/Tops/Jackets", "Blue", None, None),
    ("green bra", "Bras", "Green", None, None),
    ("mens pants under 45", "Men/Bottoms/Pants", None, None, 45),
    ("watches over 50", "Gear/Watches", None, 50, None),
    ("hoddie under 50", "Hoodies", None, None, 50),
    ("jaket for women", "Women/Tops/Jackets", None, None, None),
    ("tshirt for men", "Men/Tops/Tees", None, None, None),
    ("ladies running shorts", "Women/Bottoms/Shorts", None, None, None),
    ("white tee for women under 30", "Women/Tops/Tees", "White", None, 30),
    ("black pants for men 30 to 50", "Men/Bottoms/Pants", "Black", 30, 50),
    ("lavender tank top", "Tanks", "Lavender", None, None),
    ("cheap hoodie", "Hoodies", None, None, 29),
    ("men shorts under $35", "Men/Bottoms/Shorts", None, None, 35),
]


def luma_truth() -> list[tuple[str, set[str]]]:
    rows = list(csv.DictReader((DATA / "luma" / "catalog.csv").open()))
    queries = []
    for text, category, colour, low, high in LUMA:
        relevant = set()
        for r in rows:
            price = float(r["price"]) if r["price"] else None
            if category not in r["category"] and category not in r["all_categories"]:
                continue
            if colour and colour not in r["colours"].split("|"):
                continue
            if (low is not None or high is not None) and price is None:
                continue
            if (low is not None and price < low) or (high is not None and price > high):  # type: ignore[operator]
                continue
            relevant.add(r["product_id"])
        if relevant:
            queries.append((text, relevant))
    return queries


def misspelt(text: str) -> str:
    """The longest word with two middle letters swapped: "shirts" -> "shrits"."""
    words = text.split()
    i = max(range(len(words)), key=lambda k: len(words[k]))
    w = words[i]
    if len(w) >= 5:
        m = len(w) // 2
        words[i] = w[: m - 1] + w[m] + w[m - 1] + w[m + 1 :]
    return " ".join(words)


def run(engine: Engine, collection: str, queries: list[tuple[str, set[str]]], understand: bool) -> list[Any]:
    runs = []
    for text, relevant in queries:
        hits = engine.search(Query(text=text, collection=collection, top_k=100, understand=understand,
                                   facets=())).hits
        runs.append(([h.id for h in hits], relevant))
    return runs


def compare(engine: Engine, collection: str, queries: list[tuple[str, set[str]]]) -> dict[str, Any]:
    off = run(engine, collection, queries, False)
    on = run(engine, collection, queries, True)
    worse = [(q[0], round(reciprocal_rank(*a), 3), round(reciprocal_rank(*b), 3))
             for q, a, b in zip(queries, off, on, strict=True) if reciprocal_rank(*b) < reciprocal_rank(*a) - WORSE]
    better = sum(reciprocal_rank(*b) > reciprocal_rank(*a) + WORSE for a, b in zip(off, on, strict=True))
    ndcg_drops = sum(ndcg_at(*b, 10) < ndcg_at(*a, 10) - WORSE for a, b in zip(off, on, strict=True))
    keys = ("mrr", "ndcg@10", "p@10", "r@10")
    return {
        "queries": len(queries),
        "off": {k: round(v, 4) for k, v in summarise(off).items() if k in keys},
        "on": {k: round(v, 4) for k, v in summarise(on).items() if k in keys},
        "better": better, "worse": len(worse), "ndcg_worse": ndcg_drops, "worse_queries": worse[:10],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--boost", type=float, default=searcher.FACET_BOOST)
    args = parser.parse_args()
    searcher.FACET_BOOST = args.boost
    results: dict[str, Any] = {"facet_boost": args.boost}
    with Engine(bench_settings(search_cache_size=0)) as engine:
        if "luma" not in engine.collection_names():
            engine.ingest("luma", DATA / "luma" / "catalog.csv")
        for collection in ("hm", "fpi"):
            gt = [(q["query"], {str(r) for r in q["relevant"]})
                  for q in json.loads((DATA / collection / "gt.json").read_text())["text_queries"]]
            results[f"{collection}_gt"] = compare(engine, collection, gt)
            results[f"{collection}_gt_misspelt"] = compare(engine, collection, [(misspelt(q), r) for q, r in gt])
        results["luma_constrained"] = compare(engine, "luma", luma_truth())
    for name, result in results.items():
        print(name, json.dumps(result) if isinstance(result, dict) else result)
    path = save("query_understanding", results)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
