"""What search analytics add to a search: the record each search writes (an INSERT on the search path)
and the prune run every PRUNE_EVERY writes (a count of the table's rows, then the deletes past the
retention and `analytics_max_rows`), on a table already holding --rows searches. SQLite keeps them in
the home's analytics.sqlite; with `--backend postgres`, the database of VITRINE_DATABASE_URL (`make
services`), in its vitrine_app schema. The rows it adds are removed at the end.

    python benchmarks/analytics_cost.py --rows 1000000 [--backend sqlite|postgres] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import bench_settings, percentile, save

from vitrine.analytics.store import PRUNE_EVERY, SCHEMA, Analytics
from vitrine.engine import Engine

COLLECTION = "bench-analytics"
# One statement per dialect (placeholders are "?" in both) that writes `rows` past searches, spread over 30 days.
FILL = {
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
              "INSERT INTO searches SELECT 'fill-' || i, ? - i * 2.6, ?, 'query ' || (i % 5000), '{}', 'text', "
              "10, 12.0 FROM n",
    # mod(), not %: psycopg reads % as a placeholder
    "postgres": "INSERT INTO searches SELECT 'fill-' || i, ? - i * 2.6, ?, 'query ' || mod(i, 5000), '{}', 'text', "
                "10, 12.0 FROM generate_series(1, ?) AS i",
}


def measure(engine: Engine, rows: int, writes: int) -> dict[str, float]:
    tables = engine.backend.tables("analytics", SCHEMA)
    analytics = Analytics(tables, retention_days=90, max_rows=10 * rows)  # nothing past the limits: the count alone
    now = time.time()
    try:
        started = time.perf_counter()
        if tables.dialect == "sqlite":
            tables.change(FILL["sqlite"], (rows, now, COLLECTION))
        else:
            tables.change(FILL["postgres"], (now, COLLECTION, rows))
        fill_s = time.perf_counter() - started
        record_ms = []
        for i in range(writes):
            t = time.perf_counter()
            analytics.record_search(collection=COLLECTION, query=f"black dress {i % 50}", filters={}, kind="text",
                                    hits=10, latency_ms=12.0)
            record_ms.append((time.perf_counter() - t) * 1000)
        prune_ms = []
        for _ in range(5):
            t = time.perf_counter()
            analytics.prune()
            prune_ms.append((time.perf_counter() - t) * 1000)
        return {"rows": rows, "fill_s": round(fill_s, 1), "writes": writes,
                "record_p50_ms": round(percentile(record_ms, 50), 3),
                "record_p95_ms": round(percentile(record_ms, 95), 3),
                "prune_ms": round(percentile(prune_ms, 50), 1),
                "prune_every_writes": PRUNE_EVERY,
                "prune_per_search_ms": round(percentile(prune_ms, 50) / PRUNE_EVERY, 3)}
    finally:
        tables.change("DELETE FROM searches WHERE collection = ?", (COLLECTION,))
        analytics.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    database_url = os.environ.get("VITRINE_DATABASE_URL") if args.backend == "postgres" else None
    if args.backend == "postgres" and not database_url:
        sys.exit("--backend postgres needs VITRINE_DATABASE_URL: `make services`, then `set -a; . ./.services.env`")
    with tempfile.TemporaryDirectory() as home, Engine(bench_settings(Path(home), database_url=database_url)) as engine:
        result = {"backend": args.backend, **measure(engine, args.rows, args.writes)}
    save(f"analytics_cost_{args.backend}", result)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
