"""Jobs on Redis: API replicas that only queue (`serve --no-jobs`), `vitrine worker` processes that run
them, a worker killed mid-ingest, and a Redis that is down and comes back. Redis is Debian's
redis-server, started by each test on a free port; with VITRINE_TEST_BACKEND=postgres the replicas and
workers share one PostgreSQL database too."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from conftest import BACKEND, LUMA, REPO, admin_token, backend_env, free_port, served, start_server, wait_for
from test_jobs import zip_catalog

from vitrine.jobs.store import COMPLETE
from vitrine.settings import Settings

LEASE_S = "3"  # a dead worker's job is queued again after this long


def start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: `make test` installs it (Debian's redis-server)"
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                               "no", "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def pong(_: object) -> bool:
        assert server.poll() is None, "redis-server exited"
        try:
            return bool(redis.Redis(port=port, socket_timeout=1).ping())
        except redis.ConnectionError:
            return False

    wait_for(lambda: None, pong, timeout_s=30)
    return server


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    server = start_redis(port, tmp_path)
    try:
        yield port
    finally:
        stop(server)


def start_worker(home: Path, env: dict[str, str], number: int) -> subprocess.Popen[bytes]:
    variables = {**os.environ, **backend_env(home), "PYTHONPATH": str(REPO), "VITRINE_INGEST_BATCH": "8", **env}
    with (home / f"worker-{number}.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "vitrine", "worker"], env=variables, stdout=log,
                                stderr=subprocess.STDOUT)


def job_of(base: str, job_id: str) -> Callable[[], dict[str, object]]:
    return lambda: dict(httpx.get(f"{base}/jobs/{job_id}", timeout=10).json())


def test_two_replicas_and_workers_on_one_redis_survive_a_worker_killed_mid_ingest(
    settings: Settings, redis_port: int
) -> None:
    home = settings.home
    env = {"VITRINE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "VITRINE_JOB_LEASE_S": LEASE_S}
    auth = {"X-API-Key": admin_token(home)}
    first = start_worker(home, env, 1)
    second = None
    try:
        with served(home, "--no-jobs", env=env) as one, served(home, "--no-jobs", env=env) as other:
            ready = httpx.get(f"{one}/readyz").json()
            assert ready["checks"]["job_queue"] is True
            assert httpx.post(f"{one}/collections", json={"name": "luma"}, headers=auth).status_code == 201
            accepted = httpx.post(f"{one}/collections/luma/ingest", timeout=120, headers=auth,
                                  files={"file": ("luma.zip", zip_catalog(LUMA / "catalog.csv"))})
            assert accepted.status_code == 202, accepted.text
            job_id = accepted.json()["id"]
            # The other replica sees the job the worker runs: neither replica runs jobs.
            wait_for(job_of(other, job_id), lambda j: j["state"] == "RUNNING" and j["done"] >= 16)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)

            second = start_worker(home, env, 2)
            job = wait_for(job_of(other, job_id), lambda j: j["state"] not in ("QUEUED", "RUNNING"))
            assert job["state"] == COMPLETE and job["attempts"] == 2, job
            result = job["result"]
            assert isinstance(result, dict) and result["valid"] == 191 and result["unchanged"] >= 16
            # Complete, and nothing twice: every product and photo once.
            info = httpx.get(f"{other}/collections/luma").json()
            assert info["products"] == 191 and info["images"] == 721
            hits = httpx.post(f"{other}/search", json={"text": "black hoodie", "collection": "luma"}).json()["hits"]
            assert hits[0]["category"] == "Hoodies & Sweatshirts"
            assert len({h["id"] for h in hits}) == len(hits)
            # On the postgres backend (`make test` runs this on both) the collection is in the database only.
            assert (home / "collections" / "luma" / "store.sqlite").exists() == (BACKEND == "sqlite")
    finally:
        stop(first)
        if second is not None:
            stop(second)


def test_a_redis_that_is_down_gives_clear_503s_and_service_resumes_when_it_is_back(
    settings: Settings, tmp_path: Path
) -> None:
    home = settings.home
    port = free_port()  # nothing listens there yet
    env = {"VITRINE_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    auth = {"X-API-Key": admin_token(home)}
    server = start_server(home, api_port := free_port(), "--no-jobs", env=env)
    base = f"http://127.0.0.1:{api_port}"

    def models_loaded(_: object) -> bool:
        assert server.poll() is None, "the server exited; see server.log in its home"
        try:
            return bool(httpx.get(f"{base}/readyz", timeout=10).json()["checks"]["models"])
        except httpx.TransportError:
            return False

    try:
        wait_for(lambda: None, models_loaded, timeout_s=120)
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["job_queue"] is False
        assert "job_queue" in ready.json()["error"]["message"]
        assert httpx.post(f"{base}/collections", json={"name": "luma"}, headers=auth).status_code == 201
        refused = httpx.post(f"{base}/collections/luma/ingest", timeout=60, headers=auth,
                             files={"file": ("luma.zip", zip_catalog(LUMA / "catalog.csv"))})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "service_unavailable"
        assert "job queue" in refused.json()["error"]["message"]
        # Searches do not need the queue.
        assert httpx.post(f"{base}/search", json={"text": "hoodie", "collection": "luma"}).status_code == 200

        queue = start_redis(port, tmp_path)
        try:
            assert httpx.get(f"{base}/readyz").status_code == 200
            accepted = httpx.post(f"{base}/collections/luma/ingest", timeout=120, headers=auth,
                                  files={"file": ("luma.zip", zip_catalog(LUMA / "catalog.csv"))})
            assert accepted.status_code == 202, accepted.text
            assert redis.Redis(port=port).llen("huey.redis.vitrine") == 1  # queued for a worker
        finally:
            stop(queue)
    finally:
        stop(server)
