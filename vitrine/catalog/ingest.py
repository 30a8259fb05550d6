"""Ingest a catalog file into a collection.

Pass 1 reads the whole file and validates it (ids, duplicates, prices) keeping only ids and row
hashes, so a malformed file is refused before anything is written, in bounded memory. Pass 2 reads
it again and writes the new and changed rows in batches: images are loaded and decoded one batch
ahead of the encoder, features go to the content-hash cache, and each batch is one store
transaction. A killed ingest therefore resumes: finished batches are unchanged rows next time, and
encoded images are cache hits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from vitrine.arrays import Array
from vitrine.catalog.columns import FIELDS, ColumnMap, detect_columns
from vitrine.catalog.formats import PLATFORMS, ReadOptions, detect_format, read_catalog
from vitrine.catalog.readers import BadRow
from vitrine.catalog.records import Problem, ProductRecord, to_record
from vitrine.catalog.report import IngestReport
from vitrine.catalog.sources import ImageFetcher, LoadedImage
from vitrine.errors import VitrineError
from vitrine.index.store import CollectionStore, ImageWrite, ProductWrite
from vitrine.models.embedder import ImageEmbedder
from vitrine.models.text_encoder import TextEncoder
from vitrine.storage import PhotoStorage

log = logging.getLogger(__name__)

Progress = Callable[[int, int, int], None]  # products done, products to write, images done


@dataclass
class _Prepared:
    """A batch with its images loaded, hashed, looked up in the cache and decoded (not yet encoded)."""

    records: list[ProductRecord]
    images: dict[str, list[LoadedImage]] = field(default_factory=dict)
    cached: dict[str, Array] = field(default_factory=dict)
    pending: dict[str, Array] = field(default_factory=dict)  # sha -> model input, to encode
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class IngestPlan:
    columns: ColumnMap
    fmt: str
    first_row: dict[str, int]  # id -> the row that defines it (later duplicates are refused)
    to_write: set[str]
    to_delete: set[str]
    options: ReadOptions = field(default_factory=ReadOptions)


_SCANNED_ROWS = 200  # a platform's canonical rows: enough to know which keys they carry


def scan_columns(path: Path, fmt: str, options: ReadOptions) -> list[str]:
    """Column names: the CSV header, every key seen in a JSON/JSONL file, or the keys of a platform's
    first canonical rows (with the product fields, which canonical rows name themselves)."""
    seen: dict[str, None] = dict.fromkeys(FIELDS) if fmt in PLATFORMS else {}
    for number, row in read_catalog(path, fmt, options)[1]:
        if isinstance(row, BadRow):
            continue
        seen.update(dict.fromkeys(row))
        if fmt in ("csv", "tsv") or (fmt in PLATFORMS and number >= _SCANNED_ROWS):
            break
    return list(seen)


def _columns(path: Path, fmt: str | None, mapping: dict[str, str] | None,
             options: ReadOptions) -> tuple[str, ColumnMap]:
    fmt = fmt or detect_format(path)
    if fmt in PLATFORMS:  # canonical rows: each field under its own name; a mapping is checked against them
        header = scan_columns(path, fmt, options) if mapping else list(FIELDS)
        return fmt, detect_columns(header, {**{f: f for f in FIELDS}, **(mapping or {})})
    return fmt, detect_columns(scan_columns(path, fmt, options), mapping)


def check_catalog(path: Path, *, mapping: dict[str, str] | None, fmt: str | None,
                  options: ReadOptions | None = None) -> int:
    """Reads the whole file as ingest would and returns its row count; raises CatalogError if malformed."""
    options = options or ReadOptions()
    fmt, columns = _columns(path, fmt, mapping, options)
    rows = 0
    for number, row in read_catalog(path, fmt, options)[1]:
        to_record(number, row, columns)
        rows += 1
    return rows


def field_sources(fmt: str, columns: ColumnMap) -> dict[str, str]:
    """Which source field fed each product field, for the report."""
    if fmt in PLATFORMS:
        sources = dict(PLATFORMS[fmt].sources)
        sources.update({f: c for f, c in columns.columns.items() if c != f})  # explicit --map wins
        return sources
    return dict(columns.columns)


def plan_ingest(
    *, store: CollectionStore, path: Path, mapping: dict[str, str] | None, fmt: str | None, prune: bool,
    report: IngestReport, options: ReadOptions | None = None,
) -> IngestPlan:
    """Pass 1: validates every row and diffs against the store. Raises CatalogError on a malformed file."""
    options = options or ReadOptions()
    fmt, columns = _columns(path, fmt, mapping, options)
    report.format = fmt
    report.field_sources = field_sources(fmt, columns)
    hashes: dict[str, str] = {}
    first_row: dict[str, int] = {}
    for number, row in read_catalog(path, fmt, options)[1]:
        report.rows += 1
        record, problems = to_record(number, row, columns)
        if record is not None and record.id in hashes:
            problems = [Problem(number, record.id, "id", f"duplicate id (first seen in row {first_row[record.id]})")]
            record = None
        report.problems.extend(problems)
        if record is None:
            report.failed += 1
            continue
        report.count_fields(record)
        hashes[record.id] = record.content_hash
        first_row[record.id] = number
    report.check_shares()
    stored = store.product_hashes()
    to_write = {pid for pid, digest in hashes.items() if stored.get(pid) != digest}
    report.unchanged = len(hashes) - len(to_write)
    to_delete = set(stored) - set(hashes) if prune else set()
    return IngestPlan(columns=columns, fmt=fmt, first_row=first_row, to_write=to_write, to_delete=to_delete,
                      options=options)


class Ingestor:
    def __init__(
        self, *, store: CollectionStore, fetcher: ImageFetcher, embedder: ImageEmbedder, text_encoder: TextEncoder,
        batch_size: int = 64, io_threads: int = 8, photos: PhotoStorage | None = None, image_model: str | None = None,
    ) -> None:
        self.store = store
        self.image_model = image_model  # the embedder's encoder, checked by each write against the collection's
        self.photos = photos  # where photos are kept (storage.py); None: where the catalog has them
        self.fetcher = fetcher
        self.embedder = embedder
        self.text_encoder = text_encoder
        self.batch_size = batch_size
        self._io = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="fetch")
        self._prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")

    def close(self) -> None:
        self._io.shutdown(wait=False, cancel_futures=True)
        self._prep.shutdown(wait=False, cancel_futures=True)

    def run(
        self, *, path: Path, mapping: dict[str, str] | None = None, fmt: str | None = None, prune: bool = False,
        progress: Progress | None = None, report: IngestReport | None = None, options: ReadOptions | None = None,
    ) -> IngestReport:
        started = time.perf_counter()
        report = report or IngestReport(collection=self.store.name, source=str(path))
        plan = plan_ingest(store=self.store, path=path, mapping=mapping, fmt=fmt, prune=prune, report=report,
                           options=options)
        stored_before = set(self.store.product_hashes())
        total = len(plan.to_write)
        done = 0
        if progress:
            progress(0, total, 0)
        pending: Future[_Prepared] | None = None
        for batch in self._batches(path, plan):
            upcoming = self._prep.submit(self._prepare, batch)
            if pending is not None:
                done += self._finish(pending.result(), report, stored_before)
                if progress:
                    progress(done, total, report.images)
            pending = upcoming
        if pending is not None:
            done += self._finish(pending.result(), report, stored_before)
            if progress:
                progress(done, total, report.images)
        if plan.to_delete:
            report.deleted = self.store.delete(sorted(plan.to_delete))
        report.valid = report.added + report.updated + report.unchanged
        report.elapsed_s = time.perf_counter() - started
        report.completed = True
        report.problems.sort(key=lambda p: p.row)
        return report

    def _batches(self, path: Path, plan: IngestPlan) -> Iterator[list[ProductRecord]]:
        batch: list[ProductRecord] = []
        for number, row in read_catalog(path, plan.fmt, plan.options)[1]:
            record, _ = to_record(number, row, plan.columns)
            if record is None or record.id not in plan.to_write or plan.first_row.get(record.id) != number:
                continue
            batch.append(record)
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _prepare(self, records: list[ProductRecord]) -> _Prepared:
        prepared = _Prepared(records=records)
        refs = [(r, ref) for r in records for ref in r.image_refs]
        loaded = list(self._io.map(lambda item: self._load(item[1]), refs))
        for (record, ref), result in zip(refs, loaded, strict=True):
            if isinstance(result, VitrineError):
                prepared.problems.append(Problem(record.row, record.id, "images", f"{ref}: {result.message}"))
            else:
                prepared.images.setdefault(record.id, []).append(result)
        hashes = {im.sha256: im for ims in prepared.images.values() for im in ims}
        prepared.cached = self.embedder.cache.get_many(hashes) if self.embedder.cache else {}
        missing = [sha for sha in hashes if sha not in prepared.cached]
        arrays = self.embedder.preprocess_many([hashes[sha].data for sha in missing])
        errors: dict[str, Exception] = {}
        for sha, array in zip(missing, arrays, strict=True):
            if isinstance(array, Exception):
                errors[sha] = array
            else:
                prepared.pending[sha] = array
        if errors:
            for record in records:
                kept = []
                for image in prepared.images.get(record.id, []):
                    if image.sha256 in errors:
                        message = getattr(errors[image.sha256], "message", "unreadable image")
                        prepared.problems.append(Problem(record.row, record.id, "images", f"{image.ref}: {message}"))
                    else:
                        kept.append(image)
                prepared.images[record.id] = kept
        return prepared

    def _keep_photos(self, images: list[LoadedImage]) -> dict[str, str]:
        """Where each photo is kept (sha256 -> location), put in object storage at once and in parallel
        before the batch is written: a stored product always has its photos."""
        if self.photos is None:
            return {}
        unique = list({im.sha256: im for im in images}.values())
        photos = self.photos
        locations = self._io.map(lambda im: photos.put(im.sha256, im.data, local=im.path), unique)
        return dict(zip((im.sha256 for im in unique), locations, strict=True))

    def _load(self, ref: str) -> LoadedImage | VitrineError:
        try:
            return self.fetcher.load(ref)
        except VitrineError as exc:
            return exc

    def _finish(self, prepared: _Prepared, report: IngestReport, stored_before: set[str]) -> int:
        """Encodes what the cache lacked, then writes the batch in one transaction."""
        features = dict(prepared.cached)
        if prepared.pending:
            shas = list(prepared.pending)
            encoded = self.embedder.encode_arrays([prepared.pending[s] for s in shas])
            fresh = dict(zip(shas, encoded, strict=True))
            if self.embedder.cache:
                self.embedder.cache.put_many(fresh)
            features.update(fresh)
            report.images_encoded += len(shas)
        report.problems.extend(prepared.problems)
        writable: list[ProductRecord] = []
        for record in prepared.records:
            images = prepared.images.get(record.id, [])
            if record.image_refs and not images:
                report.failed += 1
                report.problems.append(Problem(record.row, record.id, "images", "no readable image: row not ingested"))
                continue
            writable.append(record)
        text_vectors = self.text_encoder.encode([r.search_text for r in writable])
        stored = self._keep_photos([im for r in writable for im in prepared.images.get(r.id, [])])
        writes = []
        for record, text_vector in zip(writable, text_vectors, strict=True):
            images = prepared.images.get(record.id, [])
            writes.append(ProductWrite(
                record=record,
                text_vector=text_vector,
                images=tuple(ImageWrite(ref=im.ref, path=stored.get(im.sha256, str(im.path)), sha256=im.sha256,
                                        features=features[im.sha256]) for im in images),
            ))
            report.images += len(images)
            if record.id in stored_before:
                report.updated += 1
            else:
                report.added += 1
        report.images_cached += sum(1 for w in writes for im in w.images if im.sha256 in prepared.cached)
        self.store.upsert(writes, image_model=self.image_model)
        return len(prepared.records)
