"""Searches and clicks, per collection, in the service's tables (a SQLite file of the home, or the
collections' PostgreSQL database, where every replica records into one place and reads one report):
bounded by age (`analytics_retention_days`) and by rows (`analytics_max_rows`), so they never grow
without end. Each write is one short statement."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

from vitrine.tables import Tables

SCHEMA = """
CREATE TABLE IF NOT EXISTS searches(
    id TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, collection TEXT NOT NULL, query TEXT NOT NULL,
    filters TEXT NOT NULL, kind TEXT NOT NULL, hits INTEGER NOT NULL, latency_ms DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS searches_by_time ON searches(collection, ts);
CREATE INDEX IF NOT EXISTS searches_by_age ON searches(ts);
CREATE TABLE IF NOT EXISTS clicks(
    ts DOUBLE PRECISION NOT NULL, collection TEXT NOT NULL, search_id TEXT NOT NULL, product_id TEXT NOT NULL,
    position INTEGER NOT NULL, query TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS clicks_by_time ON clicks(collection, ts);
CREATE INDEX IF NOT EXISTS clicks_by_product ON clicks(collection, product_id);
CREATE INDEX IF NOT EXISTS clicks_by_search ON clicks(search_id);
CREATE INDEX IF NOT EXISTS clicks_by_age ON clicks(ts);
"""
log = logging.getLogger(__name__)
PRUNE_EVERY = 500  # writes between two prunes
ALL = "*"  # the collection of a search over every collection
DAY = 86_400.0
_ZERO = "CASE WHEN hits = 0 THEN 1 ELSE 0 END"
_POSITION = "CAST(position AS DOUBLE PRECISION)"
_DAY = {"sqlite": "date(ts, 'unixepoch')", "postgres": "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"}


class Analytics:
    def __init__(self, tables: Tables, *, retention_days: float, max_rows: int) -> None:
        self._db = tables
        self._day = _DAY[tables.dialect]
        self.retention_s = retention_days * DAY
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._writes = 0
        self._pruning: threading.Thread | None = None
        self._popular: dict[str, tuple[float, list[tuple[str, int]]]] = {}

    def record_search(self, *, collection: str | None, query: str | None, filters: dict[str, Any], kind: str,
                      hits: int, latency_ms: float, now: float | None = None) -> str | None:
        """Stores one search; returns its id, which a click names. A search is never failed by its
        record: if the tables are locked, full or away, the search goes unrecorded (None) and a warning
        is logged."""
        search_id = uuid.uuid4().hex
        try:
            self._db.change("INSERT INTO searches VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                            (search_id, now or time.time(), collection or ALL, " ".join((query or "").split()),
                             json.dumps(filters, sort_keys=True, default=str), kind, hits, latency_ms))
            self._written()
        except Exception as exc:  # the search itself succeeded: its record is best effort
            log.warning("search not recorded", extra={"error": str(exc)})
            return None
        return search_id

    def record_click(self, *, search_id: str, product_id: str, position: int, now: float | None = None
                     ) -> tuple[str, str, int] | None:
        """A click on the hit at `position` (1 = first) of a recorded search: (its collection, its
        query, how often that query's results led to this product); None for an unknown search."""
        found = self._db.rows("SELECT collection, query FROM searches WHERE id=?", (search_id,))
        if not found:
            return None
        collection, query = found[0]
        self._db.change("INSERT INTO clicks VALUES(?, ?, ?, ?, ?, ?)",
                        (now or time.time(), collection, search_id, product_id, position, query))
        (times,), = self._db.rows("SELECT count(*) FROM clicks WHERE collection=? AND query=? AND product_id=?",
                                  (collection, query, product_id))
        self._written()
        return collection, query, int(times)

    def popular(self, collection: str | None, *, limit: int = 1000, ttl_s: float = 60.0) -> list[tuple[str, int]]:
        """The most searched queries that found something, most searched first; read at most once a
        `ttl_s` per collection, so a keystroke's suggestions never wait on a table scan."""
        key = collection or ALL
        now = time.monotonic()
        cached = self._popular.get(key)
        if cached is not None and now - cached[0] < ttl_s:
            return cached[1]
        found = [(q, int(n)) for q, n in self._db.rows(
            "SELECT query, count(*) FROM searches WHERE collection=? AND hits > 0 AND query != '' "
            "GROUP BY query ORDER BY count(*) DESC, query LIMIT ?", (key, limit))]
        self._popular[key] = (now, found)
        return found

    def clicked_together(self, collection: str, product_id: str, limit: int = 50) -> dict[str, int]:
        """Other products clicked in the same searches as `product_id`: how many searches each shares."""
        return {p: int(n) for p, n in self._db.rows(
            "SELECT b.product_id, count(DISTINCT b.search_id) FROM clicks a JOIN clicks b "
            "ON b.search_id = a.search_id AND b.product_id != a.product_id "
            "WHERE a.collection=? AND a.product_id=? GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
            (collection, product_id, limit))}

    def report(self, collection: str | None, *, days: int = 30, top: int = 20, now: float | None = None
               ) -> dict[str, Any]:
        """Totals, top queries, queries that found nothing, and per day: searches, zero-result
        searches, clicks, click-through rate and mean position of clicks."""
        since = (now or time.time()) - days * DAY
        where, args = ("collection=? AND ts>=?", [collection or ALL, since])
        rows = self._db.rows
        (searches, zero), = rows(f"SELECT count(*), coalesce(sum({_ZERO}), 0) FROM searches WHERE {where}", args)
        (clicks, clicked, mean_position), = rows(
            f"SELECT count(*), count(DISTINCT search_id), avg({_POSITION}) FROM clicks WHERE {where}", args)
        top_queries = rows(
            "SELECT s.query, count(*), (SELECT count(*) FROM clicks c WHERE c.collection=s.collection "
            "AND c.query=s.query AND c.ts>=?) FROM searches s WHERE s.collection=? AND s.ts>=? AND s.query != '' "
            "GROUP BY s.collection, s.query ORDER BY count(*) DESC, s.query LIMIT ?", [since, *args, top])
        empty = rows(f"SELECT query, count(*) FROM searches WHERE {where} AND hits=0 AND query != '' "
                     f"GROUP BY query ORDER BY count(*) DESC, query LIMIT ?", [*args, top])
        daily_searches = rows(f"SELECT {self._day}, count(*), sum({_ZERO}) FROM searches WHERE {where} GROUP BY 1",
                              args)
        daily_clicks = {d: (n, searched, pos) for d, n, searched, pos in rows(
            f"SELECT {self._day}, count(*), count(DISTINCT search_id), avg({_POSITION}) FROM clicks "
            f"WHERE {where} GROUP BY 1", args)}
        daily = []
        for day, n, zeros in sorted(daily_searches):
            n_clicks, searched, position = daily_clicks.get(day, (0, 0, None))
            daily.append({"day": day, "searches": int(n), "zero_results": int(zeros), "clicks": int(n_clicks),
                          "ctr": round(searched / n, 4) if n else 0.0,
                          "mean_click_position": round(float(position), 2) if position is not None else None})
        return {
            "collection": collection, "days": days, "searches": int(searches), "zero_results": int(zero),
            "clicks": int(clicks), "ctr": round(clicked / searches, 4) if searches else 0.0,
            "mean_click_position": round(float(mean_position), 2) if mean_position is not None else None,
            "top_queries": [{"query": q, "searches": int(n), "clicks": int(c)} for q, n, c in top_queries],
            "no_result_queries": [{"query": q, "searches": int(n)} for q, n in empty],
            "daily": daily,
        }

    def counts(self) -> dict[tuple[str, str], int]:
        """(collection, outcome) -> searches kept, outcome "hits" or "zero"; ("collection", "clicks") too."""
        found = {(c, "zero" if z else "hits"): int(n) for c, z, n in self._db.rows(
            f"SELECT collection, {_ZERO}, count(*) FROM searches GROUP BY 1, 2")}
        found |= {(c, "clicks"): int(n) for c, n in self._db.rows(
            "SELECT collection, count(*) FROM clicks GROUP BY 1")}
        return found

    def prune(self, now: float | None = None) -> None:
        """Drops rows older than the retention, then the oldest past `max_rows` per table."""
        cutoff = (now or time.time()) - self.retention_s
        for table, key in (("searches", "id"), ("clicks", "search_id, product_id, ts")):
            self._db.change(f"DELETE FROM {table} WHERE ts < ?", (cutoff,))
            (held,), = self._db.rows(f"SELECT count(*) FROM {table}")
            if held > self.max_rows:
                self._db.change(f"DELETE FROM {table} WHERE ({key}) IN "
                                f"(SELECT {key} FROM {table} ORDER BY ts, {key} LIMIT ?)", (held - self.max_rows,))

    def _written(self) -> None:
        """Counts a write; every PRUNE_EVERY, prunes in a thread of its own, off the search that wrote:
        on PostgreSQL, counting a million rows takes 85 ms (benchmarks/analytics_cost.py)."""
        with self._lock:
            self._writes += 1
            if self._writes % PRUNE_EVERY or (self._pruning is not None and self._pruning.is_alive()):
                return
            self._pruning = threading.Thread(target=self._prune_quietly, name="analytics-prune", daemon=True)
            self._pruning.start()

    def _prune_quietly(self) -> None:
        try:
            self.prune()
        except Exception as exc:  # the tables are away or locked: the next prune tries again
            log.warning("analytics not pruned", extra={"error": str(exc)})

    def close(self) -> None:
        """Waits for a prune under way, then closes the tables."""
        with self._lock:
            pruning = self._pruning
        if pruning is not None:
            pruning.join()
        self._db.close()
