"""The service's own small tables (API keys, jobs): in a SQLite file of the home by default, or in
the collections' PostgreSQL database (`VITRINE_DATABASE_URL`), where every replica and worker on
every machine sees the same keys and the same jobs. Queries are written once, with `?` placeholders."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from vitrine.sqlite_files import connect_wal


class Tables(Protocol):
    dialect: str  # "sqlite" or "postgres", for the few expressions the two write differently

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows a query returns."""
        ...

    def change(self, query: str, params: Sequence[Any] = ()) -> int:
        """Runs a write (one statement, atomic on its own) and returns how many rows it changed."""
        ...

    def close(self) -> None: ...


class SqliteTables:
    """`Tables` in one SQLite file (WAL), one connection behind a lock."""

    dialect = "sqlite"

    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = connect_wal(path)
        self._db.executescript(schema)

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(query, params).fetchall()

    def change(self, query: str, params: Sequence[Any] = ()) -> int:
        with self._lock:
            return self._db.execute(query, params).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
