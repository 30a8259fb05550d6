"""`vitrine worker`: runs jobs (ingest, train, looks) apart from any server, from the Redis queue
(`VITRINE_REDIS_URL`, any number of workers) or this home's SQLite queue (one at a time)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from vitrine.engine import Engine
from vitrine.errors import Conflict


def add_parsers(sub: Any) -> None:
    worker = sub.add_parser("worker", help="run jobs (ingest, train, looks) queued by `vitrine serve --no-jobs`")
    worker.add_argument("--threads", type=int, help="jobs run at once (default: VITRINE_JOB_WORKERS, 1)")


def cmd_worker(engine: Engine, args: argparse.Namespace) -> int:
    from vitrine.jobs.runner import JobRunner
    from vitrine.jobs.store import SCHEMA as JOBS
    from vitrine.jobs.store import JobStore

    settings = engine.settings
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    jobs = JobStore(engine.backend.tables("jobs", JOBS))
    runner = JobRunner(engine, jobs=jobs, queue_path=engine.home / "queue.sqlite",
                       workers=args.threads or settings.job_workers, redis_url=settings.redis_url,
                       lease_s=settings.job_lease_s)
    try:
        engine.warm()
        if not runner.start():
            raise Conflict("another process runs this home's jobs from its SQLite queue; set VITRINE_REDIS_URL "
                           "to run several workers", field="worker")
        queue = "Redis" if settings.redis_url else f"{engine.home / 'queue.sqlite'}"
        sys.stderr.write(f"worker: running jobs from {queue} (Ctrl-C stops)\n")
        stop.wait()
    finally:
        runner.stop()
        jobs.close()
    return 0


COMMANDS = {"worker": cmd_worker}
