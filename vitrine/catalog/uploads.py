"""Catalog files that arrive over HTTP: a CSV/JSON/JSONL file, or a zip of a catalog with its photos."""

from __future__ import annotations

import errno
import re
import shutil
import stat
import uuid
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from vitrine.errors import CatalogError, TooLarge, UnsafeSource

# In a zip, the catalog is found by its suffix among the photos (a README.txt is not a catalog); a file
# uploaded alone may also be a feed (.txt, .xml) or a saved product page (.html): its content decides.
ARCHIVE_CATALOG_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".xml", ".jsonld")
CATALOG_SUFFIXES = (*ARCHIVE_CATALOG_SUFFIXES, ".txt", ".rss", ".atom", ".html", ".htm")
MAX_ARCHIVE_MEMBERS = 200_000
MAX_NAME_BYTES = 255  # per path component, as most file systems allow
MAX_PATH_CHARS = 1024
_CHUNK = 1 << 20
_COMPRESSIONS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
# What a damaged or hostile archive makes zipfile and the file system raise.
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, ValueError)
_NAME_ERRNOS = {errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.EEXIST}


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
        if _is_zip(target):
            return _unpack(target, folder / "catalog", max_archive_bytes)
        if target.suffix.lower() not in CATALOG_SUFFIXES:
            raise CatalogError(f"expected a {', '.join(CATALOG_SUFFIXES)} file or a .zip, got {target.name!r}",
                               field="file")
        return target
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def discard_upload(catalog: Path, uploads_dir: Path) -> None:
    """Removes the upload folder that holds `catalog`, refused after it was stored (nothing outside
    `uploads_dir` is touched)."""
    root = uploads_dir.resolve()
    try:
        relative = catalog.resolve().relative_to(root)
    except ValueError:
        return
    if relative.parts:
        shutil.rmtree(root / relative.parts[0], ignore_errors=True)


def _unpack(archive: Path, into: Path, max_bytes: int) -> Path:
    try:
        _extract(archive, into.resolve(), max_bytes)
    except _ARCHIVE_ERRORS as exc:
        raise CatalogError(f"the zip archive is damaged or unsupported: {exc}", field="file") from None
    except OSError as exc:
        if exc.errno not in _NAME_ERRNOS:
            raise
        raise CatalogError(f"the zip archive holds an entry that cannot be unpacked: {exc.strerror}",
                           field="file") from None
    archive.unlink()
    root = into.resolve()
    catalogs = sorted((p for p in root.rglob("*") if p.suffix.lower() in ARCHIVE_CATALOG_SUFFIXES and p.is_file()),
                      key=lambda p: (len(p.relative_to(root).parts), p.name != "catalog" + p.suffix, str(p)))
    if not catalogs:
        raise CatalogError(f"the archive holds no catalog ({', '.join(ARCHIVE_CATALOG_SUFFIXES)})", field="file")
    return catalogs[0]


def _extract(archive: Path, root: Path, max_bytes: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > MAX_ARCHIVE_MEMBERS:
            raise TooLarge(f"the archive holds over {MAX_ARCHIVE_MEMBERS} files", field="file")
        if sum(m.file_size for m in members) > max_bytes:
            raise TooLarge(f"the archive unpacks to over {max_bytes} bytes", field="file")
        for member in members:
            _check_member(member)
        for member in members:
            parts = PurePosixPath(member.filename.replace("\\", "/")).parts
            target = (root / Path(*parts)).resolve()
            if not target.is_relative_to(root):
                raise UnsafeSource(f"archive entry {member.filename!r} points outside the archive", field="file")
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with zf.open(member) as src, target.open("xb") as out:  # sizes in headers can lie: count
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > member.file_size or written > max_bytes:
                        raise TooLarge(f"archive entry {member.filename!r} is larger than declared", field="file")
                    out.write(chunk)


def _check_member(member: zipfile.ZipInfo) -> None:
    """Refuses, before anything is written, entries that could escape the folder or that zipfile or the
    file system would fail on half-way."""
    name = member.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith("/") or ".." in parts or stat.S_ISLNK(member.external_attr >> 16) or "\x00" in name:
        raise UnsafeSource(f"archive entry {name[:80]!r} points outside the archive", field="file")
    if len(name) > MAX_PATH_CHARS or any(len(part.encode("utf-8", "replace")) > MAX_NAME_BYTES for part in parts):
        raise CatalogError(f"archive entry {name[:80]!r}... has a name too long to unpack", field="file")
    if member.flag_bits & 0x1:
        raise CatalogError(f"archive entry {name[:80]!r} is encrypted; upload an unencrypted zip", field="file")
    if member.compress_type not in _COMPRESSIONS:
        raise CatalogError(f"archive entry {name[:80]!r} uses an unsupported compression method "
                           f"({member.compress_type}); use deflate", field="file")
