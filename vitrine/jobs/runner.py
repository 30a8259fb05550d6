"""Runs jobs from huey's queue in worker threads of this process (no separate consumer to run).

huey's own consumer installs signal handlers, which would fight the web server's, so this runner
drives huey's `dequeue`/`execute` directly; the task code is plain huey tasks, so a standalone
consumer on huey's Redis backend can run it unchanged. Job state lives in `JobStore`: on start,
jobs a restart interrupted are queued again, and ingest resumes where it stopped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from huey import SqliteHuey

from vitrine.engine import Engine
from vitrine.errors import CollectionGone, VitrineError
from vitrine.index.store import Filters, RangeFilter
from vitrine.jobs.store import CANCELLED, COMPLETE, FAILED, FINISHED, Job, JobStore
from vitrine.vision.service import LookService

log = logging.getLogger(__name__)

LOOK_STAGES = ("DETECTING", "ANALYZING", "MATCHING")
IDLE_WAIT_S = 1.0  # how long an idle worker sleeps when nothing wakes it


class JobCancelled(Exception):
    pass


class JobRunner:
    def __init__(self, engine: Engine, *, jobs: JobStore, queue_path: Path, workers: int = 1) -> None:
        self.engine = engine
        self.jobs = jobs
        self.huey = SqliteHuey("vitrine", filename=str(queue_path))
        self._tasks = {
            "ingest": self.huey.task(name="vitrine.ingest")(self.run_ingest),
            "train": self.huey.task(name="vitrine.train")(self.run_train),
            "look": self.huey.task(name="vitrine.look")(self.run_look),
        }
        self._looks: LookService | None = None
        self._workers = workers
        self._lock_path = queue_path.with_name("jobs.lock")
        self._lock_file: IO[str] | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._wake = threading.Event()

    # -- lifetime ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Recovers and runs jobs, if this process holds the home's job lock. With several server
        processes, one runs jobs and the others only queue them (the runner picks them up within
        IDLE_WAIT_S); when it dies, the lock is free for the process that replaces it."""
        if not self._take_lock():
            log.info("another server process runs the jobs; this one only queues them")
            return
        self.recover()
        for i in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"jobs-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _take_lock(self) -> bool:
        import fcntl

        handle = self._lock_path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle  # held (and the lock with it) for the process's life
        return True

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the job lock
            self._lock_file = None

    def recover(self) -> list[str]:
        """Queues again every unfinished job that the queue no longer holds (a restart cut it short)."""
        pending = {task.args[0] for task in self.huey.pending() if task.args}
        requeued = []
        for job in self.jobs.unfinished():
            if job.id not in pending:
                self.jobs.requeue(job.id)
                self._tasks[job.kind](job.id)
                requeued.append(job.id)
                log.warning("job queued again after a restart", extra={"job": job.id, "kind": job.kind})
        return requeued

    def _work(self) -> None:
        while not self._stop.is_set():
            task = self.huey.dequeue()
            if task is None:
                self._wake.wait(IDLE_WAIT_S)
                self._wake.clear()
                continue
            self.huey.execute(task)

    # -- jobs -------------------------------------------------------------------------------------

    def submit_ingest(self, collection: str, catalog: Path, *, mapping: dict[str, str] | None = None,
                      fmt: str | None = None, prune: bool = False, media_root: str | None = None) -> Job:
        params: dict[str, Any] = {"catalog": str(catalog), "mapping": mapping or {}, "format": fmt, "prune": prune,
                                  "media_root": media_root}
        return self._submit("ingest", collection, params)

    def submit_train(self, collection: str, *, seed: int = 0, epochs: int | None = None) -> Job:
        return self._submit("train", collection, {"seed": seed, "epochs": epochs})

    def submit_look(self, look_id: str, *, collection: str | None, top_k: int, filters: dict[str, Any]) -> Job:
        """`filters`: {"equals": {field: [values]}, "ranges": {field: [low, high]}} (JSON-safe)."""
        return self._submit("look", collection, {"look_id": look_id, "top_k": top_k, "filters": filters})

    @property
    def looks(self) -> LookService:
        if self._looks is None:
            self._looks = LookService(self.engine)
        return self._looks

    def _submit(self, kind: str, collection: str | None, params: dict[str, Any]) -> Job:
        job = self.jobs.create(kind=kind, collection=collection, params=params)
        self._tasks[kind](job.id)
        self._wake.set()
        return job

    def cancel(self, job_id: str) -> Job:
        return self.jobs.request_cancel(job_id)

    def run_ingest(self, job_id: str) -> None:
        def work(job: Job, check: Callable[[int, int], None]) -> dict[str, Any]:
            p = job.params
            report = self.engine.ingest(job.collection or "", Path(p["catalog"]), mapping=p["mapping"] or None,
                                        fmt=p["format"], prune=p["prune"], media_root=p.get("media_root"),
                                        progress=lambda done, total, images: check(done, total))
            return report.as_dict()

        self._run(job_id, work, cancelled="cancelled; finished batches were kept")

    def run_train(self, job_id: str) -> None:
        """Counts are epochs; a restart trains again from the start (training is minutes, and seeded)."""
        from vitrine.models.training import TrainConfig
        from vitrine.training import FINE_TUNE_LR, train_collection

        def work(job: Job, check: Callable[[int, int], None]) -> dict[str, Any]:
            p = job.params
            config = TrainConfig(seed=p["seed"], epochs=p["epochs"] or TrainConfig.epochs, lr=FINE_TUNE_LR,
                                 threads=self.engine.settings.threads)
            return train_collection(self.engine, job.collection or "", config=config,
                                    progress=lambda epoch, epochs, metrics: check(epoch, epochs))

        self._run(job_id, work, cancelled="cancelled; the collection keeps its model")

    def run_look(self, job_id: str) -> None:
        """States QUEUED -> DETECTING -> ANALYZING -> MATCHING -> COMPLETE | FAILED; the result is the look."""

        def work(job: Job, check: Callable[[int, int], None]) -> dict[str, Any]:
            p = job.params
            equals = {k: tuple(v) for k, v in p["filters"].get("equals", {}).items()}
            ranges = {k: RangeFilter(*v) for k, v in p["filters"].get("ranges", {}).items()}

            def stage(name: str) -> None:
                self.jobs.set_stage(job_id, name)
                check(LOOK_STAGES.index(name) + 1, len(LOOK_STAGES))

            return self.looks.run(p["look_id"], collection=job.collection, top_k=p["top_k"],
                                  filters=Filters(equals=equals, ranges=ranges), stage=stage)

        self._run(job_id, work, cancelled="cancelled")

    def _run(self, job_id: str, work: Callable[[Job, Callable[[int, int], None]], dict[str, Any]],
             *, cancelled: str) -> None:
        """Moves a job through its states around `work`, whatever happens inside it."""
        job = self.jobs.get(job_id)
        if job.state in FINISHED:
            return
        if job.cancel_requested:
            self.jobs.finish(job_id, CANCELLED)
            return
        self.jobs.start(job_id)

        def check(done: int, total: int) -> None:
            self.jobs.progress(job_id, done=done, total=total)
            if self.jobs.cancel_requested(job_id):
                raise JobCancelled

        try:
            result = work(job, check)
        except JobCancelled:
            self.jobs.finish(job_id, CANCELLED, error=cancelled)
        except CollectionGone:
            self.jobs.finish(job_id, CANCELLED, error="cancelled: the collection was deleted")
        except VitrineError as exc:
            self.jobs.finish(job_id, FAILED, error=str(exc))
        except Exception as exc:  # a job must end in a state, whatever went wrong
            log.exception("job failed", extra={"job": job_id, "kind": job.kind})
            self.jobs.finish(job_id, FAILED, error=f"internal error ({type(exc).__name__}); see the server log")
        else:
            self.jobs.finish(job_id, COMPLETE, result=result)
