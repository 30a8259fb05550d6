"""Opening the embedded SQLite files (collections, the feature cache, keys and jobs) the same way everywhere."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

BUSY_TIMEOUT_S = 10.0


def connect_wal(path: Path) -> sqlite3.Connection:
    """An autocommit connection usable from any thread, waiting up to 10 s for locks, in WAL mode.

    Processes that share a home (API replicas and workers) start together and open the same new files.
    Switching a file to WAL needs its exclusive lock, and when two connections both hold a shared lock
    and want it, SQLite answers one "database is locked" at once rather than wait (it would deadlock),
    so that switch is tried again until the timeout."""
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return db
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(0.02)
