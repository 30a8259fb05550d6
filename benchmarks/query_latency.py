"""Warm query latency (p50/p95/p99) for text and image queries over every collection in the
benchmark home: run ingest_throughput.py first (hm + fpi, ~19k products).

    python benchmarks/query_latency.py [--images 300]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
from pathlib import Path

from common import DATA, bench_settings, percentile, save
from PIL import Image

from vitrine.engine import Engine
from vitrine.search.query import Query


def as_user_photo(path: Path) -> bytes:
    """A catalog photo, cropped a little and re-encoded: new bytes, so the feature cache cannot answer."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    buffer = io.BytesIO()
    image.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def measure(engine: Engine, queries: list[Query]) -> dict[str, float]:
    for query in queries[:20]:  # warm caches and ORT arenas
        engine.search(query)
    wall, stages = [], {"encode": [], "index": [], "fetch": []}  # type: ignore[var-annotated]
    for query in queries:
        started = time.perf_counter()
        response = engine.search(query)
        wall.append((time.perf_counter() - started) * 1000)
        for stage in stages:
            stages[stage].append(response.timing_ms[stage])
    result = {"queries": len(queries), "p50_ms": percentile(wall, 50), "p95_ms": percentile(wall, 95),
              "p99_ms": percentile(wall, 99)}
    result |= {f"{stage}_p50_ms": percentile(values, 50) for stage, values in stages.items()}
    return {k: round(v, 2) for k, v in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=300)
    args = parser.parse_args()
    texts = [q["query"] for name in ("hm", "fpi")
             for q in json.loads((DATA / name / "gt.json").read_text())["text_queries"]]
    photos = sorted((DATA / "hm" / "images").rglob("*.jpg")) + sorted((DATA / "fpi" / "images").rglob("*.jpg"))
    photos = random.Random(1).sample(photos, args.images)
    with Engine(bench_settings(search_cache_size=0)) as engine:  # measure searches, not the result cache
        engine.searcher.text_vectors.capacity = 0  # nor the query-vector cache
        products = sum(engine.store(n).count() for n in engine.collection_names())
        engine.warm()
        text = measure(engine, [Query(text=t, top_k=10) for t in texts])
        image = measure(engine, [Query(image=as_user_photo(p), top_k=10) for p in photos])
        filtered = measure(engine, [Query(text=t, top_k=10, filters=_colour_filter(t)) for t in texts])
        ann = approximate(engine, [Query(text=t, top_k=10) for t in texts],
                          [Query(image=as_user_photo(p), top_k=10) for p in photos])
    print(f"{products} products; text {text}; image {image}; text+filter {filtered}; hnsw {ann}")
    path = save("query_latency", {"products": products, "collections": "all (hm + fpi)", "text": text,
                                  "image": image, "text_with_filter": filtered, "hnsw": ann,
                                  "threads": engine.settings.threads})
    print(f"saved {path}")


def approximate(exact: Engine, text: list[Query], image: list[Query]) -> dict[str, object]:
    """The HNSW path forced on (exact limit 0): its latency, and its recall@10 against exact search."""
    result: dict[str, object] = {}
    with Engine(bench_settings(exact_search_limit=0, search_cache_size=0)) as ann:
        ann.searcher.text_vectors.capacity = 0
        ann.warm()
        for name, queries in (("text", text), ("image", image)):
            overlap = [len({h.id for h in ann.search(q).hits} & {h.id for h in exact.search(q).hits}) / 10
                       for q in queries]
            result[name] = {"recall@10_vs_exact": round(sum(overlap) / len(overlap), 4), **measure(ann, queries)}
    return result


def _colour_filter(text: str):  # type: ignore[no-untyped-def]
    from vitrine.index.store import Filters

    return Filters(equals={"colour": (text.split()[-2] if len(text.split()) > 2 else text.split()[0],)})


if __name__ == "__main__":
    main()
