"""Memory of a serving process while its collection is rebuilt in the background.

Past TAIL_MERGE written products the engine builds the collection whole again in a thread (writing a
new snapshot), while searches go on from the old one and its tail (vitrine/index/updates.py). This
opens `scale-N` (made by scale.py) as a server would, searches, writes TAIL_MERGE + 1 products
through `put_product` (copies under new ids, their photos from the feature cache), searches so that
the rebuild starts, and samples the process's memory every second until it is done; then it deletes
the copies. It prints the memory before, at the rebuild's peak, and after, and how long it took.

    python benchmarks/rebuild_memory.py --products 1000000 [--json]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import BENCH_HOME, bench_settings, save

from vitrine.catalog.records import record_from_fields
from vitrine.engine import Engine
from vitrine.index import updates
from vitrine.search.query import Query


def memory_gb() -> tuple[float, float]:
    """(resident, of which the process's own: anonymous) in GB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 2**20, int(fields["RssAnon"].split()[0]) / 2**20


def measure(home: Path, name: str) -> dict[str, Any]:
    with Engine(bench_settings(home, search_cache_size=0)) as engine:
        engine.warm()
        engine.search(Query(text="black dress", collection=name, top_k=10))
        before = memory_gb()
        store = engine.store(name)
        ids = engine.vectors(name).product_ids()
        picked = [ids[int(i)] for i in np.random.default_rng(3).choice(len(ids), updates.TAIL_MERGE + 1, replace=False)]
        samples: list[tuple[float, float]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                samples.append(memory_gb())

        sampler = threading.Thread(target=sample)  # from before the writes: one of them may start the rebuild
        sampler.start()
        copies = []
        for i, product in enumerate(store.get_products(picked)):
            copy = f"rebuild-{i}"
            record = record_from_fields(copy, {"title": product.title, "category": product.category,
                                               "colour": product.colour, "price": product.price})
            engine.put_product(name, record, [Path(product.images[0].path).read_bytes()])
            copies.append(copy)
        started = time.perf_counter()
        served = engine.vectors(name)  # catches up with the tail, and starts the rebuild behind it
        assert served.tail is not None, "no tail: nothing to rebuild"
        engine.search(Query(text="black dress", collection=name, top_k=10))
        engine.settle()
        rebuild_s = time.perf_counter() - started
        done.set()
        sampler.join()
        rebuilt = engine.vectors(name)
        assert rebuilt.tail is None or rebuilt.tail.base is not served.tail.base, "the collection was not rebuilt"
        after = memory_gb()
        store.delete(copies)
        return {
            "products": rebuilt.live_size, "written": len(copies), "rebuild_s_after_the_writes": round(rebuild_s, 1),
            "rss_before_gb": round(before[0], 2), "anon_before_gb": round(before[1], 2),
            "rss_peak_gb": round(max(s[0] for s in samples), 2) if samples else None,
            "anon_peak_gb": round(max(s[1] for s in samples), 2) if samples else None,
            "rss_after_gb": round(after[0], 2), "anon_after_gb": round(after[1], 2),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, required=True)
    parser.add_argument("--home", type=Path, default=BENCH_HOME)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.home, f"scale-{args.products}")
    save(f"rebuild_memory_{args.products}", result)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
