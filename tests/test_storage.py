"""Photos in S3-compatible object storage (`VITRINE_STORAGE_URL`): put once per content at ingest and
upload, served by a replica that has no catalog folder, and a store that is down answering 503. The
object store is moto's S3 server on loopback, reached through boto3 as a real one would be."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from conftest import LUMA, free_port, make_settings
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer
from pydantic import ValidationError

from vitrine.api.app import create_app
from vitrine.engine import Engine
from vitrine.errors import ServiceDown
from vitrine.search.query import Query

BUCKET = "shop-photos"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3 server on a free loopback port with one bucket; its endpoint URL."""
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        httpx.post(f"{endpoint}/moto-api/reset")  # moto keeps its buckets in the process, across servers
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def stored_keys(endpoint: str) -> list[str]:
    listed = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=BUCKET)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_photos_go_to_object_storage_and_any_replica_serves_them(s3: str, small_luma: Path, models_dir: Path,
                                                                 tmp_path: Path) -> None:
    storage = {"storage_url": f"s3://{BUCKET}/vitrine", "storage_endpoint": s3}
    with Engine(make_settings(tmp_path / "a", models_dir, **storage)) as engine:
        report = engine.ingest("shop", small_luma)
        assert report.completed and report.valid == 12
        products = engine.store("shop").get_products(sorted(engine.store("shop").product_hashes()))
        images = [im for p in products for im in p.images]
        assert images and all(im.path.startswith(f"s3://{BUCKET}/vitrine/photos/") for im in images)
        keys = stored_keys(s3)
        assert len(keys) == len({im.sha256 for im in images})  # one object per content, however often shown
        engine.ingest("shop", small_luma)  # unchanged: nothing is sent again
        assert stored_keys(s3) == keys

    # The catalog folder is gone (another machine ingested it): photos are still served, from storage.
    shutil.rmtree(small_luma.parent)
    copy = tmp_path / "b"
    shutil.copytree(tmp_path / "a" / "collections", copy / "collections")
    with Engine(make_settings(copy, models_dir, **storage)) as engine, \
            TestClient(create_app(engine=engine)) as client:
        product = products[0]
        served = client.get(f"/collections/shop/products/{product.id}/images/0")
        assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
        assert hashlib.sha256(served.content).hexdigest() == product.images[0].sha256
        photo = (LUMA / "images" / "mh02-black_main.jpg").read_bytes()
        assert engine.search(Query(image=photo, collection="shop", top_k=1)).hits[0].id == "MH02"


def test_an_uploaded_photo_goes_to_storage_and_a_store_that_is_down_answers_503(
        s3: str, small_luma: Path, models_dir: Path, tmp_path: Path) -> None:
    from conftest import admin_token

    settings = make_settings(tmp_path / "home", models_dir, storage_url=f"s3://{BUCKET}", storage_endpoint=s3)
    photo = (LUMA / "images" / "mj01-orange_main.jpg").read_bytes()
    with Engine(settings) as engine, TestClient(create_app(engine=engine),
                                                headers={"Authorization": f"Bearer {admin_token(settings.home)}"}) as c:
        made = c.put("/collections/shop/products/J1", data={"product": '{"title": "Orange jacket"}'},
                     files={"images": ("j.jpg", photo, "image/jpeg")})
        assert made.status_code == 200, made.text
        sha = hashlib.sha256(photo).hexdigest()
        assert stored_keys(s3) == [f"photos/{sha}.jpeg"]
        assert not (settings.home / "media").exists()
        assert c.get("/collections/shop/products/J1/images/0").content == photo

        down = make_settings(tmp_path / "other", models_dir, storage_url=f"s3://{BUCKET}",
                             storage_endpoint=f"http://127.0.0.1:{free_port()}")
        with Engine(down) as other, pytest.raises(ServiceDown, match="photo storage"):
            other.photos.put(sha, photo)


def test_a_storage_url_that_is_not_s3_is_refused(tmp_path: Path, models_dir: Path) -> None:
    with pytest.raises(ValidationError, match="must be an S3 URL"):
        make_settings(tmp_path, models_dir, storage_url="ftp://photos")


def test_a_worker_on_another_machine_ingests_a_catalog_uploaded_to_a_replica(
        s3: str, small_luma: Path, models_dir: Path, postgres_server: str, tmp_path: Path) -> None:
    """Two homes that share nothing on disk: one replica takes the upload, a worker elsewhere runs the job,
    through one database, one Redis and one object store."""
    from conftest import create_database, wait_for
    from test_jobs import zip_catalog
    from test_redis_jobs import start_redis, stop

    from vitrine.jobs.runner import JobRunner
    from vitrine.jobs.store import SCHEMA as JOBS
    from vitrine.jobs.store import JobStore
    from vitrine.keys import SCHEMA as KEYS
    from vitrine.keys import KeyStore

    port = free_port()
    redis = start_redis(port, tmp_path)
    shared = {"database_url": create_database("two_machines"), "redis_url": f"redis://127.0.0.1:{port}/0",
              "storage_url": f"s3://{BUCKET}/shop", "storage_endpoint": s3}
    replica_home, worker_home = tmp_path / "replica", tmp_path / "worker"
    try:
        with Engine(make_settings(replica_home, models_dir, run_jobs=False, **shared)) as replica, \
                Engine(make_settings(worker_home, models_dir, **shared)) as worker_engine:
            token = KeyStore(replica.backend.tables("keys", KEYS)).create("shop", "admin")[1]
            with TestClient(create_app(engine=replica), headers={"Authorization": f"Bearer {token}"}) as client:
                accepted = client.post("/collections/shop/ingest",
                                       files={"file": ("shop.zip", zip_catalog(small_luma), "application/zip")})
                assert accepted.status_code == 202, accepted.text
                shutil.rmtree(replica_home / "uploads")  # the worker cannot have read it from this disk
                worker = JobRunner(worker_engine, jobs=JobStore(worker_engine.backend.tables("jobs", JOBS)),
                                   queue_path=worker_home / "queue.sqlite", redis_url=shared["redis_url"])
                assert worker.start()
                try:
                    job = wait_for(lambda: client.get(f"/jobs/{accepted.json()['id']}").json(),
                                   lambda j: j["state"] not in ("QUEUED", "RUNNING"))
                finally:
                    worker.stop()
                assert job["state"] == "COMPLETE" and job["result"]["valid"] == 12, job
                found = client.post("/search", json={"text": "hoodie", "collection": "shop", "top_k": 1})
                hit = found.json()["hits"][0]
                photo = client.get(hit["main_image_url"])
                assert photo.status_code == 200 and photo.content[:3] == b"\xff\xd8\xff"
        assert any(k.startswith("shop/uploads/") for k in stored_keys(s3))
        assert not (replica_home / "collections" / "shop" / "store.sqlite").exists()
    finally:
        stop(redis)
