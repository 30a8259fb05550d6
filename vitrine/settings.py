"""The one settings object: defaults < config file (TOML) < environment (VITRINE_*)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vitrine"


class Settings(BaseSettings):
    """Everything configurable. Read once at the edge (CLI, API) and passed down as plain values."""

    model_config = SettingsConfigDict(env_prefix="VITRINE_", extra="forbid")

    home: Path = Field(default_factory=_default_home, description="Where collections, models and caches live.")
    data_dir: Path = Field(Path("../shared/data"), description="The shared real data (demo catalog, dev sets).")
    demo_catalog: Path | None = Field(None, description="Demo catalog; defaults to <data_dir>/luma/catalog.csv.")
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    batch_size: int = Field(8, ge=1, le=1024, description="Images per encoder call (8 measured fastest on CPU).")
    ingest_batch: int = Field(
        128, ge=1, le=4096,
        description="Products per ingest transaction; texts are encoded per batch, sorted by length.",
    )
    max_image_pixels: int = Field(40_000_000, ge=1, description="Decompression-bomb guard.")
    max_query_pixels: int = Field(
        16_000_000, ge=1, description="Largest query photo (search, labels, looks) in pixels: a phone's 12 Mpx fits."
    )
    decode_slots: int | None = Field(
        None, ge=1, le=64, description="Query photos decoded at once (default: half the threads, at least 1); "
        "the rest wait up to decode_wait_s, then get 503, so photo floods leave cores for other searches.",
    )
    decode_wait_s: float = Field(5.0, ge=0, le=60)
    max_download_bytes: int = Field(20_000_000, ge=1, description="Per image file, local or downloaded.")
    max_request_bytes: int = Field(10_000_000, ge=1, description="Largest HTTP request body (uploads included).")
    max_catalog_upload_bytes: int = Field(
        200_000_000, ge=1, description="Largest catalog upload (a zip of a catalog and its photos)."
    )
    max_archive_bytes: int = Field(1_000_000_000, ge=1, description="Most bytes an uploaded zip may unpack to.")
    public_reads: bool = Field(True, description="Searches and reads need no API key.")
    public_writes: bool = Field(False, description="Writes need no API key (never in production).")
    public_docs: bool | None = Field(
        None, description="/docs, /redoc and /openapi.json need no API key; default: as public_reads."
    )
    rate_limit_per_minute: int = Field(1200, ge=0, description="Requests per minute per API key or IP; 0: off.")
    rate_limit_burst: int = Field(60, ge=1, description="Requests a client may make at once before limiting.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses of reverse proxies whose X-Forwarded-For names the client (rate limits, logs); "
        "from anyone else the header is ignored.",
    )
    max_connections: int = Field(1000, ge=1, description="Open HTTP connections per server process.")
    header_timeout_s: float = Field(
        10.0, gt=0, le=600, description="A request's head must arrive within this (slow-sending clients are cut)."
    )
    body_idle_timeout_s: float = Field(30.0, gt=0, le=600, description="Longest pause between chunks of a body.")
    anonymous_looks_per_hour: int = Field(
        20, ge=0, description="Shop-the-look photos one IP may upload per hour without an API key (0: none)."
    )
    anonymous_look_ttl_s: float = Field(86_400, gt=0, description="How long a look made without a key is kept.")
    max_anonymous_looks: int = Field(500, ge=0, description="Looks made without a key kept at once.")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed to call the API from a browser.")
    analytics: bool = Field(True, description="Record searches and clicks for the analytics page.")
    analytics_retention_days: float = Field(90, gt=0, description="Searches and clicks older than this are dropped.")
    analytics_max_rows: int = Field(1_000_000, ge=1000, description="Searches (and clicks) kept at most.")
    job_workers: int = Field(1, ge=1, le=8, description="Background job threads of the API server or a worker.")
    database_url: str | None = Field(
        None, description="PostgreSQL with pgvector (postgresql://user@host:5432/db) for every collection, shared by "
        "any number of `vitrine serve` replicas and workers; none: SQLite files in the home.",
    )
    storage_url: str | None = Field(
        None, description="S3-compatible object storage for product photos (s3://bucket/prefix), so replicas on "
        "any machine serve them; none: photos stay where the catalog has them, uploads in <home>/media.",
    )
    storage_endpoint: str | None = Field(
        None, description="The object store's endpoint (MinIO, Ceph, R2...); none: AWS S3. Credentials come "
        "from the AWS_* variables or ~/.aws, as boto3 finds them.",
    )
    database_pool_size: int = Field(8, ge=1, le=256, description="PostgreSQL connections per process at most.")
    redis_url: str | None = Field(
        None, description="Redis for the job queue (redis://host:6379/0), so that `vitrine worker` processes run "
        "jobs; none: a SQLite queue in the home, run by one server process.",
    )
    run_jobs: bool = Field(True, description="This server process runs jobs; false (`serve --no-jobs`): it only "
                                             "queues them for `vitrine worker` processes.")
    job_lease_s: float = Field(
        30.0, ge=1, le=3600, description="A running job whose worker has not reported for this long (killed, "
        "or its machine gone) is queued again for another worker; ingest resumes where it stopped.",
    )
    hub_url: str = Field(
        "https://huggingface.co", description="Where `vitrine models pull` downloads checkpoints from (or a mirror)."
    )
    hub_token: str | None = Field(None, description="A Hugging Face token, for gated or private checkpoints.")
    download_timeout_s: float = Field(10.0, gt=0)
    download_retries: int = Field(2, ge=0, le=10)
    download_concurrency: int = Field(8, ge=1, le=64)
    allow_private_urls: bool = Field(False, description="Allow fetching loopback/private/link-local hosts.")
    exact_search_limit: int = Field(
        250_000, ge=0, description="Up to this many vectors a collection is searched exactly; above, HNSW."
    )
    quantized_scan: bool = Field(
        True, description="Full scans read int8 copies of the vectors, then the best candidates are re-scored "
        "exactly (about 4x less memory traffic per search; results as exact search, docs/benchmarks.md)."
    )
    vector_snapshots: bool = Field(
        True, description="Save a loaded collection's search tables under its folder and memory-map them in the "
        "next process (fast cold starts; `serve --workers N` shares one copy).",
    )
    snapshot_min_products: int = Field(
        5_000, ge=0, description="Collections smaller than this are rebuilt on load: it takes under a second.",
    )
    search_concurrency: int | None = Field(None, ge=1, le=256, description="Searches run at once (default: threads).")
    search_cache_size: int = Field(1024, ge=0, description="Search results kept in memory (0: no cache).")
    keyword_weight: float = Field(0.5, ge=0, le=1, description="Share of the keyword signal in text scores.")
    http_workers: int = Field(1, ge=1, le=64, description="`vitrine serve` processes (one per core serves the most).")
    cross_modal_weight: float = Field(
        0.4, ge=0, le=1, description="Share of the photos' cross-modal match in text scores (docs/quality.md)."
    )
    image_cross_modal_weight: float = Field(
        0.0, ge=0, le=1, description="Share of the cross-modal photo match in image-to-image scores."
    )

    @field_validator("storage_url", mode="after")
    @classmethod
    def _s3_url(cls, value: str | None) -> str | None:
        if value and (not value.startswith("s3://") or len(value) <= len("s3://")):
            raise ValueError("must be an S3 URL, s3://bucket/prefix")
        return value or None

    @field_validator("database_url", mode="after")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a PostgreSQL URL, postgresql://user:password@host:5432/database")
        return value or None

    @field_validator("home", "data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def docs_public(self) -> bool:
        return self.public_reads if self.public_docs is None else self.public_docs

    @property
    def demo_catalog_path(self) -> Path:
        return self.demo_catalog or self.data_dir / "luma" / "catalog.csv"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFileSource(settings_cls))


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads `VITRINE_CONFIG` (or ./vitrine.toml if present): flat keys named like the fields."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("VITRINE_CONFIG")
        candidate = Path(path) if path else Path("vitrine.toml")
        if not candidate.is_file():
            return {}
        with candidate.open("rb") as fh:
            data = tomllib.load(fh)
        return dict(data.get("vitrine", data))
