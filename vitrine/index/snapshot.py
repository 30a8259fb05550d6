"""A loaded collection's search tables saved as files and memory-mapped back.

Loading a collection computes its photos' search and cross-modal vectors, int8 copies and, above the
exact limit, HNSW graphs: 19 s per 100k products on 2 cores, each time a server process starts or
the collection is built whole again. A snapshot keeps the latest whole build under the collection's
folder; a process that opens the collection later maps it and catches up with the writes since as a
tail (index/updates.py). Opening one maps the files instead of computing (a second or two), and
every process that maps them shares one copy in the page cache: `vitrine serve --workers N` holds the
tables once, and pages a search never touches (the float32 rows outside its candidates) need not be
in memory.

A snapshot is written to a temporary folder and renamed into place, so a reader sees a whole one or
none; a snapshot that does not match (a later generation, other settings, another model: the first
photo's cross-modal vector is recomputed and compared) is not used.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.index.mapped import keep_open
from vitrine.index.quantized import QuantizedTable
from vitrine.index.store import VectorData
from vitrine.index.vectors import HNSW_EF_SEARCH, CollectionVectors
from vitrine.models.heads import CrossModal

log = logging.getLogger(__name__)

FORMAT = 2
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


def save(vectors: CollectionVectors, folder: Path, *, first_raw: Array | None, exact_limit: int,
         quantize: bool) -> None:
    """Writes `vectors` as the snapshot `folder` (atomically), then removes older generations'."""
    if folder.exists():
        return
    tmp = folder.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        data = vectors.data
        tables: dict[str, Array | None] = {
            "rows": data.rows, "text_vectors": data.text_vectors, "image_product": data.image_product,
            "image_position": data.image_position, "prices": data.prices, "image_vectors": vectors.image_vectors,
            "image_start": vectors.image_start, "image_count": vectors.image_count,
            "xmodal_vectors": vectors.xmodal_vectors, "first_raw": first_raw,
        }
        for name, array in tables.items():
            if array is not None:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(array))
        # JSON, not a fixed-width numpy string array: one long id would widen every product's entry.
        (tmp / "ids.json").write_text(json.dumps(data.ids, ensure_ascii=False), encoding="utf-8")
        facets = {}
        for field, (positions, codes, values) in data.facets.items():
            np.save(tmp / f"facet-{field}-positions.npy", positions)
            np.save(tmp / f"facet-{field}-codes.npy", codes)
            facets[field] = values
        for name, table in (vectors.quantized or {}).items():
            np.save(tmp / f"int8-{name}-codes.npy", table.codes)
            np.save(tmp / f"int8-{name}-scale.npy", table.row_scale)
            np.save(tmp / f"int8-{name}-offset.npy", table.row_offset)
        anns = {"text": vectors.text_ann, "image": vectors.image_ann, "xmodal": vectors.xmodal_ann}
        if any(a is not None for a in anns.values()):
            import faiss

            for name, index in anns.items():
                if index is not None:
                    faiss.write_index(index, str(tmp / f"hnsw-{name}.faiss"))
        meta = {**_settings_key(exact_limit, quantize), "generation": vectors.generation,
                "image_dim": int(data.image_features.shape[1]) if data.image_features.ndim == 2 else 0,
                "one_image_each": vectors.one_image_each, "facets": facets,
                "quantized": sorted(vectors.quantized or {}), "anns": sorted(k for k, a in anns.items() if a)}
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
        if meta["anns"]:
            import faiss

            # Mapped too (vectors and links): at 1M products the three graphs are 10 GB that reading
            # copied into each process, where mapping shares the page cache and reads only what a search visits
            anns = {name: faiss.read_index(str(folder / f"hnsw-{name}.faiss"), faiss.IO_FLAG_MMAP_IFC)
                    for name in meta["anns"]}
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # a damaged snapshot: build instead
        log.warning("cannot read a vector snapshot", extra={"path": str(folder), "error": str(exc)})
        return None
    for index in anns.values():
        index.hnsw.efSearch = HNSW_EF_SEARCH
    for name in ("text_vectors", "image_vectors", "xmodal_vectors"):  # read row by row by the exact pass
        if name in arrays:
            keep_open(arrays[name])
    return CollectionVectors(
        generation=generation, data=data, image_vectors=arrays["image_vectors"], image_start=arrays["image_start"],
        image_count=arrays["image_count"], heads=heads, xmodal_vectors=arrays.get("xmodal_vectors"),
        text_ann=anns.get("text"), image_ann=anns.get("image"), xmodal_ann=anns.get("xmodal"),
        quantized=quantized or None, one_image_each=bool(meta["one_image_each"]),
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
