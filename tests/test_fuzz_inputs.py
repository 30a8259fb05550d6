"""Property-based fuzzing of what strangers send: catalog files (CSV, JSON, JSONL, zip) and search
requests. The property: a clear refusal (a VitrineError, or an HTTP 4xx) or success, never a crash
or a 5xx. Derandomized, so CI sees the same cases every run."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_settings
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitrine.api.app import create_app
from vitrine.catalog.ingest import check_catalog
from vitrine.catalog.uploads import save_upload
from vitrine.engine import Engine
from vitrine.errors import VitrineError

FUZZ = settings(max_examples=120, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Text that stresses parsers: quotes, separators, escapes, lone surrogates, control characters, digits.
_awkward = st.text(alphabet=st.sampled_from(list('a1,;"\'\\\n\r\t{}[]:|.-e0 ') + ["\ud800", "\x00", "é", "😀"]),
                   max_size=40)
_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | _awkward
_json_values = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=4)
                            | st.dictionaries(_awkward, inner, max_size=4), max_leaves=20)


def _read(path: Path, fmt: str | None = None) -> None:
    try:
        check_catalog(path, mapping=None, fmt=fmt)
    except VitrineError:
        pass


@FUZZ
@given(rows=st.lists(st.dictionaries(st.sampled_from(["id", "title", "price", "image", "colour", "x"]), _json_values,
                                     max_size=6), max_size=5),
       wrap=st.booleans(), depth=st.integers(0, 80), big_digits=st.integers(0, 6000))
def test_json_catalogs(rows: list[dict[str, Any]], wrap: bool, depth: int, big_digits: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "catalog.json"
        text = json.dumps({"products": rows} if wrap else rows, allow_nan=True)
        if depth and rows:
            text = text[:-1] + (", " if text[-2] != "[" else "") + "[" * depth + "]" * depth + "]"
        if big_digits and "0" in text:
            text = text.replace("0", "9" * big_digits, 1)
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _read(path)
        lines = Path(folder) / "catalog.jsonl"
        lines.write_text("\n".join(json.dumps(r) for r in rows) + "\n" + text[: len(text) // 2],
                         encoding="utf-8", errors="surrogatepass")
        _read(lines)


@FUZZ
@given(header=st.lists(_awkward, min_size=1, max_size=5), cells=st.lists(st.lists(_awkward, max_size=6), max_size=5),
       delimiter=st.sampled_from([",", "\t", ";"]))
def test_csv_catalogs(header: list[str], cells: list[list[str]], delimiter: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "catalog.csv"
        lines = [delimiter.join(header), *(delimiter.join(row) for row in cells)]
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
        _read(path)
        _read(path, "tsv")


def _valid_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("catalog.csv", "id,title,image\n1,Jacket,images/a.jpg\n")
        zf.writestr("images/a.jpg", b"\xff\xd8\xff" + bytes(200))
    return buffer.getvalue()


VALID_ZIP = _valid_zip()


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(VALID_ZIP) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.integers(0, len(VALID_ZIP)))
def test_damaged_zips(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(VALID_ZIP)
    for at, value in flips:
        data[at] = value
    with tempfile.TemporaryDirectory() as folder:
        uploads = Path(folder) / "uploads"
        try:
            catalog = save_upload(io.BytesIO(bytes(data[: max(cut, 30)])), "c.zip", uploads_dir=uploads,
                                  max_bytes=10_000_000, max_archive_bytes=10_000_000)
        except VitrineError:
            assert not uploads.exists() or not any(uploads.iterdir())  # a refused upload leaves nothing
        else:
            _read(catalog)


@pytest.fixture(scope="module")
def client(luma_home: Path, models_dir: Path) -> Iterator[TestClient]:
    with Engine(make_settings(luma_home, models_dir)) as engine, TestClient(create_app(engine=engine)) as c:
        yield c


_names = st.sampled_from(["category", "colour", "price", "size", "x", "\ud800", "", "a" * 300])
_search_bodies = st.fixed_dictionaries({}, optional={
    "text": _awkward | st.integers(),
    "collection": st.sampled_from(["luma", "nope", "../x", "", "\ud800"]) | st.none(),
    "filters": st.dictionaries(_names, _awkward | st.lists(_awkward, max_size=3) | st.integers(), max_size=40),
    "ranges": st.dictionaries(_names, st.fixed_dictionaries({}, optional={
        "gte": st.floats() | _awkward, "lte": st.floats() | st.none()}), max_size=40),
    "facets": st.lists(_names, max_size=12),
    "top_k": st.integers(-5, 2000), "offset": st.integers(-5, 20_000),
    "alpha": st.floats(), "min_score": st.floats() | st.none(),
    "image_url": _awkward | st.sampled_from(["http://[zz]/", "http://127.0.0.1:99999/", "ftp://x/", "http://10.0.0.1/"]),
    "image_base64": _awkward,
})


@FUZZ
@given(body=_search_bodies)
def test_search_requests(client: TestClient, body: dict[str, Any]) -> None:
    raw = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    response = client.post("/search", content=raw, headers={"content-type": "application/json"})
    assert response.status_code < 500, (body, response.text)
    if response.status_code >= 400:
        assert response.json()["error"]["code"]
