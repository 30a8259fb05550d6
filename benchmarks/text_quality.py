"""Text-search quality on the dev ground truth (hm/gt.json, fpi/gt.json): r@1, r@10, hit@10, MRR,
P@10, nDCG@10, for the semantic signal alone, the keyword signal alone, and their blend at several
keyword weights. Needs the hm and fpi collections (run ingest_throughput.py first).

    python benchmarks/text_quality.py
"""

from __future__ import annotations

import json

from common import DATA, bench_settings, save

from vitrine.engine import Engine
from vitrine.search.metrics import summarise
from vitrine.search.query import Query

WEIGHTS = (0.0, 0.2, 0.35, 0.5, 0.7, 1.0)


def evaluate(engine: Engine, collection: str) -> dict[str, float]:
    queries = json.loads((DATA / collection / "gt.json").read_text())["text_queries"]
    runs = []
    for q in queries:
        hits = engine.search(Query(text=q["query"], collection=collection, top_k=100)).hits
        runs.append(([h.id for h in hits], {str(r) for r in q["relevant"]}))
    return {k: round(v, 4) for k, v in summarise(runs).items()}


def main() -> None:
    results: dict[str, dict[str, dict[str, float]]] = {}
    for weight in WEIGHTS:
        with Engine(bench_settings(keyword_weight=weight)) as engine:
            for collection in ("hm", "fpi"):
                metrics = evaluate(engine, collection)
                results.setdefault(collection, {})[f"keyword_weight={weight}"] = metrics
                print(collection, weight, metrics)
    path = save("text_quality", {"results": results})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
