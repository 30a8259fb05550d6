"""How long `vitrine reindex`'s swap holds a collection's write lock (writers wait meanwhile), and how
long a read started during the swap takes (reads do not wait for it).

Writes N synthetic products with one photo each (built-in feature size) into a SQLite collection under
the bench home, then times `swap_image_features` to features of another size, every one already in the
cache (as after the reindex's encoding step), so it measures the transaction, not the encoder.

    python benchmarks/reindex_swap.py --products 100000 [--dim 64] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time

import numpy as np
from common import BENCH_HOME, save

from vitrine.catalog.records import ProductRecord
from vitrine.index.sqlite_store import SqliteCollections
from vitrine.index.store import ImageWrite, ProductWrite

RAW_DIM = 1328  # EfficientNet-Lite0 + the colour descriptor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64, help="the new encoder's raw feature size")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = BENCH_HOME / "reindex-swap"
    shutil.rmtree(root, ignore_errors=True)
    store = SqliteCollections(root).open("swap", create=True)
    store.set_meta("image_model", "before")
    rng = np.random.default_rng(0)
    old, text = rng.normal(size=RAW_DIM).astype(np.float32), rng.normal(size=384).astype(np.float32)
    started = time.perf_counter()
    for start in range(0, args.products, 2000):
        store.upsert([ProductWrite(
            record=ProductRecord(id=f"p{i}", title=f"dress {i}", description="", category="Dresses", colour="red",
                                 price=10.0, image_refs=(f"r{i}",)),
            text_vector=text, images=(ImageWrite(ref=f"r{i}", path=f"/photos/{i}.jpg", sha256=f"{i:064d}",
                                                 features=old),))
            for i in range(start, min(args.products, start + 2000))])
    written = time.perf_counter() - started
    new = rng.normal(size=args.dim).astype(np.float32)
    read_s: list[float] = []

    def timed_read() -> None:  # what a search reads: the generation, then its hits' products
        began = time.perf_counter()
        store.generation()
        store.get_products([f"p{i}" for i in range(10)])
        read_s.append(time.perf_counter() - began)

    reader = threading.Thread(target=timed_read)

    def features_of(refs: list[tuple[str, str]]) -> dict[str, np.ndarray]:
        if not reader.is_alive() and not read_s:
            reader.start()  # inside the swap's transaction
        return {sha: new for sha, _ in refs}

    started = time.perf_counter()
    swapped = store.swap_image_features(features_of, {"image_model": "after"})
    seconds = time.perf_counter() - started
    reader.join()
    store.close()
    shutil.rmtree(root, ignore_errors=True)
    result = {"products": args.products, "photos_swapped": swapped, "new_dim": args.dim,
              "write_s": round(written, 1), "swap_s": round(seconds, 2),
              "photos_per_s": round(swapped / seconds), "read_during_swap_ms": round(read_s[0] * 1000, 1)}
    save(f"reindex_swap_{args.products}", result)
    print(json.dumps(result, indent=2) if args.json else
          f"{swapped} photos swapped to {args.dim}-d features in {seconds:.2f} s "
          f"({swapped / seconds:,.0f} photos/s); writing them took {written:.1f} s; a read started during the "
          f"swap took {read_s[0] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
