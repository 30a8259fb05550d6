"""API keys with scopes, stored hashed. Keys are 256-bit random secrets, so SHA-256 suffices (no
password stretching needed); the secret is shown once, at creation."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from vitrine.errors import InvalidInput, NotFound
from vitrine.tables import SqliteTables, Tables

SCOPES = ("read", "write", "admin")  # each includes the ones before it
PREFIX = "vtr"

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys(
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scope TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);
"""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scope: str
    created_at: float
    revoked_at: float | None

    def allows(self, scope: str) -> bool:
        return self.revoked_at is None and SCOPES.index(self.scope) >= SCOPES.index(scope)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """Keys in the home's `keys.sqlite`, or in the PostgreSQL database where every replica checks the
    same keys (vitrine/tables.py)."""

    def __init__(self, tables: Tables) -> None:
        self._db = tables

    @classmethod
    def at(cls, path: Path) -> KeyStore:
        return cls(SqliteTables(path, SCHEMA))

    def close(self) -> None:
        self._db.close()

    def create(self, name: str, scope: str) -> tuple[ApiKey, str]:
        """A new key and its token (`vtr_<id>_<secret>`), which is not stored and cannot be shown again."""
        if scope not in SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}", field="scope")
        if not name.strip() or len(name) > 100:
            raise InvalidInput("a key needs a name of 1-100 characters", field="name")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        self._db.change("INSERT INTO api_keys VALUES(?, ?, ?, ?, ?, NULL)",
                        (key_id, name.strip(), scope, _digest(secret), time.time()))
        return self.get(key_id), f"{PREFIX}_{key_id}_{secret}"

    def get(self, key_id: str) -> ApiKey:
        rows = self._db.rows("SELECT id, name, scope, created_at, revoked_at FROM api_keys WHERE id=?", (key_id,))
        if not rows:
            raise NotFound(f"no API key {key_id!r}", field="key_id")
        return ApiKey(*rows[0])

    def all(self) -> list[ApiKey]:
        rows = self._db.rows("SELECT id, name, scope, created_at, revoked_at FROM api_keys ORDER BY created_at")
        return [ApiKey(*r) for r in rows]

    def revoke(self, key_id: str) -> ApiKey:
        self.get(key_id)
        self._db.change("UPDATE api_keys SET revoked_at=COALESCE(revoked_at, ?) WHERE id=?", (time.time(), key_id))
        return self.get(key_id)

    def verify(self, token: str) -> ApiKey | None:
        """The live key a token belongs to, or None (compared in constant time)."""
        prefix, _, rest = token.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != PREFIX or not key_id or not secret:
            return None
        rows = self._db.rows("SELECT secret_sha256 FROM api_keys WHERE id=? AND revoked_at IS NULL", (key_id,))
        if not rows or not hmac.compare_digest(rows[0][0], _digest(secret)):
            return None
        return self.get(key_id)
