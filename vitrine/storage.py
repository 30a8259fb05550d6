"""Where product photos live once ingested.

By default a photo stays where the catalog had it (its file, or the download cache) and uploaded
photos go to `<home>/media`: one machine serves them. With `VITRINE_STORAGE_URL=s3://bucket/prefix`
every photo is put in S3-compatible object storage (AWS, MinIO, Ceph, R2...: `VITRINE_STORAGE_ENDPOINT`),
content-addressed by its SHA-256, and its stored location is `s3://bucket/prefix/photos/<sha>.<type>`,
so any replica on any machine serves it. Credentials come from boto3's usual chain (AWS_* variables,
~/.aws, an instance role), never from Vitrine's settings.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from vitrine.errors import InvalidInput, NotFound, ServiceDown
from vitrine.files import write_atomic
from vitrine.models.imaging import sniff_image_type

S3 = "s3://"


class PhotoStorage(Protocol):
    def put(self, sha256: str, data: bytes, *, local: Path | None = None) -> str:
        """Keeps a photo and returns where it is stored; `local` is a file that already holds it."""
        ...

    def get(self, location: str) -> bytes:
        """A stored photo's bytes; NotFound when it is gone."""
        ...


def _name(sha256: str, data: bytes) -> str:
    return f"{sha256}.{sniff_image_type(data) or 'bin'}"


class LocalStorage:
    """Photos on this machine: a catalog's files stay where they are; others go to `<home>/media`."""

    def __init__(self, media: Path) -> None:
        self.media = media

    def put(self, sha256: str, data: bytes, *, local: Path | None = None) -> str:
        if local is not None:
            return str(local)
        path = self.media / sha256[:2] / _name(sha256, data)
        if not path.exists():
            write_atomic(path, data)
        return str(path)

    def get(self, location: str) -> bytes:
        path = Path(location)
        if not path.is_file():
            raise NotFound("the photo is gone from this machine", field="position")
        return path.read_bytes()


class S3Storage:
    """Photos in an S3 bucket, under `prefix/photos/`. A photo already there (same content) is not sent again."""

    def __init__(self, url: str, *, endpoint: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise InvalidInput("the storage URL is s3://bucket/prefix", field="storage_url")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self._endpoint = endpoint
        self._local = threading.local()  # boto3 clients are not shared between threads

    @property
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"})
            client = self._local.client = boto3.session.Session().client("s3", endpoint_url=self._endpoint,
                                                                         config=config)
        return client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, sha256: str, data: bytes, *, local: Path | None = None) -> str:
        return self.put_object(f"photos/{_name(sha256, data)}", data)

    def put_object(self, name: str, data: bytes) -> str:
        """`data` as `prefix/name`, unless an object is there already (names are content-addressed, or unique)."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._key(name)
        try:
            try:
                self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
                kind = sniff_image_type(data)
                self._client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                        ContentType=f"image/{kind}" if kind else "application/octet-stream")
        except (BotoCoreError, ClientError) as exc:
            raise ServiceDown(f"the photo storage s3://{self.bucket} is unavailable ({type(exc).__name__}); "
                              "retry when it is back") from exc
        return f"{S3}{self.bucket}/{key}"

    def get(self, location: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, key = location.removeprefix(S3).partition("/")
        try:
            body: bytes = self._client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise NotFound("the photo is gone from storage", field="position") from exc
            raise ServiceDown(f"the photo storage s3://{bucket} is unavailable") from exc
        except BotoCoreError as exc:
            raise ServiceDown(f"the photo storage s3://{bucket} is unavailable ({type(exc).__name__})") from exc
        return body


class Photos:
    """Reads a stored photo from wherever it was put (a replica may read photos another machine put in
    S3, or a collection ingested before storage moved there), and puts new ones where settings say."""

    def __init__(self, home: Path, *, url: str | None, endpoint: str | None) -> None:
        self.local = LocalStorage(home / "media")
        self.remote = S3Storage(url, endpoint=endpoint) if url else None

    def put(self, sha256: str, data: bytes, *, local: Path | None = None) -> str:
        return (self.remote or self.local).put(sha256, data, local=local)

    def share(self, name: str, data: bytes) -> str | None:
        """Puts a file other machines must read (an uploaded catalog a worker ingests) in object storage;
        None without one (then workers share the home)."""
        return self.remote.put_object(name, data) if self.remote else None

    def get(self, location: str) -> bytes:
        if location.startswith(S3):
            if self.remote is None:
                raise NotFound("the photo is in object storage, which this server has no VITRINE_STORAGE_URL for",
                               field="position")
            return self.remote.get(location)
        return self.local.get(location)
