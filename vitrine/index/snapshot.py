"""A loaded collection's search tables saved as files and memory-mapped back.

Loading a collection computes its photos' search and cross-modal vectors, int8 copies and, above the
exact limit, HNSW graphs: 19 s per 100k products on 2 cores, each time a server process starts or
the collection is built whole again. A snapshot keeps the latest whole build under the collection's
folder; a process that opens the collection later maps it and catches up with the writes since as a
tail (index/updates.py). Opening one maps the files instead of computing (a second or two), and
every process that maps them shares one copy in the page cache: `vitrine serve --workers N` holds the
tables once, and pages a search never touches (the float32 rows outside its candidates) need not be
in memory.

A whole build is written here a batch of products at a time (`write`), and the process that built it
serves it from these files too: no step holds every product's raw features or every table at once.

A snapshot is written to a temporary folder and renamed into place, so a reader sees a whole one or
none; a snapshot that does not match (a later generation, other settings, another model: the first
photo's cross-modal vector is recomputed and compared) is not used, and one of the current generation
that does not load is written again in its place.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.index import partitions
from vitrine.index.mapped import keep_open
from vitrine.index.quantized import QuantizedTable
from vitrine.index.store import VECTOR_BATCH, Facets, VectorData, merge_facets
from vitrine.index.vectors import HNSW_EF_SEARCH, CollectionVectors, build_hnsw, image_groups
from vitrine.models.heads import CrossModal
from vitrine.search.scoring import image_search_vectors

log = logging.getLogger(__name__)

FORMAT = 3  # 3: graphs of common filter values (index/partitions.py)
ARRAYS = ("rows", "text_vectors", "image_product", "image_position", "prices", "image_vectors", "image_start",
          "image_count", "xmodal_vectors", "first_raw")


def snapshot_dir(collection_dir: Path, incarnation: int, generation: int, *, exact_limit: int,
                 quantize: bool) -> Path:
    """One folder per generation of one incarnation of the collection (a collection deleted and made
    again restarts its generations) and the settings that shape the tables (exact or HNSW, int8 copies)."""
    return collection_dir / "snapshots" / f"i{incarnation}-g{generation}-l{exact_limit}-q{int(quantize)}"


def latest(collection_dir: Path, incarnation: int, generation: int, *, exact_limit: int,
           quantize: bool) -> tuple[Path, int] | None:
    """The newest snapshot of this incarnation no newer than `generation` (what was written since is
    caught up with as a tail), and its generation."""
    found: list[tuple[int, Path]] = []
    suffix = f"-l{exact_limit}-q{int(quantize)}"
    try:
        for folder in (collection_dir / "snapshots").iterdir():
            head, _, rest = folder.name.partition("-g")
            if head != f"i{incarnation}" or not rest.endswith(suffix):
                continue
            taken = rest[: -len(suffix)]
            if taken.isdigit() and int(taken) <= generation:
                found.append((int(taken), folder))
    except OSError:  # no snapshots yet
        return None
    if not found:
        return None
    taken_at, folder = max(found)
    return folder, taken_at


def _settings_key(exact_limit: int, quantize: bool) -> dict[str, Any]:
    return {"format": FORMAT, "exact_limit": exact_limit, "quantize": quantize}


class _RowsFile:
    """An .npy table written a block of rows at a time; its header, room for which is kept up front, is
    written again with the final number of rows when it is closed."""

    HEADER_BYTES = 128  # magic, version, length and a dict whose shape has room for 20-digit numbers

    def __init__(self, path: Path, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        self.width: tuple[int, ...] | None = None  # the row shape, from the first block with rows
        self.rows = 0
        self.file = path.open("wb")
        self.file.write(self._header())

    def _header(self) -> bytes:
        header = repr({"descr": self.dtype.str, "fortran_order": False,
                       "shape": (self.rows, *(self.width or ()))}).encode("latin1")
        room = self.HEADER_BYTES - 10 - 1
        if len(header) > room:
            raise ValueError(f"an .npy header of {len(header)} bytes does not fit in {room}")
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", self.HEADER_BYTES - 10) + header.ljust(room) + b"\n"

    def append(self, block: Array) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if self.width is None or (self.rows == 0 and len(block)):
            self.width = block.shape[1:]
        elif len(block) and block.shape[1:] != self.width:
            raise ValueError(f"rows of shape {block.shape[1:]} after rows of shape {self.width}")
        self.file.write(block.data)
        self.rows += len(block)

    def close(self) -> None:
        self.file.seek(0)
        self.file.write(self._header())
        self.file.close()


def write(batches: Iterable[VectorData], folder: Path, *, generation: int, heads: CrossModal | None,
          exact_limit: int, quantize: bool) -> None:
    """Builds the snapshot `folder` (atomically) from the store's products, a batch at a time, then removes
    older generations'. What `CollectionVectors.build` computes in memory, computed here batch by batch
    into files, with the int8 copies or graphs built from those files a table at a time: at a million
    products it holds one graph and one batch, where building it all in memory peaked at 13 GB."""
    if folder.exists():
        return
    tmp = folder.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        files = {name: _RowsFile(tmp / f"{name}.npy", dtype) for name, dtype in (
            ("rows", np.int64), ("text_vectors", np.float32), ("prices", np.float32), ("image_product", np.int32),
            ("image_position", np.int16), ("image_vectors", np.float32), ("xmodal_vectors", np.float32))}
        ids: list[str] = []
        facets: list[tuple[Facets, int]] = []
        first_raw: Array | None = None
        image_dim = 0
        try:
            for part in batches:
                n = len(ids)
                files["rows"].append(part.rows)
                files["text_vectors"].append(part.text_vectors)
                files["prices"].append(part.prices if part.prices is not None else np.full(len(part.ids), np.nan))
                files["image_product"].append(part.image_product + n)
                files["image_position"].append(part.image_position)
                features = part.image_features
                if len(features):
                    first_raw = features[0].copy() if first_raw is None else first_raw
                    image_dim = features.shape[1]
                    for at in range(0, len(features), VECTOR_BATCH):  # a batch's products may have many photos
                        block = features[at:at + VECTOR_BATCH]
                        files["image_vectors"].append(image_search_vectors(block))
                        if heads is not None:
                            files["xmodal_vectors"].append(heads.image_vectors(block))
                ids.extend(part.ids)
                facets.append((part.facets, n))
        finally:
            for file in files.values():
                file.close()
        if first_raw is None:  # no photos: no vectors of photos, as CollectionVectors.build has none
            (tmp / "xmodal_vectors.npy").unlink()
            np.save(tmp / "image_vectors.npy", np.zeros((0, 0), dtype=np.float32))
        else:
            np.save(tmp / "first_raw.npy", first_raw)
            if heads is None:
                (tmp / "xmodal_vectors.npy").unlink()
        image_product = np.load(tmp / "image_product.npy")
        start, count = image_groups(image_product, len(ids))
        np.save(tmp / "image_start.npy", start)
        np.save(tmp / "image_count.npy", count)
        # JSON, not a fixed-width numpy string array: one long id would widen every product's entry.
        (tmp / "ids.json").write_text(json.dumps(ids, ensure_ascii=False), encoding="utf-8")
        facet_values = {}
        merged = merge_facets(facets)
        for field, (positions, codes, values) in merged.items():
            np.save(tmp / f"facet-{field}-positions.npy", positions)
            np.save(tmp / f"facet-{field}-codes.npy", codes)
            facet_values[field] = values
        del facets
        tables = {name: np.load(tmp / f"{name}_vectors.npy", mmap_mode="r") for name in ("text", "image", "xmodal")
                  if (tmp / f"{name}_vectors.npy").is_file()}
        quantized: list[str] = []
        anns: list[str] = []
        parts: list[dict[str, Any]] = []
        if len(ids) <= exact_limit and quantize:
            for name, table in tables.items():
                if table.size:
                    quantized.append(name)
                    int8 = QuantizedTable(table)
                    np.save(tmp / f"int8-{name}-codes.npy", int8.codes)
                    np.save(tmp / f"int8-{name}-scale.npy", int8.row_scale)
                    np.save(tmp / f"int8-{name}-offset.npy", int8.row_offset)
                    del int8
        elif len(ids) > exact_limit:
            import faiss

            log.info("building HNSW indexes", extra={"products": len(ids), "images": len(image_product)})
            for name, table in tables.items():  # one graph in memory at a time
                anns.append(name)
                faiss.write_index(build_hnsw(table), str(tmp / f"hnsw-{name}.faiss"))
            for k, (field, value, positions) in enumerate(partitions.choose(merged, len(ids))):
                images = partitions.images_of(positions, start, count)
                np.save(tmp / f"part-{k}-positions.npy", positions)
                np.save(tmp / f"part-{k}-images.npy", images)
                graphs = [name for name in tables if len(positions if name == "text" else images)]
                for name in graphs:  # (products without photos: no photo graphs)
                    graph = build_hnsw(tables[name], positions if name == "text" else images)
                    faiss.write_index(graph, str(tmp / f"part-{k}-{name}.faiss"))
                parts.append({"field": field, "value": value, "graphs": graphs})
        del tables, merged
        meta = {**_settings_key(exact_limit, quantize), "generation": generation, "image_dim": image_dim,
                "one_image_each": len(image_product) == len(ids) and bool((count == 1).all()),
                "facets": facet_values, "quantized": quantized, "anns": anns, "partitions": parts}
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            tmp.rename(folder)
        except OSError:  # another process saved the same generation first
            shutil.rmtree(tmp, ignore_errors=True)
            return
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for other in folder.parent.iterdir():  # older generations: a process mapping one keeps its pages
        if other != folder and not other.name.startswith(".tmp-"):
            shutil.rmtree(other, ignore_errors=True)


def discard(folder: Path) -> None:
    """Removes a snapshot that cannot be used (damaged, or taken with another model), so that a new one of
    its generation can take its place; a process that maps its files keeps reading them."""
    gone = folder.with_name(f".tmp-gone-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        folder.rename(gone)
    except OSError:  # none there, or another process took it away first
        return
    shutil.rmtree(gone, ignore_errors=True)


def load(folder: Path, *, generation: int, heads: CrossModal | None, exact_limit: int,
         quantize: bool) -> CollectionVectors | None:
    """The snapshot in `folder` as CollectionVectors over memory-mapped arrays, or None if it does not
    match what would be built now."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("generation") != generation or any(meta.get(k) != v for k, v in
                                                    _settings_key(exact_limit, quantize).items()):
        return None
    try:
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAYS
                  if (folder / f"{name}.npy").is_file()}
        if (heads is None) != ("xmodal_vectors" not in arrays):
            return None
        if heads is not None and len(arrays["xmodal_vectors"]):
            again = heads.image_vectors(np.asarray(arrays["first_raw"])[None, :])[0]
            if not np.allclose(again, arrays["xmodal_vectors"][0], atol=1e-5):
                return None  # the model changed (a new base model) since the snapshot was taken
        facets = {field: (np.load(folder / f"facet-{field}-positions.npy", mmap_mode="r"),
                          np.load(folder / f"facet-{field}-codes.npy", mmap_mode="r"), list(values))
                  for field, values in meta["facets"].items()}
        data = VectorData(
            rows=arrays["rows"], ids=list(json.loads((folder / "ids.json").read_text(encoding="utf-8"))),
            text_vectors=arrays["text_vectors"],
            image_features=np.zeros((0, meta["image_dim"]), dtype=np.float32),
            image_product=arrays["image_product"], image_position=arrays["image_position"], facets=facets,
            prices=arrays.get("prices"),
        )
        quantized = {name: QuantizedTable.from_parts(
            np.load(folder / f"int8-{name}-codes.npy", mmap_mode="r"),
            np.load(folder / f"int8-{name}-scale.npy", mmap_mode="r"),
            np.load(folder / f"int8-{name}-offset.npy", mmap_mode="r")) for name in meta["quantized"]}
        anns: dict[str, Any] = {}
        parts: list[partitions.Partition] = []
        if meta["anns"]:
            import faiss

            # Mapped too (vectors and links): at 1M products the three graphs are 10 GB that reading
            # copied into each process, where mapping shares the page cache and reads only what a search visits
            anns = {name: faiss.read_index(str(folder / f"hnsw-{name}.faiss"), faiss.IO_FLAG_MMAP_IFC)
                    for name in meta["anns"]}
            parts = [partitions.Partition(
                field=part["field"], value=part["value"],
                positions=np.load(folder / f"part-{k}-positions.npy", mmap_mode="r"),
                images=np.load(folder / f"part-{k}-images.npy", mmap_mode="r"),
                anns={name: faiss.read_index(str(folder / f"part-{k}-{name}.faiss"), faiss.IO_FLAG_MMAP_IFC)
                      for name in part["graphs"]}) for k, part in enumerate(meta.get("partitions", []))]
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # a damaged snapshot: build instead
        log.warning("cannot read a vector snapshot", extra={"path": str(folder), "error": str(exc)})
        return None
    for index in [*anns.values(), *(graph for part in parts for graph in part.anns.values())]:
        index.hnsw.efSearch = HNSW_EF_SEARCH
    for name in ("text_vectors", "image_vectors", "xmodal_vectors"):  # read row by row by the exact pass
        if name in arrays:
            keep_open(arrays[name])
    return CollectionVectors(
        generation=generation, data=data, image_vectors=arrays["image_vectors"], image_start=arrays["image_start"],
        image_count=arrays["image_count"], heads=heads, xmodal_vectors=arrays.get("xmodal_vectors"),
        text_ann=anns.get("text"), image_ann=anns.get("image"), xmodal_ann=anns.get("xmodal"),
        quantized=quantized or None, one_image_each=bool(meta["one_image_each"]), partitions=parts,
    )


def save_extra(folder: Path, name: str, content: dict[str, Any]) -> None:
    """Something derived from the snapshot's products, kept beside it (`extra-<name>.json`) so that the
    next process reads it instead of computing it; nothing when the snapshot is gone (a newer one
    replaced it) or cannot be written."""
    if not folder.is_dir():
        return
    tmp = folder / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    try:
        tmp.write_text(json.dumps(content))
        tmp.replace(folder / f"extra-{name}.json")
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning("cannot save beside a vector snapshot", extra={"path": str(folder), "error": str(exc)})


def load_extra(folder: Path, name: str) -> dict[str, Any] | None:
    """What `save_extra` kept, or None (not saved, or unreadable)."""
    try:
        content = json.loads((folder / f"extra-{name}.json").read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None
