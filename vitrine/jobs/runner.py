"""Runs jobs from huey's queue in worker threads of this process (no separate consumer to run).

huey's own consumer installs signal handlers, which would fight the web server's, so this runner
drives huey's `dequeue`/`execute` directly. The queue is a SQLite file in the home, run by the one
server process that holds the home's job lock, or Redis (`VITRINE_REDIS_URL`), from which any number
of `vitrine worker` processes take jobs. Job state lives in `JobStore`: a job is claimed by exactly
one worker, whose runner renews its lease while it runs; when a worker dies (SIGKILL, a lost machine)
its jobs are queued again once the lease runs out, and ingest resumes where it stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from huey import RedisHuey, SqliteHuey

from vitrine.engine import Engine
from vitrine.errors import CollectionGone, InvalidInput, ServiceDown, VitrineError
from vitrine.index.store import Filters
from vitrine.jobs.store import CANCELLED, COMPLETE, FAILED, FINISHED, QUEUED, Job, JobStore
from vitrine.vision.service import LookService

log = logging.getLogger(__name__)

LOOK_STAGES = ("DETECTING", "ANALYZING", "MATCHING")
IDLE_WAIT_S = 1.0  # how long an idle worker sleeps when nothing wakes it
REDIS_TIMEOUT_S = 5.0


def _redis_huey(url: str) -> RedisHuey:
    """huey on Redis, where a Redis that went away fails a request in seconds instead of hanging it
    (a worker's dequeue blocks up to 1 s)."""
    import redis

    try:
        pool = redis.ConnectionPool.from_url(url, socket_timeout=REDIS_TIMEOUT_S,
                                             socket_connect_timeout=REDIS_TIMEOUT_S)
    except ValueError as exc:
        raise InvalidInput(f"not a Redis URL: {exc}", field="redis_url") from exc
    return RedisHuey("vitrine", connection_pool=pool)


class JobCancelled(Exception):
    pass


class JobRunner:
    def __init__(self, engine: Engine, *, jobs: JobStore, queue_path: Path, workers: int = 1,
                 redis_url: str | None = None, lease_s: float = 30.0) -> None:
        self.engine = engine
        self.jobs = jobs
        self.redis_url = redis_url
        self.lease_s = lease_s
        self.huey: Any = _redis_huey(redis_url) if redis_url else SqliteHuey("vitrine", filename=str(queue_path))
        self._tasks = {
            "ingest": self.huey.task(name="vitrine.ingest")(self.run_ingest),
            "train": self.huey.task(name="vitrine.train")(self.run_train),
            "look": self.huey.task(name="vitrine.look")(self.run_look),
            "reindex": self.huey.task(name="vitrine.reindex")(self.run_reindex),
        }
        self._looks: LookService | None = None
        self._workers = workers
        self._lock_path = queue_path.with_name("jobs.lock")
        self._lock_file: IO[str] | None = None
        self._threads: list[threading.Thread] = []
        self._recovered = False  # start() recovered the jobs a restart cut short
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._running: set[str] = set()  # jobs this process runs now (their leases are renewed)
        self._running_lock = threading.Lock()

    # -- lifetime ---------------------------------------------------------------------------------

    def start(self) -> bool:
        """Recovers and runs jobs. On the SQLite queue, only in the process that holds the home's job lock:
        with several server processes, one runs jobs and the others only queue them (the runner picks them
        up within IDLE_WAIT_S); when it dies, the lock is free for the process that replaces it. On Redis,
        every runner takes jobs. Returns whether this runner runs jobs."""
        if self.redis_url is None and not self._take_lock():
            log.info("another server process runs the jobs; this one only queues them")
            return False
        self._recovered = self._try_recover()
        for i in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"jobs-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        keeper = threading.Thread(target=self._keep_leases, name="jobs-leases", daemon=True)
        keeper.start()
        self._threads.append(keeper)
        return True

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

    def _try_recover(self) -> bool:
        """`recover()`, unless the job store does not answer yet (a database still starting): then the
        lease keeper tries again, and the server starts meanwhile."""
        try:
            self.recover()
        except ServiceDown as exc:
            log.warning("jobs not recovered yet", extra={"error": str(exc)})
            return False
        return True

    def recover(self) -> list[str]:
        """Queues again the unfinished jobs that the queue no longer holds (a restart cut them short). On
        the SQLite queue this process is the only runner, so that is every such job; on Redis other
        workers may be running theirs, so only jobs whose lease ran out."""
        if self.redis_url is not None:
            return self.requeue_stale()
        pending = {task.args[0] for task in self.huey.pending() if task.args}
        requeued = []
        for job in self.jobs.unfinished():
            if job.id not in pending:
                self.jobs.requeue(job.id)
                self._tasks[job.kind](job.id)
                requeued.append(job.id)
                log.warning("job queued again after a restart", extra={"job": job.id, "kind": job.kind})
        return requeued

    def queue_reachable(self) -> bool:
        """Whether the queue answers (Redis may be down; the SQLite queue is a local file)."""
        if self.redis_url is None:
            return True
        try:
            return bool(self.huey.storage.conn.ping())
        except Exception:
            return False

    def requeue_stale(self) -> list[str]:
        """Jobs of dead workers (no lease renewed for lease_s) go back on the queue, and so do queued jobs
        the queue lost (Redis was down when they were put back): a duplicate delivery is harmless, as only
        one worker can claim a job."""
        requeued = []
        for job in self.jobs.requeue_stale(self.lease_s):
            self._tasks[job.kind](job.id)
            requeued.append(job.id)
            log.warning("job queued again: its worker stopped reporting",
                        extra={"job": job.id, "kind": job.kind, "done": job.done, "total": job.total})
        waiting = [j for j in self.jobs.recent(limit=1000, state=QUEUED) if j.updated_at < time.time() - self.lease_s]
        if waiting:
            pending = {task.args[0] for task in self.huey.pending() if task.args}
            for job in waiting:
                if job.id not in pending:
                    self.jobs.requeue(job.id)  # renews updated_at: put back once a lease at most
                    self._tasks[job.kind](job.id)
                    requeued.append(job.id)
        return requeued

    def _keep_leases(self) -> None:
        """Renews the leases of this process's running jobs, and requeues those of dead workers."""
        every = min(2.0, self.lease_s / 3)
        while not self._stop.wait(every):
            try:
                with self._running_lock:
                    running = sorted(self._running)
                self.jobs.heartbeat(running)
                self.requeue_stale()
                if not self._recovered:
                    self._recovered = self._try_recover()
            except Exception:  # Redis or the disk gone for a moment: try again next round
                log.warning("cannot renew job leases", exc_info=True)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                task = self.huey.dequeue()
            except Exception:  # the queue's Redis is down: wait, then try again (service resumes by itself)
                log.warning("cannot read the job queue", exc_info=True)
                self._stop.wait(IDLE_WAIT_S)
                continue
            if task is None:
                self._wake.wait(IDLE_WAIT_S)
                self._wake.clear()
                continue
            self.huey.execute(task)

    # -- jobs -------------------------------------------------------------------------------------

    def submit_ingest(self, collection: str, catalog: Path, *, mapping: dict[str, str] | None = None,
                      fmt: str | None = None, prune: bool = False, media_root: str | None = None,
                      shared: str | None = None) -> Job:
        """`shared`: where object storage holds the uploaded catalog, for a worker on another machine."""
        params: dict[str, Any] = {"catalog": str(catalog), "mapping": mapping or {}, "format": fmt, "prune": prune,
                                  "media_root": media_root, "shared": shared}
        return self._submit("ingest", collection, params)

    def submit_train(self, collection: str, *, seed: int = 0, epochs: int | None = None) -> Job:
        return self._submit("train", collection, {"seed": seed, "epochs": epochs})

    def submit_reindex(self, collection: str, *, encoder: str) -> Job:
        return self._submit("reindex", collection, {"encoder": encoder})

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
        try:
            self._tasks[kind](job.id)
        except Exception as exc:  # huey's Redis is down: the job cannot be queued, so it never runs
            self.jobs.finish(job.id, FAILED, error="the job queue is unavailable")
            raise ServiceDown(f"the job queue is unavailable ({type(exc).__name__}); retry when it is back") from exc
        self._wake.set()
        return job

    def cancel(self, job_id: str) -> Job:
        return self.jobs.request_cancel(job_id)

    def run_ingest(self, job_id: str) -> None:
        def work(job: Job, check: Callable[[int, int], None]) -> dict[str, Any]:
            p = job.params
            catalog = Path(p["catalog"])
            if p.get("shared") and not catalog.is_file():  # uploaded to a replica on another machine
                catalog = self.engine.fetch_shared_upload(p["shared"])
            report = self.engine.ingest(job.collection or "", catalog, mapping=p["mapping"] or None,
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

    def run_reindex(self, job_id: str) -> None:
        """Counts are photos encoded; a restart resumes from the encoder's feature cache."""
        from vitrine.reindexing import reindex

        def work(job: Job, check: Callable[[int, int], None]) -> dict[str, Any]:
            return reindex(self.engine, job.collection or "", encoder=job.params["encoder"], progress=check)

        self._run(job_id, work, cancelled="cancelled; the collection keeps its encoder (photos encoded so far are "
                                          "kept in the cache for the next run)")

    def run_look(self, job_id: str) -> None:
        """States QUEUED -> DETECTING -> ANALYZING -> MATCHING -> COMPLETE | FAILED; the result is the look."""

        def work(job: Job, check: Callable[[int, int], None]) -> dict[str, Any]:
            p = job.params

            def stage(name: str) -> None:
                self.jobs.set_stage(job_id, name)
                check(LOOK_STAGES.index(name) + 1, len(LOOK_STAGES))

            return self.looks.run(p["look_id"], collection=job.collection, top_k=p["top_k"],
                                  filters=Filters.from_plain(p["filters"]), stage=stage)

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
        if not self.jobs.claim(job_id):
            return  # another worker runs it
        with self._running_lock:
            self._running.add(job_id)
        try:
            self._run_claimed(job_id, job, work, cancelled=cancelled)
        finally:
            with self._running_lock:
                self._running.discard(job_id)

    def _run_claimed(self, job_id: str, job: Job, work: Callable[[Job, Callable[[int, int], None]], dict[str, Any]],
                     *, cancelled: str) -> None:
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
