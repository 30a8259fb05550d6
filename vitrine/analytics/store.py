"""Searches and clicks, per collection, in one SQLite file under the home: bounded by age
(`analytics_retention_days`) and by rows (`analytics_max_rows`), so it never grows without end.
Several server processes write to it; each write is one short transaction."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS searches(
    id TEXT PRIMARY KEY, ts REAL NOT NULL, collection TEXT NOT NULL, query TEXT NOT NULL, filters TEXT NOT NULL,
    kind TEXT NOT NULL, hits INTEGER NOT NULL, latency_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS searches_by_time ON searches(collection, ts);
CREATE TABLE IF NOT EXISTS clicks(
    ts REAL NOT NULL, collection TEXT NOT NULL, search_id TEXT NOT NULL, product_id TEXT NOT NULL,
    position INTEGER NOT NULL, query TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS clicks_by_time ON clicks(collection, ts);
CREATE INDEX IF NOT EXISTS clicks_by_product ON clicks(collection, product_id);
CREATE INDEX IF NOT EXISTS clicks_by_search ON clicks(search_id);
"""
log = logging.getLogger(__name__)
PRUNE_EVERY = 500  # writes between two prunes
ALL = "*"  # the collection of a search over every collection
DAY = 86_400.0


class Analytics:
    def __init__(self, path: Path, *, retention_days: float, max_rows: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.retention_s = retention_days * DAY
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._writes = 0
        self._popular: dict[str, tuple[float, list[tuple[str, int]]]] = {}
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def record_search(self, *, collection: str | None, query: str | None, filters: dict[str, Any], kind: str,
                      hits: int, latency_ms: float, now: float | None = None) -> str | None:
        """Stores one search; returns its id, which a click names. A search is never failed by its
        record: if the file is locked or full, the search goes unrecorded (None) and a warning is logged."""
        search_id = uuid.uuid4().hex
        try:
            with self._lock:
                self._db.execute("INSERT INTO searches VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                                 (search_id, now or time.time(), collection or ALL, " ".join((query or "").split()),
                                  json.dumps(filters, sort_keys=True, default=str), kind, hits, latency_ms))
                self._written()
        except sqlite3.Error as exc:
            log.warning("search not recorded", extra={"error": str(exc)})
            return None
        return search_id

    def record_click(self, *, search_id: str, product_id: str, position: int, now: float | None = None
                     ) -> tuple[str, str, int] | None:
        """A click on the hit at `position` (1 = first) of a recorded search: (its collection, its
        query, how often that query's results led to this product); None for an unknown search."""
        with self._lock:
            found = self._db.execute("SELECT collection, query FROM searches WHERE id=?", (search_id,)).fetchone()
            if found is None:
                return None
            self._db.execute("INSERT INTO clicks VALUES(?, ?, ?, ?, ?, ?)",
                             (now or time.time(), found[0], search_id, product_id, position, found[1]))
            (times,) = self._db.execute("SELECT count(*) FROM clicks WHERE collection=? AND query=? AND product_id=?",
                                        (found[0], found[1], product_id)).fetchone()
            self._written()
        return found[0], found[1], int(times)

    def popular(self, collection: str | None, *, limit: int = 1000, ttl_s: float = 60.0) -> list[tuple[str, int]]:
        """The most searched queries that found something, most searched first; read at most once a
        `ttl_s` per collection, so a keystroke's suggestions never wait on a table scan."""
        key = collection or ALL
        now = time.monotonic()
        cached = self._popular.get(key)
        if cached is not None and now - cached[0] < ttl_s:
            return cached[1]
        with self._lock:
            found = [(q, int(n)) for q, n in self._db.execute(
                "SELECT query, count(*) FROM searches WHERE collection=? AND hits > 0 AND query != '' "
                "GROUP BY query ORDER BY count(*) DESC, query LIMIT ?", (key, limit))]
        self._popular[key] = (now, found)
        return found

    def clicked_together(self, collection: str, product_id: str, limit: int = 50) -> dict[str, int]:
        """Other products clicked in the same searches as `product_id`: how many searches each shares."""
        with self._lock:
            return {p: int(n) for p, n in self._db.execute(
                "SELECT b.product_id, count(DISTINCT b.search_id) FROM clicks a JOIN clicks b "
                "ON b.search_id = a.search_id AND b.product_id != a.product_id "
                "WHERE a.collection=? AND a.product_id=? GROUP BY 1 ORDER BY 2 DESC LIMIT ?",
                (collection, product_id, limit))}

    def report(self, collection: str | None, *, days: int = 30, top: int = 20, now: float | None = None
               ) -> dict[str, Any]:
        """Totals, top queries, queries that found nothing, and per day: searches, zero-result
        searches, clicks, click-through rate and mean position of clicks."""
        since = (now or time.time()) - days * DAY
        where, args = ("collection=? AND ts>=?", [collection or ALL, since])
        with self._lock:
            db = self._db
            searches, zero = db.execute(f"SELECT count(*), coalesce(sum(hits=0), 0) FROM searches WHERE {where}",
                                        args).fetchone()
            clicks, clicked, mean_position = db.execute(
                f"SELECT count(*), count(DISTINCT search_id), avg(position) FROM clicks WHERE {where}", args
            ).fetchone()
            top_queries = db.execute(
                "SELECT s.query, count(*), (SELECT count(*) FROM clicks c WHERE c.collection=s.collection "
                "AND c.query=s.query AND c.ts>=?) FROM searches s WHERE s.collection=? AND s.ts>=? AND s.query != '' "
                "GROUP BY s.query ORDER BY count(*) DESC, s.query LIMIT ?", [since, *args, top]).fetchall()
            empty = db.execute(
                f"SELECT query, count(*) FROM searches WHERE {where} AND hits=0 AND query != '' "
                f"GROUP BY query ORDER BY count(*) DESC, query LIMIT ?", [*args, top]).fetchall()
            daily_searches = db.execute(
                f"SELECT date(ts, 'unixepoch'), count(*), sum(hits=0) FROM searches WHERE {where} GROUP BY 1",
                args).fetchall()
            daily_clicks = {d: (n, searched, pos) for d, n, searched, pos in db.execute(
                f"SELECT date(ts, 'unixepoch'), count(*), count(DISTINCT search_id), avg(position) FROM clicks "
                f"WHERE {where} GROUP BY 1", args)}
        daily = []
        for day, n, zeros in sorted(daily_searches):
            n_clicks, searched, position = daily_clicks.get(day, (0, 0, None))
            daily.append({"day": day, "searches": n, "zero_results": zeros, "clicks": n_clicks,
                          "ctr": round(searched / n, 4) if n else 0.0,
                          "mean_click_position": round(position, 2) if position is not None else None})
        return {
            "collection": collection, "days": days, "searches": searches, "zero_results": zero, "clicks": clicks,
            "ctr": round(clicked / searches, 4) if searches else 0.0,
            "mean_click_position": round(mean_position, 2) if mean_position is not None else None,
            "top_queries": [{"query": q, "searches": n, "clicks": c} for q, n, c in top_queries],
            "no_result_queries": [{"query": q, "searches": n} for q, n in empty],
            "daily": daily,
        }

    def counts(self) -> dict[tuple[str, str], int]:
        """(collection, outcome) -> searches kept, outcome "hits" or "zero"; ("collection", "clicks") too."""
        with self._lock:
            found = {(c, "zero" if z else "hits"): n for c, z, n in self._db.execute(
                "SELECT collection, hits=0, count(*) FROM searches GROUP BY 1, 2")}
            found |= {(c, "clicks"): n for c, n in self._db.execute(
                "SELECT collection, count(*) FROM clicks GROUP BY 1")}
        return found

    def prune(self, now: float | None = None) -> None:
        """Drops rows older than the retention, then the oldest past `max_rows` per table."""
        with self._lock:
            self._prune((now or time.time()) - self.retention_s)

    def _prune(self, cutoff: float) -> None:
        for table in ("searches", "clicks"):
            self._db.execute(f"DELETE FROM {table} WHERE ts < ?", (cutoff,))
            self._db.execute(f"DELETE FROM {table} WHERE rowid <= (SELECT max(rowid) FROM {table}) - ?",
                             (self.max_rows,))

    def _written(self) -> None:
        self._writes += 1
        if self._writes % PRUNE_EVERY == 0:
            self._prune(time.time() - self.retention_s)

    def close(self) -> None:
        with self._lock:
            self._db.close()
