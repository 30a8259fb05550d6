"""Jobs persisted (SQLite in the home, or the PostgreSQL database: vitrine/tables.py): state, counts,
problems and errors survive restarts, and every replica and worker sees the same jobs."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitrine.errors import InvalidInput, NotFound
from vitrine.tables import SqliteTables, Tables

QUEUED, RUNNING, COMPLETE, FAILED, CANCELLED = "QUEUED", "RUNNING", "COMPLETE", "FAILED", "CANCELLED"
FINISHED = frozenset({COMPLETE, FAILED, CANCELLED})

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs(
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    collection TEXT,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state);
"""


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    collection: str | None
    params: dict[str, Any]
    state: str
    done: int
    total: int
    result: dict[str, Any] | None
    error: str | None
    cancel_requested: bool
    attempts: int
    created_at: float
    started_at: float | None
    updated_at: float
    finished_at: float | None

    @property
    def rate_per_s(self) -> float | None:
        if self.started_at is None or self.done == 0:
            return None
        elapsed = (self.finished_at or time.time()) - self.started_at
        return self.done / elapsed if elapsed > 0 else None

    @property
    def eta_s(self) -> float | None:
        rate = self.rate_per_s
        if self.state != RUNNING or not rate or self.total <= self.done:
            return None
        return (self.total - self.done) / rate

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "collection": self.collection, "state": self.state,
            "done": self.done, "total": self.total,
            "rate_per_s": None if self.rate_per_s is None else round(self.rate_per_s, 2),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "result": self.result, "error": self.error, "cancel_requested": self.cancel_requested,
            "attempts": self.attempts, "created_at": self.created_at, "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class JobStore:
    def __init__(self, tables: Tables) -> None:
        self._db = tables

    @classmethod
    def at(cls, path: Path) -> JobStore:
        """Jobs in a SQLite file of their own."""
        return cls(SqliteTables(path, SCHEMA))

    def close(self) -> None:
        self._db.close()

    def create(self, *, kind: str, collection: str | None, params: dict[str, Any]) -> Job:
        job_id = uuid.uuid4().hex
        now = time.time()
        self._db.change(
            "INSERT INTO jobs(id, kind, collection, params, state, created_at, updated_at) VALUES(?, ?, ?, ?, ?, ?, ?)",
            (job_id, kind, collection, json.dumps(params), QUEUED, now, now),
        )
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        rows = self._db.rows("SELECT * FROM jobs WHERE id=?", (job_id,))
        if not rows:
            raise NotFound(f"no job {job_id!r}", field="job_id")
        return _job(rows[0])

    def recent(self, *, limit: int = 100, state: str | None = None) -> list[Job]:
        sql, params = "SELECT * FROM jobs", list[Any]()
        if state is not None:
            sql += " WHERE state=?"
            params.append(state)
        sql += " ORDER BY created_at DESC LIMIT ?"
        params.append(limit)
        return [_job(r) for r in self._db.rows(sql, params)]

    def claim(self, job_id: str) -> bool:
        """Starts a queued job for the caller; False when it is not queued (another worker holds it, or a
        requeued job was delivered twice): exactly one worker runs a job at a time."""
        now = time.time()
        return self._db.change(
            "UPDATE jobs SET state=?, started_at=COALESCE(started_at, ?), attempts=attempts+1, updated_at=? "
            "WHERE id=? AND state=?", (RUNNING, now, now, job_id, QUEUED)) == 1

    def heartbeat(self, job_ids: list[str]) -> None:
        """Running jobs' workers are alive: `updated_at` is the lease a dead worker's jobs run out of."""
        if not job_ids:
            return
        marks = ",".join("?" * len(job_ids))
        self._db.change(f"UPDATE jobs SET updated_at=? WHERE id IN ({marks}) AND state NOT IN (?, ?, ?, ?)",
                        (time.time(), *job_ids, QUEUED, *sorted(FINISHED)))

    def requeue_stale(self, lease_s: float) -> list[Job]:
        """Queues again the running jobs no worker has reported on for `lease_s` (killed workers), each
        once even when several workers look at the same moment; returns them."""
        now = time.time()
        requeued = []
        for row in self._db.rows("SELECT * FROM jobs WHERE state NOT IN (?, ?, ?, ?) AND updated_at < ?",
                                 (QUEUED, *sorted(FINISHED), now - lease_s)):
            job = _job(row)
            if self._db.change("UPDATE jobs SET state=?, updated_at=? WHERE id=? AND updated_at=? AND state=?",
                               (QUEUED, now, job.id, job.updated_at, job.state)) == 1:
                requeued.append(job)
        return requeued

    def set_stage(self, job_id: str, stage: str) -> None:
        """A running job's named step (a look job: DETECTING, ANALYZING, MATCHING)."""
        self._db.change("UPDATE jobs SET state=?, updated_at=? WHERE id=?", (stage, time.time(), job_id))

    def progress(self, job_id: str, *, done: int, total: int) -> None:
        self._db.change("UPDATE jobs SET done=?, total=?, updated_at=? WHERE id=?", (done, total, time.time(), job_id))

    def finish(
        self, job_id: str, state: str, *, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        now = time.time()
        self._db.change("UPDATE jobs SET state=?, result=?, error=?, updated_at=?, finished_at=? WHERE id=?",
                        (state, None if result is None else json.dumps(result, default=str), error, now, now, job_id))

    def requeue(self, job_id: str) -> None:
        self._db.change("UPDATE jobs SET state=?, updated_at=? WHERE id=?", (QUEUED, time.time(), job_id))

    def request_cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.state in FINISHED:
            raise InvalidInput(f"job {job_id} is already {job.state}", field="job_id")
        self._db.change("UPDATE jobs SET cancel_requested=1, updated_at=? WHERE id=?", (time.time(), job_id))
        return self.get(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        rows = self._db.rows("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,))
        return bool(rows and rows[0][0])

    def counts(self) -> dict[str, int]:
        """Jobs per state."""
        return {state: int(n) for state, n in self._db.rows("SELECT state, count(*) FROM jobs GROUP BY state")}

    def unfinished(self) -> list[Job]:
        return [_job(r) for r in self._db.rows("SELECT * FROM jobs WHERE state NOT IN (?, ?, ?) ORDER BY created_at",
                                               tuple(sorted(FINISHED)))]


def _job(row: tuple[Any, ...]) -> Job:
    (job_id, kind, collection, params, state, done, total, result, error, cancel, attempts, created, started,
     updated, finished) = row
    return Job(id=job_id, kind=kind, collection=collection, params=json.loads(params), state=state, done=done,
               total=total, result=json.loads(result) if result else None, error=error, cancel_requested=bool(cancel),
               attempts=attempts, created_at=created, started_at=started, updated_at=updated, finished_at=finished)
