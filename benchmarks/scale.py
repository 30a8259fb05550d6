"""Scale: one `vitrine serve`-like process over an N-product collection built from real features.

The collection `scale-N` is made from the stored products of real collections in the benchmark home
(hm and fpi by default: run ingest_throughput.py first), replicated with small perturbations up to N
products (one photo each, text and photo vectors, every attribute and filter value). It is built once
and reused. The measurement then runs in a fresh process, so that RSS and the cold start are one
server's: open + the first query, warm text / filtered / photo latency, and recall@10 of the index
against an exact scan, unfiltered and with a selective filter (a colour on ~5% of products), and the
latency of a broad one (the most common colour). The
first process to open a collection saves its snapshot (vitrine/index/snapshot.py): run twice to see
both cold starts. Both backends' `scale-N` keep their snapshot in the home's one folder for it, so a
run on one backend replaces the other's: its next run builds it again.

With `--backend postgres` the collection is built in the database of VITRINE_DATABASE_URL (`make
services` starts one and writes it to .services.env); the sources stay in the home's SQLite files.

    python benchmarks/scale.py --products 100000 [--backend sqlite|postgres] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import BENCH_HOME, DATA, REPO, bench_settings, percentile, save
from PIL import Image

from vitrine.catalog.records import ProductRecord, record_from_fields
from vitrine.engine import Engine
from vitrine.index import partitions
from vitrine.index.store import Filters, ImageWrite, ProductWrite
from vitrine.search.query import Query

BATCH = 1000
WRITES = 20  # single-product writes timed until searchable
NOISE = 0.02  # relative perturbation of each copy's vectors: near-duplicates, harsher than a real catalog


def build(home: Path, sources: list[str], products: int, database_url: str | None) -> str:
    """`scale-N` from the sources' stored products; reused when it already holds N products."""
    name = f"scale-{products}"
    with Engine(bench_settings(home, database_url=None)) as embedded, \
            Engine(bench_settings(home, database_url=database_url)) as engine:
        if name in engine.collection_names() and engine.store(name).count() == products:
            return name
        if name in engine.collection_names():
            engine.delete_collection(name)
        originals: list[tuple[ProductRecord, np.ndarray, tuple[ImageWrite, ...]]] = []
        for source in sources:
            store = embedded.store(source)
            data = store.load_vectors(())
            position = {product_id: i for i, product_id in enumerate(data.ids)}
            first_image = np.searchsorted(data.image_product, np.arange(len(data.ids)))
            for start in range(0, len(data.ids), 2000):
                for product in store.get_products(data.ids[start:start + 2000]):
                    at = position[product.id]
                    first = int(first_image[at])
                    images = tuple(ImageWrite(ref=im.ref, path=im.path, sha256=im.sha256,
                                              features=data.image_features[first + i])
                                   for i, im in enumerate(product.images[:1]))
                    record = ProductRecord(id=product.id, title=product.title, description=product.description,
                                           category=product.category, colour=product.colour, price=product.price,
                                           image_refs=tuple(im.ref for im in images), attributes=product.attributes)
                    originals.append((record, data.text_vectors[at], images))
        engine.create_collection(name)
        store = engine.store(name)
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        for start in range(0, products, BATCH):
            writes = []
            for i in range(start, min(products, start + BATCH)):
                record, text, images = originals[i % len(originals)]
                copy = i // len(originals)
                noisy = text + rng.normal(0, NOISE / np.sqrt(len(text)), len(text)).astype(np.float32)
                writes.append(ProductWrite(
                    record=ProductRecord(**{**record.__dict__, "id": f"{record.id}~{copy}" if copy else record.id}),
                    text_vector=noisy / np.linalg.norm(noisy),
                    images=tuple(ImageWrite(ref=im.ref, path=im.path, sha256=im.sha256,
                                            features=im.features * (1 + rng.normal(0, NOISE, len(im.features)))
                                            .astype(np.float32)) for im in images),
                ))
            store.upsert(writes)
            done = min(products, start + BATCH)
            rate = done / (time.perf_counter() - started)
            print(f"\rbuilt {done}/{products} ({rate:.0f}/s)", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    return name


def rss_gb() -> dict[str, float]:
    """Resident memory of this process: in all, at its peak, its own (anonymous), and mapped files (the
    snapshot's pages, shared with every process that maps them)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    gb = {name: int(fields[key].split()[0]) / 2**20 for name, key in
          (("rss_gb", "VmRSS"), ("peak_rss_gb", "VmHWM"), ("rss_anon_gb", "RssAnon"), ("rss_file_gb", "RssFile"))}
    return {k: round(v, 2) for k, v in gb.items()}


def database_gb(url: str) -> float:
    """The database's size on disk (the server's memory is its own: shared_buffers and the page cache)."""
    import psycopg

    with psycopg.connect(url) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return round(int(size[0]) / 2**30, 2) if size else 0.0


def recall(found: list[np.ndarray], exact: list[np.ndarray]) -> float:
    return float(np.mean([len(set(f[:10].tolist()) & set(e[:10].tolist())) / max(1, min(10, len(e)))
                          for f, e in zip(found, exact, strict=True)]))


def fresh_photo(path: Path) -> bytes:
    """The photo saved again (other bytes, so not in the feature cache): a write encodes it, as a new one would."""
    out = io.BytesIO()
    with Image.open(path) as image:
        image.convert("RGB").save(out, format="JPEG", quality=93)
    return out.getvalue()


def updates(engine: Engine, name: str, texts: list[str]) -> dict[str, Any]:
    """Single-product writes through `put_product` (the HTTP API's PUT: its photo encoded), each followed
    by the first search that must find it by a new word: the time until a write is searchable, which
    the collection catches up with as a tail (vitrine/index/updates.py). Then text search latency with
    that tail, and a delete followed by the search that must no longer find it. The written products
    are copies under new ids, deleted at the end: the collection is left as it was."""
    store = engine.store(name)
    ids = engine.vectors(name).product_ids()
    picked = [ids[int(i)] for i in np.random.default_rng(2).choice(len(ids), WRITES, replace=False)]
    write_ms, searchable_ms = [], []
    for i, product in enumerate(store.get_products(picked)):
        word, copy = f"zqx{i:03d}", f"update-{i}"
        record = record_from_fields(copy, {"title": f"{product.title} {word}", "category": product.category,
                                                 "colour": product.colour, "price": product.price})
        photo = fresh_photo(Path(product.images[0].path))
        started = time.perf_counter()
        engine.put_product(name, record, [photo])
        written = time.perf_counter()
        hits = engine.search(Query(text=word, collection=name, top_k=5)).hits
        searchable_ms.append((time.perf_counter() - written) * 1000)
        write_ms.append((written - started) * 1000)
        if not hits or hits[0].id != copy:
            raise AssertionError(f"{copy} is not found by its word {word!r}")
    vectors = engine.vectors(name)
    tail = vectors.size - vectors.tail.start if vectors.tail is not None else 0
    tail_ms = []
    for text in texts:
        t = time.perf_counter()
        engine.search(Query(text=text, collection=name, top_k=10))
        tail_ms.append((time.perf_counter() - t) * 1000)
    started = time.perf_counter()
    store.delete(["update-0"])
    hits = engine.search(Query(text="zqx000", collection=name, top_k=5)).hits
    delete_ms = (time.perf_counter() - started) * 1000
    if "update-0" in [h.id for h in hits]:
        raise AssertionError("update-0 is found after its delete")
    store.delete([f"update-{i}" for i in range(WRITES)])
    engine.settle()  # suggestions, rebuilt behind the writes
    return {
        "write_p50_ms": round(percentile(write_ms, 50), 1),
        "write_to_searchable_p50_ms": round(percentile(searchable_ms, 50), 1),
        "write_to_searchable_max_ms": round(max(searchable_ms), 1),
        "tail_products": tail, "text_p50_ms_with_tail": round(percentile(tail_ms, 50), 1),
        "delete_to_gone_ms": round(delete_ms, 1),
    }


def measure(home: Path, name: str, queries: int, database_url: str | None) -> dict[str, Any]:
    """In this (fresh) process: cold start, memory, latency and index recall."""
    started = time.perf_counter()
    engine = Engine(bench_settings(home, database_url=database_url))
    engine.warm()
    engine.search(Query(text="black dress", collection=name, top_k=10))
    cold_start_s = time.perf_counter() - started
    vectors = engine.vectors(name)
    titles = [vectors.data.ids[i] for i in np.random.default_rng(1).choice(vectors.size, queries, replace=False)]
    texts = [f"{p.colour} {p.category}".strip() for p in engine.store(name).get_products(titles)]
    colours, counts = np.unique(vectors.data.facets["colour"][1], return_counts=True) \
        if "colour" in vectors.data.facets else (np.zeros(0), np.zeros(0))
    share = counts / vectors.size
    colour = vectors.data.facets["colour"][2][int(colours[np.argmin(np.abs(share - 0.05))])] if len(colours) else ""
    # ... and the most common colour, for a broad filter (black: a quarter of the products)
    common = vectors.data.facets["colour"][2][int(colours[np.argmax(share)])] if len(colours) else ""

    def timed(query: Query) -> float:
        t = time.perf_counter()
        engine.search(query)
        return (time.perf_counter() - t) * 1000

    text_ms = [timed(Query(text=t, collection=name, top_k=10)) for t in texts]
    filtered = Filters(equals={"colour": (colour,)})
    filtered_ms = [timed(Query(text=t, collection=name, top_k=10, filters=filtered)) for t in texts]
    photos = sorted((DATA / "luma" / "images").glob("*.jpg"))[:max(10, queries // 5)]
    image_ms = [timed(Query(image=p.read_bytes(), collection=name, top_k=10)) for p in photos]

    # The server's memory after its searches, before the recall check below: its exact scans of every
    # vector map the float32 tables whole, which no search does.
    memory = rss_gb()
    # A broad filter: searched through the graphs of its value's products when it has them (above the exact
    # limit, index/partitions.py), else scored whole; its memory is read on its own.
    broad = Filters(equals={"colour": (common,)})
    broad_ms = [timed(Query(text=t, collection=name, top_k=10, filters=broad)) for t in texts]
    memory["rss_after_broad_filters_gb"] = rss_gb()["rss_gb"]

    # Index recall: the dense text signal's top 10 by the index's path vs an exact scan of every vector.
    query_vectors = engine.text_encoder.encode(texts)
    allowed = engine.store(name).filter_rows(filtered)
    subset = vectors.positions_of_rows(allowed)
    broad_subset = vectors.positions_of_rows(engine.store(name).filter_rows(broad))
    walked = partitions.for_filters(vectors.partitions, broad)
    exact, exact_filtered, found, found_filtered, exact_broad, found_broad = [], [], [], [], [], []
    for q in query_vectors:
        scores = vectors.data.text_vectors @ q
        exact.append(np.argsort(-scores)[:10])
        exact_filtered.append(subset[np.argsort(-scores[subset])[:10]])
        if vectors.exact:
            approximate = vectors.text_scores(q, approximate=True)
            candidates = np.argsort(-approximate)[:100]
        else:
            candidates = vectors.ann_candidates(q, None, 2000)
        rescored = candidates[np.argsort(-(vectors.data.text_vectors[candidates] @ q))]
        found.append(rescored[:10])
        # As the searcher does: a filtered query scores the filter's products (quantized when they are many),
        # then re-scores its best candidates exactly.
        approximate = vectors.text_scores(q, subset, approximate=True)
        best = subset[np.argsort(-approximate)[:100]]
        found_filtered.append(best[np.argsort(-(vectors.data.text_vectors[best] @ q))][:10])
        exact_broad.append(broad_subset[np.argsort(-scores[broad_subset])[:10]])
        if walked:  # as the searcher does: candidates through the graphs, re-scored exactly
            best = vectors.filter_candidates(q, None, 2000, None, within=broad_subset, partitions=walked)
        else:
            best = broad_subset[np.argsort(-vectors.text_scores(q, broad_subset, approximate=True))[:100]]
        found_broad.append(best[np.argsort(-(vectors.data.text_vectors[best] @ q))][:10])

    import faiss

    memory["rss_after_recall_check_gb"] = rss_gb()["rss_gb"]  # before the faiss comparison, which copies them
    flat = faiss.IndexFlatIP(vectors.data.text_vectors.shape[1])
    flat.add(np.ascontiguousarray(vectors.data.text_vectors))
    flat_ms = []
    for q in query_vectors:
        t = time.perf_counter()
        flat.search(q[None, :], 10)
        flat_ms.append((time.perf_counter() - t) * 1000)
    changes = updates(engine, name, texts)  # last: it changes the collection
    return {
        "products": vectors.size, "images": len(vectors.image_vectors), "exact_scan": vectors.exact, **memory,
        "cold_start_s": round(cold_start_s, 1),
        "text_p50_ms": round(percentile(text_ms, 50), 1), "text_p95_ms": round(percentile(text_ms, 95), 1),
        "filtered_p50_ms": round(percentile(filtered_ms, 50), 1),
        "filtered_p95_ms": round(percentile(filtered_ms, 95), 1),
        "filter": {"colour": colour, "share": round(len(subset) / vectors.size, 3)},
        "broad_filtered_p50_ms": round(percentile(broad_ms, 50), 1),
        "broad_filtered_p95_ms": round(percentile(broad_ms, 95), 1),
        "broad_filter": {"colour": common, "share": round(float(share.max()) if len(share) else 0.0, 3),
                         "own_graphs": bool(walked)},
        "broad_filtered_recall_at_10": round(recall(found_broad, exact_broad), 4),
        "image_p50_ms": round(percentile(image_ms, 50), 1),
        "recall_at_10": round(recall(found, exact), 4),
        "filtered_recall_at_10": round(recall(found_filtered, exact_filtered), 4),
        "faiss_flat_text_p50_ms": round(percentile(flat_ms, 50), 2),
        "queries": len(texts), "updates": changes,
        **({"database_gb": database_gb(database_url)} if database_url else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, required=True)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--sources", default="hm,fpi", help="collections in the home to replicate")
    parser.add_argument("--home", type=Path, default=BENCH_HOME)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--measure", metavar="COLLECTION", help=argparse.SUPPRESS)  # the fresh process's part
    args = parser.parse_args()
    database_url = os.environ.get("VITRINE_DATABASE_URL") if args.backend == "postgres" else None
    if args.backend == "postgres" and not database_url:
        sys.exit("--backend postgres needs VITRINE_DATABASE_URL: `make services`, then `set -a; . ./.services.env`")
    if args.measure:
        print(json.dumps(measure(args.home, args.measure, args.queries, database_url)))
        return
    started = time.perf_counter()
    name = build(args.home, [s.strip() for s in args.sources.split(",") if s.strip()], args.products, database_url)
    build_s = time.perf_counter() - started
    out = subprocess.run([sys.executable, __file__, "--products", str(args.products), "--home", str(args.home),
                          "--backend", args.backend, "--queries", str(args.queries), "--measure", name],
                         capture_output=True, text=True, cwd=REPO, check=True)
    result = {"backend": args.backend, "build_s": round(build_s, 1), **json.loads(out.stdout.splitlines()[-1])}
    save(f"scale_{args.backend}_{args.products}", result)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
