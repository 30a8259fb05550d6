"""Where looks are kept: the service's own tables (a SQLite file of the home, or the collections'
PostgreSQL database), so that a look a worker analyses on one machine is read, corrected and indexed
through any replica. Photos are kept once by content; crops by look and garment. A look's revision
makes read-modify-write safe across replicas: a change written over a revision another replica has
moved on from is refused, and read again."""

from __future__ import annotations

import json
from typing import Any

from vitrine.tables import Tables

SCHEMA = """
CREATE TABLE IF NOT EXISTS looks(
    id TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    photo_sha256 TEXT NOT NULL,
    expires_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS look_photos(
    sha256 TEXT PRIMARY KEY,
    data BYTEA NOT NULL,
    saved_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS look_crops(
    look_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    png BYTEA NOT NULL,
    PRIMARY KEY(look_id, position)
);
"""


class LookStore:
    def __init__(self, tables: Tables) -> None:
        self._db = tables

    def put_photo(self, sha256: str, data: bytes, now: float) -> None:
        """Keeps a photo once; saving it again only renews it (the sweep spares photos saved lately)."""
        self._db.change("INSERT INTO look_photos VALUES(?, ?, ?) ON CONFLICT(sha256) DO UPDATE SET saved_at = "
                        "excluded.saved_at", (sha256, data, now))

    def photo(self, sha256: str) -> bytes | None:
        found = self._db.rows("SELECT data FROM look_photos WHERE sha256 = ?", (sha256,))
        return bytes(found[0][0]) if found else None

    def put(self, record: dict[str, Any], now: float) -> None:
        """Writes a look's record (created, or replaced as a whole)."""
        self._db.change(
            "INSERT INTO looks VALUES(?, ?, ?, ?, ?, 0) ON CONFLICT(id) DO UPDATE SET record = excluded.record, "
            "expires_at = excluded.expires_at, updated_at = excluded.updated_at, revision = looks.revision + 1",
            (record["id"], json.dumps(record), record["photo"]["sha256"], record.get("expires_at"), now))

    def get(self, look_id: str) -> dict[str, Any] | None:
        found = self.read(look_id)
        return found[0] if found else None

    def read(self, look_id: str) -> tuple[dict[str, Any], int] | None:
        """A look's record and its revision, for `update`."""
        found = self._db.rows("SELECT record, revision FROM looks WHERE id = ?", (look_id,))
        return (json.loads(found[0][0]), int(found[0][1])) if found else None

    def update(self, record: dict[str, Any], revision: int, now: float) -> bool:
        """Writes a changed record, unless the look has moved on from `revision` (then False)."""
        return self._db.change(
            "UPDATE looks SET record = ?, expires_at = ?, updated_at = ?, revision = revision + 1 "
            "WHERE id = ? AND revision = ?",
            (json.dumps(record), record.get("expires_at"), now, record["id"], revision)) == 1

    def put_crops(self, look_id: str, crops: list[bytes]) -> None:
        for position, png in enumerate(crops):
            self.put_crop(look_id, position, png)
        self._db.change("DELETE FROM look_crops WHERE look_id = ? AND position >= ?", (look_id, len(crops)))

    def put_crop(self, look_id: str, position: int, png: bytes) -> None:
        self._db.change("INSERT INTO look_crops VALUES(?, ?, ?) ON CONFLICT(look_id, position) DO UPDATE SET "
                        "png = excluded.png", (look_id, position, png))

    def crop(self, look_id: str, position: int) -> bytes | None:
        found = self._db.rows("SELECT png FROM look_crops WHERE look_id = ? AND position = ?", (look_id, position))
        return bytes(found[0][0]) if found else None

    def sweep(self, now: float, *, photo_grace_s: float) -> int:
        """Deletes expired looks, their crops and the photos no look uses (unless saved within
        `photo_grace_s`: a look may be saving one now); returns how many unexpired anonymous looks remain."""
        self._db.change("DELETE FROM looks WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        self._db.change("DELETE FROM look_crops WHERE look_id NOT IN (SELECT id FROM looks)")
        self._db.change("DELETE FROM look_photos WHERE saved_at < ? AND sha256 NOT IN "
                        "(SELECT photo_sha256 FROM looks)", (now - photo_grace_s,))
        (anonymous,), = self._db.rows("SELECT count(*) FROM looks WHERE expires_at IS NOT NULL")
        return int(anonymous)

    def ids(self) -> list[str]:
        return [i for (i,) in self._db.rows("SELECT id FROM looks ORDER BY id")]

    def photo_count(self) -> int:
        (count,), = self._db.rows("SELECT count(*) FROM look_photos")
        return int(count)
