"""Image features cached by the image's content hash: each image is encoded once, across ingests,
collections and restarts (an ingest killed half-way resumes without re-encoding)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from vitrine.arrays import Array
from vitrine.sqlite_files import connect_wal


class FeatureCache:
    def __init__(self, path: Path, *, dim: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._lock = threading.Lock()
        self._db = connect_wal(path)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS features(sha256 TEXT PRIMARY KEY, vector BLOB NOT NULL)")

    def get_many(self, hashes: Iterable[str]) -> dict[str, Array]:
        hashes = list(dict.fromkeys(hashes))
        found: dict[str, Array] = {}
        with self._lock:
            for start in range(0, len(hashes), 500):
                chunk = hashes[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for sha, blob in self._db.execute(
                    f"SELECT sha256, vector FROM features WHERE sha256 IN ({marks})", chunk
                ):
                    vector = np.frombuffer(blob, dtype=np.float32)
                    if vector.shape == (self.dim,):
                        found[sha] = vector
        return found

    def put_many(self, vectors: Mapping[str, Array]) -> None:
        if not vectors:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO features(sha256, vector) VALUES(?, ?)",
                    [(sha, np.asarray(v, dtype=np.float32).tobytes()) for sha, v in vectors.items()],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()
