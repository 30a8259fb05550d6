"""Latency of `/suggest` completions (Engine.suggest, the code behind the route) over the hm + fpi
collections (18.9k products): every prefix of 200 real queries, as a shopper types them.

    python benchmarks/suggest_latency.py
"""

from __future__ import annotations

import json
import time

from common import DATA, bench_settings, percentile, save

from vitrine.engine import Engine


def main() -> None:
    queries = [q["query"] for c in ("hm", "fpi")
               for q in json.loads((DATA / c / "gt.json").read_text())["text_queries"][:100]]
    prefixes = [q[:n] for q in queries for n in range(1, len(q) + 1)]
    with Engine(bench_settings()) as engine:
        started = time.perf_counter()
        for name in ("hm", "fpi"):
            engine.suggester(name)
        build_s = time.perf_counter() - started
        timings = []
        for prefix in prefixes:
            t = time.perf_counter()
            engine.suggest(prefix)  # every collection at once, as the UI's default search does
            timings.append((time.perf_counter() - t) * 1000)
    result = {"prefixes": len(prefixes), "products": 18911, "build_s": round(build_s, 3),
              "p50_ms": round(percentile(timings, 50), 3), "p95_ms": round(percentile(timings, 95), 3),
              "p99_ms": round(percentile(timings, 99), 3)}
    print(json.dumps(result))
    print(f"saved {save('suggest_latency', result)}")


if __name__ == "__main__":
    main()
