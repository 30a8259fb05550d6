"""Background ingest jobs: through the app, cancelled, and across a server killed mid-ingest."""

from __future__ import annotations

import io
import shutil
import signal
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from conftest import LUMA, admin_token, free_port, served, start_server, wait_for, wait_ready
from fastapi.testclient import TestClient

from vitrine.api.app import create_app
from vitrine.engine import Engine
from vitrine.jobs.runner import JobRunner
from vitrine.jobs.store import CANCELLED, COMPLETE, QUEUED, JobStore
from vitrine.settings import Settings


def zip_catalog(catalog: Path) -> bytes:
    """A zip of a catalog file and every file beside it (its photos)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in catalog.parent.rglob("*"):
            if path.is_file():
                zf.write(path, Path("shop") / path.relative_to(catalog.parent))
    return buffer.getvalue()


def test_upload_zip_runs_an_ingest_job(settings: Settings, small_luma: Path) -> None:
    auth = {"Authorization": f"Bearer {admin_token(settings.home)}"}
    with Engine(settings) as engine, TestClient(create_app(engine=engine), headers=auth) as client:
        accepted = client.post("/collections/shop/ingest", files={"file": ("shop.zip", zip_catalog(small_luma))})
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]
        job = wait_for(lambda: client.get(f"/jobs/{job_id}").json(), lambda j: j["state"] not in ("QUEUED", "RUNNING"))
        assert job["state"] == "COMPLETE", job
        assert (job["done"], job["total"], job["result"]["added"]) == (12, 12, 12)
        assert job["rate_per_s"] > 0 and job["result"]["problems"] == []
        hits = client.post("/search", json={"text": "hoodie", "collection": "shop", "top_k": 1}).json()["hits"]
        assert hits[0]["category"] == "Hoodies & Sweatshirts"
        assert [j["id"] for j in client.get("/jobs").json()] == [job_id]
        assert client.get("/jobs", params={"state": "FAILED"}).json() == []


def test_refused_uploads_store_nothing(settings: Settings, small_luma: Path) -> None:
    auth = {"Authorization": f"Bearer {admin_token(settings.home)}"}
    with Engine(settings) as engine, TestClient(create_app(engine=engine), headers=auth) as client:
        broken = small_luma.read_bytes() + b'ZZ1,"never closed\n'
        response = client.post("/collections/shop/ingest", files={"file": ("c.csv", broken)})
        assert response.status_code == 422 and "malformed CSV" in response.json()["error"]["message"]
        sneaky = io.BytesIO()
        with zipfile.ZipFile(sneaky, "w") as zf:
            zf.writestr("../../evil.csv", "id,title\n1,x\n")
        response = client.post("/collections/shop/ingest", files={"file": ("c.zip", sneaky.getvalue())})
        assert response.status_code == 422 and response.json()["error"]["code"] == "unsafe_source"
        response = client.post("/collections/shop/ingest", files={"file": ("c.exe", b"MZ\x90\x00")})
        assert response.status_code == 422
        response = client.post("/collections/shop/ingest", files={"file": ("c.csv", small_luma.read_bytes())},
                               data={"mapping": '{"id": "sku"}'})
        assert response.status_code == 422 and response.json()["error"]["field"] == "id"
        response = client.post("/collections/shop/ingest/url", json={"url": "http://127.0.0.1:9/c.csv"})
        assert response.status_code == 422 and response.json()["error"]["code"] == "unsafe_source"
        assert client.get("/jobs").json() == [] and client.get("/collections").json() == []
        assert client.get("/jobs/nope").status_code == 404
        assert not (engine.home / "evil.csv").exists() and not (engine.home.parent / "evil.csv").exists()


def test_cancel_a_queued_job(settings: Settings, small_luma: Path) -> None:
    with Engine(settings) as engine:
        jobs = JobStore.at(settings.home / "jobs.sqlite")
        runner = JobRunner(engine, jobs=jobs, queue_path=settings.home / "queue.sqlite")  # not started
        job = runner.submit_ingest("shop", small_luma)
        assert job.state == QUEUED
        assert runner.cancel(job.id).cancel_requested
        runner.huey.execute(runner.huey.dequeue())  # what a worker does next
        assert jobs.get(job.id).state == CANCELLED
        assert "shop" not in engine.collection_names()
        with pytest.raises(Exception, match="already CANCELLED"):
            runner.cancel(job.id)
        jobs.close()


def test_server_killed_mid_ingest_resumes_the_job(settings: Settings, tmp_path: Path) -> None:
    """The full flow over HTTP on the Luma catalog, with a kill -9 in the middle of the ingest."""
    home = settings.home
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = {"X-API-Key": admin_token(home)}
    server = start_server(home, port)
    try:
        wait_ready(server, base)
        assert httpx.post(f"{base}/collections", json={"name": "luma"}, headers=auth).status_code == 201
        accepted = httpx.post(f"{base}/collections/luma/ingest", timeout=120, headers=auth,
                              files={"file": ("luma.zip", zip_catalog(LUMA / "catalog.csv"))})
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]
        wait_for(lambda: httpx.get(f"{base}/jobs/{job_id}").json(), lambda j: j["done"] >= 16)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)

        server = start_server(home, port)
        wait_ready(server, base)
        job = wait_for(lambda: httpx.get(f"{base}/jobs/{job_id}").json(),
                       lambda j: j["state"] not in ("QUEUED", "RUNNING"))
        assert job["state"] == COMPLETE and job["attempts"] == 2, job
        assert job["result"]["unchanged"] >= 16 and job["result"]["valid"] == 191
        info = httpx.get(f"{base}/collections/luma").json()
        assert info["products"] == 191 and info["images"] == 721
        hits = httpx.post(f"{base}/search", json={"text": "black hoodie", "collection": "luma"}).json()["hits"]
        assert hits[0]["category"] == "Hoodies & Sweatshirts"
        assert httpx.delete(f"{base}/collections/luma").status_code == 401
        assert httpx.delete(f"{base}/collections/luma", headers=auth).status_code == 204
        assert httpx.get(f"{base}/collections").json() == []
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_train_job_versions_labels_and_clicks_over_http(settings: Settings) -> None:
    auth = {"Authorization": f"Bearer {admin_token(settings.home)}"}
    with Engine(settings) as engine, TestClient(create_app(engine=engine), headers=auth) as client:
        engine.ingest("luma", LUMA / "catalog.csv")
        assert client.post("/collections/luma/clicks", json={"product_id": "MH03", "query": "green running hoodie"}
                           ).status_code == 204
        assert client.post("/collections/luma/clicks", json={"product_id": "nope", "query": "x"}).status_code == 404
        accepted = client.post("/collections/luma/train", json={"epochs": 2})
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]
        job = wait_for(lambda: client.get(f"/jobs/{job_id}").json(), lambda j: j["state"] not in ("QUEUED", "RUNNING"))
        assert job["state"] == "COMPLETE", job
        assert (job["kind"], job["done"], job["total"], job["result"]["version"]) == ("train", 2, 2, "v1")

        versions = client.get("/collections/luma/models").json()
        assert [(v["version"], v["active"]) for v in versions] == [("base", False), ("v1", True)]
        assert versions[0]["image_model"] == "efficientnet-lite0-fashion" and versions[1]["image_model"] is None
        assert client.put("/collections/luma/models/active", json={"version": "base"}).json()["version"] == "base"
        assert client.put("/collections/luma/models/active", json={"version": "v9"}).status_code == 404

        photo = (LUMA / "images" / "mh03-green_main.jpg").read_bytes()
        labels = client.post("/labels", files={"image": ("p.jpg", photo)}, params={"collection": "luma"}).json()
        assert labels["model"] == "base" and labels["labels"]["colour"][0]["value"] == "Green"
        refused = client.post("/labels", files={"image": ("p.jpg", b"GIF89a not really")})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "image"
        assert client.post("/collections/nowhere/train", json={}).status_code == 404


def test_reindex_job_over_http(settings: Settings, small_luma: Path, tiny_clip: Path) -> None:
    auth = {"Authorization": f"Bearer {admin_token(settings.home)}"}
    with Engine(settings) as engine, TestClient(create_app(engine=engine), headers=auth) as client:
        engine.ingest("shop", small_luma)
        photos = engine.store("shop").photo_count()
        shutil.copytree(tiny_clip, settings.home / "checkpoints" / "tiny")
        for encoder in ("nope", "clip:/etc"):  # not pulled; a server path is the CLI's to name
            refused = client.post("/collections/shop/reindex", json={"encoder": encoder})
            assert refused.status_code == 422 and refused.json()["error"]["field"] == "encoder", refused.text
        assert client.post("/collections/nowhere/reindex", json={}).status_code == 404

        accepted = client.post("/collections/shop/reindex", json={"encoder": "tiny"})
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]
        job = wait_for(lambda: client.get(f"/jobs/{job_id}").json(), lambda j: j["state"] not in ("QUEUED", "RUNNING"))
        assert job["state"] == COMPLETE, job
        assert (job["kind"], job["done"], job["total"]) == ("reindex", photos, photos)
        assert job["result"]["changed"] and job["result"]["image_model"] == "clip:tiny"
        assert client.get("/collections/shop").json()["image_model"] == "clip:tiny"
        hits = client.post("/search", json={"text": "jacket", "collection": "shop"}).json()["hits"]
        assert hits and all("cross_modal" in h["scores"] for h in hits)


def test_two_server_processes_share_one_job_runner(settings: Settings, small_luma: Path) -> None:
    """`vitrine serve --workers 2`: either process takes uploads; exactly one runs the jobs."""
    auth = {"X-API-Key": admin_token(settings.home)}
    with served(settings.home, "--workers", "2") as base:
        jobs = []
        for name in ("one", "two", "three"):  # spread over both processes by the kernel
            accepted = httpx.post(f"{base}/collections/{name}/ingest", headers=auth, timeout=120,
                                  files={"file": ("shop.zip", zip_catalog(small_luma))})
            assert accepted.status_code == 202, accepted.text
            jobs.append(accepted.json()["id"])
        for job_id in jobs:
            job = wait_for(lambda job_id=job_id: httpx.get(f"{base}/jobs/{job_id}").json(),
                           lambda j: j["state"] not in ("QUEUED", "RUNNING"))
            assert job["state"] == COMPLETE and job["attempts"] == 1, job
        for _ in range(6):  # every process sees every collection
            found = httpx.post(f"{base}/search", json={"text": "hoodie", "collection": "three", "top_k": 1})
            assert found.status_code == 200 and found.json()["hits"][0]["category"] == "Hoodies & Sweatshirts"
        # Worker processes turn Nagle off: with it on, every keep-alive response waited ~40 ms for an ACK.
        with httpx.Client(base_url=base) as client:
            times = []
            for _ in range(21):
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                times.append(time.perf_counter() - started)
        assert sorted(times)[10] < 0.025, sorted(times)


def test_a_collection_deleted_or_made_again_by_another_process(settings: Settings, small_luma: Path) -> None:
    from vitrine.errors import NotFound

    with Engine(settings) as first, Engine(settings) as second:
        first.ingest("shop", small_luma)
        assert second.store("shop").count() == 12
        first.delete_collection("shop")
        with pytest.raises(NotFound):
            second.store("shop")
        first.create_collection("shop")
        assert second.store("shop").count() == 0  # the new, empty one; not the old handle


def test_leases_put_back_the_jobs_of_dead_workers_and_those_the_queue_lost(settings: Settings) -> None:
    with Engine(settings) as engine:
        jobs = JobStore.at(settings.home / "jobs.sqlite")
        runner = JobRunner(engine, jobs=jobs, queue_path=settings.home / "queue.sqlite", lease_s=1)
        try:
            lost = jobs.create(kind="train", collection="x", params={})  # in the store, never queued
            running = jobs.create(kind="train", collection="x", params={})
            assert jobs.claim(running.id) and not jobs.claim(running.id)  # one worker at a time
            assert runner.requeue_stale() == []  # nothing is older than a lease yet
            jobs._db.change("UPDATE jobs SET updated_at=updated_at-5")  # a worker went silent 5 s ago
            assert sorted(runner.requeue_stale()) == sorted([lost.id, running.id])
            assert jobs.get(running.id).state == QUEUED and jobs.claim(running.id)
            assert sorted(t.args[0] for t in runner.huey.pending()) == sorted([lost.id, running.id])
            jobs.heartbeat([running.id])
            assert runner.requeue_stale() == []  # a live worker's lease is renewed; the lost one is queued now
        finally:
            jobs.close()
