"""The HTTP API through the real app (TestClient), on the Luma catalog and real models."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BACKEND, LUMA, admin_token, backend_environment, make_settings
from fastapi.testclient import TestClient
from test_imaging import _png_header_only

from vitrine.api.app import create_app
from vitrine.engine import Engine

PHOTO = (LUMA / "images" / "mj01-orange_main.jpg").read_bytes()


@pytest.fixture(scope="module")
def client(luma_home: Path, models_dir: Path) -> Iterator[TestClient]:
    """Read-only routes over the shared Luma home."""
    with Engine(make_settings(luma_home, models_dir)) as engine, TestClient(create_app(engine=engine)) as c:
        yield c


@pytest.fixture
def writable(settings: object, small_luma: Path) -> Iterator[TestClient]:
    """A private home with a 12-product collection `shop`, for routes that change things."""
    settings = settings.model_copy(update={"max_request_bytes": 300_000})  # type: ignore[attr-defined]
    with Engine(settings) as engine:
        engine.ingest("shop", small_luma)
        token = admin_token(settings.home)
        with TestClient(create_app(engine=engine), headers={"Authorization": f"Bearer {token}"}) as c:
            yield c


def assert_error(response: object, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert error["code"] == code and error["message"]
    if field is not None:
        assert error["field"] == field, error


def test_health_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    database = {"database": True} if BACKEND == "postgres" else {}
    assert ready.status_code == 200 and ready.json()["checks"] == {"models": True, "store": True, **database}
    paths = client.get("/openapi.json").json()["paths"]
    wanted = {"/search", "/search/upload", "/collections", "/collections/{collection}/products/{product_id}"}
    assert wanted <= set(paths)


def test_text_search_with_filters_and_facets(client: TestClient) -> None:
    body = client.post("/search", json={"text": "black hoodie", "collection": "luma", "top_k": 5}).json()
    assert [h["category"] for h in body["hits"]] == ["Hoodies & Sweatshirts"] * 5
    assert body["hits"][0]["main_image_url"].startswith("/collections/luma/products/")
    assert body["facets"]["category"] and body["timing_ms"]["total"] > 0
    cheap = client.post("/search", json={"text": "shorts", "filters": {"colour": ["Red", "blue"]},
                                         "ranges": {"price": {"lte": 40}}, "top_k": 20}).json()
    assert cheap["hits"] and all(h["price"] <= 40 for h in cheap["hits"])
    assert sum(cheap["facets"]["category"].values()) == cheap["total"]


def test_photo_search_by_base64_and_upload(client: TestClient) -> None:
    encoded = base64.b64encode(PHOTO).decode()
    by_json = client.post("/search", json={"image_base64": encoded, "collection": "luma", "top_k": 3}).json()
    assert by_json["hits"][0]["id"] == "MJ01"
    top = by_json["hits"][0]
    assert top["matched_image"] == "images/mj01-orange_main.jpg"
    assert top["matched_image_url"] == f"/collections/luma/products/MJ01/images/{top['matched_image_position']}"
    uploaded = client.post("/search/upload", files={"image": ("look.jpg", PHOTO, "image/jpeg")},
                           data={"text": "jacket", "options": '{"collection": "luma", "alpha": 0.8, "top_k": 3}'})
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["hits"][0]["id"] == "MJ01"


def test_product_photo_and_similar(client: TestClient) -> None:
    product = client.get("/collections/luma/products/MH01").json()
    assert product["title"] == "Chaz Kangeroo Hoodie" and len(product["images"]) == 5
    photo = client.get(product["images"][0]["url"])
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert photo.content == (LUMA / "images" / "mh01-gray_main.jpg").read_bytes()
    similar = client.post("/collections/luma/products/MH01/similar", json={"top_k": 5}).json()
    assert "MH01" not in [h["id"] for h in similar["hits"]]
    assert sum(h["category"] == "Hoodies & Sweatshirts" for h in similar["hits"]) >= 4
    assert client.post("/collections/luma/products/MH01/similar").status_code == 200


@pytest.mark.parametrize("body, status, code, field", [
    ({"text": "x", "colour": "red"}, 422, "invalid_request", "colour"),  # unknown field
    ({"text": 5}, 422, "invalid_request", "text"),  # wrong type
    ({"text": "x", "alpha": 1.5}, 422, "invalid_request", "alpha"),
    ({"text": "x", "top_k": 0}, 422, "invalid_request", "top_k"),
    ({"text": "x", "top_k": 10**6}, 422, "invalid_request", "top_k"),
    ({"text": "  ", "sort": "cheapest"}, 422, "invalid_request", "sort"),
    ({"image_base64": "not base64!"}, 422, "invalid_input", "image_base64"),
    ({"image_base64": base64.b64encode(b"<html>hi</html>").decode()}, 422, "invalid_image", None),
    ({"image_base64": base64.b64encode(PHOTO[:2000]).decode()}, 422, "invalid_image", None),
    ({"image_base64": base64.b64encode(_png_header_only(90_000, 90_000)).decode()}, 422, "invalid_image", None),
    ({"image_url": "http://127.0.0.1:9/a.jpg"}, 422, "unsafe_source", "image_url"),
    ({"image_url": "file:///etc/passwd"}, 422, "invalid_input", "image_url"),
    ({"text": "x", "collection": "nope"}, 404, "not_found", "collection"),
    ({"text": "x", "collection": "../etc"}, 422, "invalid_input", "collection"),
    ({"text": "x", "ranges": {"price": {"gte": 50, "lte": 10}}}, 422, "invalid_input", "filters"),
])
def test_bad_searches_get_clear_4xx(client: TestClient, body: dict[str, object], status: int, code: str,
                                    field: str | None) -> None:
    assert_error(client.post("/search", json=body), status, code, field)


def test_bad_uploads_and_lookups(client: TestClient) -> None:
    assert_error(client.post("/search/upload", files={"image": ("photo.jpg", b"%PDF-1.4 not a photo", "image/jpeg")}),
                 422, "invalid_image")
    assert_error(client.post("/search/upload", files={"image": ("a.jpg", PHOTO, "image/jpeg")},
                             data={"options": '{"top_k": "many"}'}), 422, "invalid_input", "options.top_k")
    assert_error(client.post("/search", content=b"{not json", headers={"content-type": "application/json"}),
                 422, "invalid_request")
    assert_error(client.get("/collections/luma/products/NOPE"), 404, "not_found", "product_id")
    assert_error(client.get("/collections/luma/products/MH01/images/99"), 404, "not_found", "position")
    assert_error(client.get("/collections/nope"), 404, "not_found", "collection")
    assert_error(client.get("/no/such/route"), 404, "not_found")


def test_collection_lifecycle_and_limits(writable: TestClient) -> None:
    assert [c["name"] for c in writable.get("/collections").json()] == ["shop"]
    assert writable.post("/collections", json={"name": "wardrobe"}).status_code == 201
    assert_error(writable.post("/collections", json={"name": "Bad Name"}), 422, "invalid_input", "collection")
    assert writable.get("/collections/wardrobe").json()["products"] == 0
    assert writable.delete("/collections/wardrobe").status_code == 204
    assert_error(writable.get("/collections/wardrobe"), 404, "not_found")
    assert writable.delete("/collections/shop/products/MH02").status_code == 204
    assert_error(writable.get("/collections/shop/products/MH02"), 404, "not_found")
    hits = writable.post("/search", json={"text": "Teton Pullover Hoodie", "collection": "shop"}).json()["hits"]
    assert "MH02" not in [h["id"] for h in hits]
    big = base64.b64encode(b"\xff\xd8\xff" + b"0" * 400_000).decode()
    assert_error(writable.post("/search", json={"image_base64": big}), 413, "too_large")
    assert writable.get("/collections/shop").json()["products"] == 11  # nothing stored by refused requests


def test_real_server_over_http(settings: object, small_luma: Path) -> None:
    """`vitrine serve` as a user starts it, queried over a real socket."""
    import httpx
    from conftest import served

    home = settings.home  # type: ignore[attr-defined]
    with Engine(settings) as engine:  # type: ignore[arg-type]
        engine.ingest("shop", small_luma)
    with served(home) as base:
        found = httpx.post(f"{base}/search", json={"text": "hoodie", "collection": "shop", "top_k": 2}, timeout=30)
        assert found.status_code == 200 and found.json()["hits"][0]["category"] == "Hoodies & Sweatshirts"
        photo = httpx.get(base + found.json()["hits"][0]["main_image_url"], timeout=10)
        assert photo.status_code == 200 and photo.content[:3] == b"\xff\xd8\xff"


def test_keys_and_scopes(settings: object, small_luma: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vitrine.cli.main import main

    home = settings.home  # type: ignore[attr-defined]

    def cli(*args: str) -> int:  # on the backend of the test: keys live beside the collections
        with backend_environment(home):
            return main(["--home", str(home), *args])

    def token_for(scope: str) -> str:
        assert cli("keys", "create", f"{scope} key", "--scope", scope) == 0
        return capsys.readouterr().out.strip().splitlines()[-1]

    read, write, admin = token_for("read"), token_for("write"), token_for("admin")
    with Engine(settings) as engine:  # type: ignore[arg-type]
        engine.ingest("shop", small_luma)
        with TestClient(create_app(engine=engine)) as client:
            def as_(token: str | None) -> dict[str, str]:
                return {"Authorization": f"Bearer {token}"} if token else {}

            assert client.post("/search", json={"text": "hoodie"}).status_code == 200  # reads are public
            assert_error(client.post("/collections", json={"name": "x"}), 401, "unauthorized")
            assert client.post("/collections", json={"name": "x"}).headers["www-authenticate"] == "Bearer"
            assert_error(client.post("/collections", json={"name": "x"}, headers=as_("vtr_nope_nope")), 401,
                         "unauthorized")
            assert_error(client.post("/collections", json={"name": "x"}, headers=as_(read)), 403, "forbidden")
            assert client.post("/collections", json={"name": "x"}, headers=as_(write)).status_code == 201
            assert_error(client.delete("/collections/x", headers=as_(write)), 403, "forbidden")
            assert client.delete("/collections/x", headers={"X-API-Key": admin}).status_code == 204
            _, key_id, write_secret = write.split("_", 2)  # the secret itself may hold "_"
            assert cli("keys", "revoke", key_id) == 0
            assert_error(client.post("/collections", json={"name": "y"}, headers=as_(write)), 401, "unauthorized")
            capsys.readouterr()
            assert cli("keys", "list", "--json") == 0
            listed = capsys.readouterr().out
            assert "revoked_at" in listed and write_secret not in listed  # secrets are never listed
    private = settings.model_copy(update={"public_reads": False})  # type: ignore[attr-defined]
    with Engine(private) as engine, TestClient(create_app(engine=engine)) as client:
        assert_error(client.post("/search", json={"text": "hoodie"}), 401, "unauthorized")
        assert client.post("/search", json={"text": "hoodie"}, headers={"X-API-Key": read}).status_code == 200


def test_request_ids_and_metrics(client: TestClient) -> None:
    echoed = client.post("/search", json={"text": "tee", "collection": "luma"}, headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    fresh = client.get("/healthz").headers["x-request-id"]
    assert len(fresh) == 32 and fresh != "abc-123"
    assert client.get("/healthz", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"] != "bad id\n"
    client.post("/search", json={"image_base64": base64.b64encode(PHOTO).decode()})
    text = client.get("/metrics").text
    assert 'vitrine_http_request_duration_seconds_count{method="POST",route="/search",status="200"}' in text
    assert 'vitrine_search_stage_seconds_count{stage="encode"}' in text
    images = re.search(r'vitrine_searches_total\{kind="image"\} ([0-9.]+)', text)
    assert images is not None and float(images.group(1)) >= 1
    assert "vitrine_job_queue_depth 0.0" in text and "vitrine_up 1.0" in text


def test_token_buckets_refill_over_time() -> None:
    from vitrine.api.ratelimit import TokenBuckets

    buckets = TokenBuckets(rate_per_s=2.0, burst=3)
    assert [buckets.take("a", 100.0) for _ in range(3)] == [None, None, None]
    assert buckets.take("a", 100.0) == pytest.approx(0.5)  # empty: one token comes back in half a second
    assert buckets.take("b", 100.0) is None  # clients do not share buckets
    assert buckets.take("a", 100.6) is None
    assert buckets.take("a", 100.6) is not None


def test_rate_limit_and_cors(settings: object) -> None:
    limited = settings.model_copy(update={  # type: ignore[attr-defined]
        "rate_limit_per_minute": 60, "rate_limit_burst": 2, "cors_origins": ["https://shop.example"]})
    with Engine(limited) as engine, TestClient(create_app(engine=engine)) as client:
        assert client.get("/collections").status_code == 200
        assert client.get("/collections").status_code == 200
        refused = client.get("/collections")
        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) >= 1
        assert client.get("/healthz").status_code == 200  # probes are never limited
        key = admin_token(limited.home)
        assert client.get("/collections", headers={"X-API-Key": key}).status_code == 200  # a key has its own bucket
        preflight = client.options("/search", headers={"Origin": "https://shop.example",
                                                       "Access-Control-Request-Method": "POST"})
        assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
        other = client.options("/search", headers={"Origin": "https://evil.example",
                                                   "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers


def test_put_product_with_photos(writable: TestClient) -> None:
    front = (LUMA / "images" / "wj01-yellow_main.jpg").read_bytes()
    back = (LUMA / "images" / "wj01-red_back.jpg").read_bytes()
    product = '{"title": "Yellow rain jacket", "category": "Jackets", "colour": "Yellow", "price": 80, ' \
              '"attributes": {"material": "Nylon", "sizes": ["S", "M"]}}'
    files = [("images", ("front.jpg", front, "image/jpeg")), ("images", ("back.jpg", back, "image/jpeg"))]
    created = writable.put("/collections/wardrobe/products/RAIN-1", files=files, data={"product": product})
    assert created.status_code == 200, created.text
    body = created.json()
    assert (body["title"], body["price"], len(body["images"])) == ("Yellow rain jacket", 80.0, 2)
    assert body["attributes"] == {"material": "Nylon", "sizes": ["S", "M"]}
    assert writable.get(body["images"][1]["url"]).content == back
    hit = writable.post("/search", json={"image_base64": base64.b64encode(back).decode(),
                                         "collection": "wardrobe"}).json()["hits"][0]
    assert (hit["id"], hit["matched_image_position"]) == ("RAIN-1", 1)
    assert writable.post("/search", json={"text": "yellow jacket", "collection": "wardrobe",
                                          "filters": {"material": "nylon"}}).json()["hits"][0]["id"] == "RAIN-1"

    replaced = writable.put("/collections/wardrobe/products/RAIN-1", files=[("images", ("f.jpg", front, "image/jpeg"))],
                            data={"product": '{"title": "Rain jacket"}'})
    assert replaced.json()["title"] == "Rain jacket" and len(replaced.json()["images"]) == 1

    bad = [("images", ("f.jpg", front, "image/jpeg")), ("images", ("x.jpg", b"<html>no</html>", "image/jpeg"))]
    assert_error(writable.put("/collections/wardrobe/products/RAIN-1", files=bad, data={"product": "{}"}),
                 422, "invalid_image")
    assert_error(writable.put("/collections/wardrobe/products/RAIN-1", files=files,
                              data={"product": '{"price": -1}'}), 422, "invalid_input", "product.price")
    assert_error(writable.put("/collections/wardrobe/products/RAIN-1", files=files,
                              data={"product": '{"colour": "Red", "size": "M"}'}), 422, "invalid_input",
                 "product.size")
    assert_error(writable.put("/collections/wardrobe/products/RAIN-1", files=files, headers={"Authorization": ""},
                              data={"product": "{}"}), 401, "unauthorized")
    kept = writable.get("/collections/wardrobe/products/RAIN-1").json()
    assert kept["title"] == "Rain jacket" and len(kept["images"]) == 1  # refused requests changed nothing


def test_complete_the_look_pairs_other_groups_of_the_same_gender(client: TestClient) -> None:
    found = client.get("/collections/luma/products/MH01/complete").json()["items"]  # a men's hoodie
    assert len(found) == 8
    groups = {i["group"] for i in found}
    assert groups <= {"bottom", "shoes", "outerwear", "bag"} and "bottom" in groups
    assert all(i["category"] != "Hoodies & Sweatshirts" and i["main_image_url"] for i in found)
    women = [i["id"] for i in found if i["id"].startswith("W")]  # Luma's ids: W... are women's
    assert women == []
    assert client.get("/collections/luma/products/nope/complete").status_code == 404
    assert client.get("/collections/luma/products/MH01/complete", params={"limit": 0}).status_code == 422
