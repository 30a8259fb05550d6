"""Catalog reading speed and memory: rows read and validated per second (pass 1 of an ingest, no
photos), for the plain H&M + FPI CSVs and for shop exports of the same products built in each
platform's shape (4 variants a product), with the peak Python memory while reading each.

    python benchmarks/catalog_reading.py [--products 5000]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from common import DATA, REPO, save

sys.path.insert(0, str(REPO / "tests"))

import shop_exports as shop  # noqa: E402  (the test suite's export writers)

from vitrine.catalog.ingest import check_catalog  # noqa: E402

COLOURS = ("Black", "White")


def shop_products(n: int) -> list[shop.ShopProduct]:
    """H&M rows as shop products, each in four colours (photos repeat: nothing is fetched)."""
    with (DATA / "hm" / "catalog.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    # Titles made unique: a Shopify handle comes from the title, and H&M repeats titles.
    return [shop.ShopProduct(r["product_id"], f"{r['title']} {r['product_id']}", r["description"],
                             f"{r['section']}/{r['category']}", 19.99, "Cotton", COLOURS,
                             {c: (r["image"],) for c in COLOURS}) for r in rows]


def measure(path: Path, *, memory: bool) -> dict[str, Any]:
    if memory:
        tracemalloc.start()
    started = time.perf_counter()
    rows = check_catalog(path, mapping=None, fmt=None)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if memory else 0
    if memory:
        tracemalloc.stop()
    result = {"rows": rows, "seconds": round(elapsed, 3), "rows_per_s": round(rows / elapsed),
              "file_mb": round(path.stat().st_size / 2**20, 2)}
    if memory:
        result["peak_traced_mb"] = round(peak / 2**20, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=5000)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for name in ("hm", "fpi"):
        results[f"plain csv ({name})"] = measure(DATA / name / "catalog.csv", memory=False)
    products = shop_products(args.products)
    base = "https://cdn.shop.example"
    items = shop.google_items(products, base)
    exports = {
        "shopify-json": lambda: __import__("json").dumps({"products": shop.shopify_products_json(products, base)}),
        "shopify-csv": lambda: shop.shopify_csv(products, base),
        "woocommerce": lambda: shop.woocommerce_csv(products, base),
        "magento": lambda: shop.magento_csv(products),
        "google-xml": lambda: shop.google_rss(items),
        "google-tsv": lambda: shop.google_tsv(items),
        "etsy": lambda: shop.etsy_csv(products, base),
    }
    with tempfile.TemporaryDirectory() as folder:
        for fmt, build in exports.items():
            path = shop.write(Path(folder), f"{fmt}.export", build())
            results[fmt] = {**measure(path, memory=False), "peak": measure(path, memory=True)["peak_traced_mb"]}
            print(fmt, results[fmt], flush=True)
    for name, result in results.items():
        print(f"{name:22} {result}")
    save("catalog_reading", {"products": args.products, "variants_per_product": 4, "results": results})


if __name__ == "__main__":
    main()
