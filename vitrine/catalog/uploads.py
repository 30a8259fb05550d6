"""Catalog files that arrive over HTTP: a CSV/JSON/JSONL file, or a zip of a catalog with its photos."""

from __future__ import annotations

import re
import shutil
import stat
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from vitrine.errors import CatalogError, TooLarge, UnsafeSource

CATALOG_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".ndjson")
MAX_ARCHIVE_MEMBERS = 200_000
_CHUNK = 1 << 20


def safe_name(filename: str) -> str:
    """A file name with no folders and nothing unusual in it (the suffix kept)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", PurePosixPath(filename.replace("\\", "/")).name).lstrip(".")
    return name[:120] or "catalog"


def save_upload(stream: BinaryIO, filename: str, *, uploads_dir: Path, max_bytes: int,
                max_archive_bytes: int) -> Path:
    """Stores an upload in a fresh folder and returns the catalog file to ingest (unpacking a zip)."""
    folder = uploads_dir / uuid.uuid4().hex
    folder.mkdir(parents=True)
    try:
        target = folder / safe_name(filename)
        written = 0
        with target.open("wb") as out:
            while chunk := stream.read(_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise TooLarge(f"upload is over {max_bytes} bytes", field="file")
                out.write(chunk)
        if zipfile.is_zipfile(target):
            return _unpack(target, folder / "catalog", max_archive_bytes)
        if target.suffix.lower() not in CATALOG_SUFFIXES:
            raise CatalogError(f"expected a {', '.join(CATALOG_SUFFIXES)} file or a .zip, got {target.name!r}",
                               field="file")
        return target
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _unpack(archive: Path, into: Path, max_bytes: int) -> Path:
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > MAX_ARCHIVE_MEMBERS:
            raise TooLarge(f"the archive holds over {MAX_ARCHIVE_MEMBERS} files", field="file")
        if sum(m.file_size for m in members) > max_bytes:
            raise TooLarge(f"the archive unpacks to over {max_bytes} bytes", field="file")
        root = into.resolve()
        for member in members:
            parts = PurePosixPath(member.filename.replace("\\", "/")).parts
            if member.filename.startswith("/") or ".." in parts or stat.S_ISLNK(member.external_attr >> 16):
                raise UnsafeSource(f"archive entry {member.filename!r} points outside the archive", field="file")
            target = (root / Path(*parts)).resolve()
            if not target.is_relative_to(root):
                raise UnsafeSource(f"archive entry {member.filename!r} points outside the archive", field="file")
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with zf.open(member) as src, target.open("wb") as out:  # sizes in headers can lie: count
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > member.file_size or written > max_bytes:
                        raise TooLarge(f"archive entry {member.filename!r} is larger than declared", field="file")
                    out.write(chunk)
    archive.unlink()
    catalogs = sorted((p for p in root.rglob("*") if p.suffix.lower() in CATALOG_SUFFIXES and p.is_file()),
                      key=lambda p: (len(p.relative_to(root).parts), p.name != "catalog" + p.suffix, str(p)))
    if not catalogs:
        raise CatalogError("the archive holds no .csv, .json or .jsonl catalog", field="file")
    return catalogs[0]
