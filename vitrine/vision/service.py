"""Looks as stored things: the original photo (content-addressed), the result with its crops, human
corrections, and indexing a look's garments into a collection as products.

They are kept in the service's tables (`vitrine.vision.store`), where every replica and worker finds
them. Corrections are kept in the look (shown in later reads) and become training pairs of the
products the garments were indexed as. Looks that older Vitrines kept as files under the home
(`looks/<look id>/look.json`) are moved into the tables when the service starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vitrine.catalog.records import ProductRecord
from vitrine.engine import Engine
from vitrine.errors import Busy, ImageError, InvalidInput, NotFound
from vitrine.index.store import Filters
from vitrine.models.imaging import decode_image, sniff_image_type
from vitrine.models.labels import Label
from vitrine.vision.garments import GROUP_WORDS, Box, garment_group
from vitrine.vision.look import LookFinder, Stage, garment_as_dict, look_as_dict, match_as_dict
from vitrine.vision.store import SCHEMA, LookStore

LOOK_ID = re.compile(r"^[0-9a-f]{16}$")
SWEEP_EVERY_S = 60.0
LABEL_KINDS = ("category", "colour", "pattern")
REMATCH_TOP_K = 5  # matches of a corrected garment of a look older Vitrines kept without its top_k
CHANGE_ATTEMPTS = 8
MAX_DRAWN = 20  # drawn garments a look holds (a shopper may draw without a key: each is a stored crop)
MIN_BOX_SIDE = 8  # a drawn or corrected box smaller than this is a slip of the mouse, not a garment
T = TypeVar("T")

log = logging.getLogger(__name__)


class LookService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = LookStore(engine.backend.tables("looks", SCHEMA))
        self.finder = LookFinder(engine)
        self._lock = threading.Lock()
        self._swept_at = float("-inf")
        self._anonymous = 0
        self._move_files(engine.home / "looks")

    # -- photos and results -----------------------------------------------------------------------

    def save_photo(self, data: bytes, *, anonymous: bool = False) -> tuple[str, str]:
        """Checks the photo (a clear error for a non-image, corrupt or huge one), stores it once by
        content, and returns (look id, photo sha256). An anonymous look expires after
        anonymous_look_ttl_s, and at most max_anonymous_looks are kept at once."""
        settings = self.engine.settings
        kind = sniff_image_type(data)
        if kind is None:
            raise ImageError("not an image (unknown file signature)", field="image")
        now = time.time()
        if anonymous:
            if self.sweep(now) >= settings.max_anonymous_looks:
                raise Busy("too many looks from callers without a key are stored; retry later or use an API key",
                           retry_after_s=60)
        try:
            with self.engine.decoding():
                decode_image(data, max_pixels=settings.max_query_pixels)
        except ImageError as exc:
            raise ImageError(exc.message, field="image") from exc
        sha = hashlib.sha256(data).hexdigest()
        self.store.put_photo(sha, data, now)
        look_id = uuid.uuid4().hex[:16]
        record: dict[str, Any] = {"id": look_id, "photo": {"sha256": sha, "type": kind}, "created_at": now}
        if anonymous:
            record["expires_at"] = now + settings.anonymous_look_ttl_s
        self._write(look_id, record)
        if anonymous:
            with self._lock:
                self._anonymous += 1  # counted until the next sweep recounts
        return look_id, sha

    def sweep(self, now: float) -> int:
        """Deletes expired looks and the photos no look uses any more; returns how many unexpired
        anonymous looks remain. Runs at most once a SWEEP_EVERY_S."""
        with self._lock:
            if now - self._swept_at < SWEEP_EVERY_S:
                return self._anonymous
            self._swept_at = now
            self._anonymous = self.store.sweep(now, photo_grace_s=SWEEP_EVERY_S)
            return self._anonymous

    def run(self, look_id: str, *, collection: str | None, top_k: int = 5, filters: Filters | None = None,
            stage: Stage | None = None) -> dict[str, Any]:
        record = self.get(look_id)
        photo = self.photo(look_id)[0]
        look = self.finder.find(photo, collection=collection, top_k=top_k, filters=filters, stage=stage)
        self.store.put_crops(look_id, [garment.crop_png for garment in look.garments])
        record.update(look_as_dict(look), collection=collection, finished_at=time.time(), top_k=top_k,
                      filters=(filters or Filters()).as_plain())
        self._write(look_id, record)
        return record

    def get(self, look_id: str) -> dict[str, Any]:
        record = self.store.get(look_id) if LOOK_ID.match(look_id) else None
        if record is None:
            raise NotFound(f"no look {look_id!r}", field="look_id")
        return record

    def photo(self, look_id: str) -> tuple[bytes, str]:
        meta = self.get(look_id)["photo"]
        data = self.store.photo(meta["sha256"])
        if data is None:
            raise NotFound(f"the photo of look {look_id!r} is gone", field="look_id")
        return data, meta["type"]

    def crop(self, look_id: str, index: int) -> bytes:
        self.get(look_id)
        data = self.store.crop(look_id, index)
        if data is None:
            raise NotFound(f"look {look_id!r} has no garment {index}", field="index")
        return data

    # -- human in the loop ------------------------------------------------------------------------

    def correct(self, look_id: str, index: int, *, labels: dict[str, str] | None = None,
                box: list[int] | None = None) -> dict[str, Any]:
        """Replaces a garment's labels and/or box, and matches it again. A new box is cut from the photo and
        its labels read again (except those corrected). The correction is kept and, for a garment indexed
        as a product, recorded as a training pair."""
        if not labels and box is None:
            raise InvalidInput("give labels or a box to correct", field="labels")
        labels = _checked_labels(labels)
        record = self.get(look_id)
        garment = self._garment(record, index)
        corrected = {k: v for k, v in garment.get("corrected", {}).items() if k in LABEL_KINDS} | labels
        group = garment_group(labels.get("category", "")) or garment["group"]
        current = {kind: found[0]["value"] if found else "" for kind, found in garment["labels"].items()}
        crop, read = None, {}
        if box is not None:
            drawn = self.finder.drawn(self.photo(look_id)[0], _checked_box(record, box),
                                      collection=record.get("collection"), group=group)
            crop, read = drawn.crop_png, {k: v for k, v in drawn.labels.items() if k not in corrected}
            current |= {kind: found[0].value if found else "" for kind, found in read.items()}
        matched = self._match(record, crop or self.crop(look_id, index), current | labels, group)

        def change(latest: dict[str, Any]) -> dict[str, Any]:
            garment = self._garment(latest, index)
            for kind, found in read.items():
                garment["labels"][kind] = [{"value": x.value, "confidence": x.confidence} for x in found]
            for kind, value in labels.items():
                garment["labels"][kind] = [{"value": value, "confidence": 1.0}]
                garment.setdefault("corrected", {})[kind] = value
            garment["group"] = group
            if matched is not None:
                garment["matches"], garment["unmatched"] = matched
            if box is not None:
                garment["box"] = list(box)
                garment.setdefault("corrected", {})["box"] = list(box)
            return garment

        changed = self._change(look_id, change)
        if crop is not None:
            self.store.put_crop(look_id, index, crop)
        if labels and changed.get("product"):  # a moved box alone never writes to the collection
            self._record_pairs(changed)
        return changed

    def add(self, look_id: str, box: list[int], *, group: str | None = None,
            labels: dict[str, str] | None = None) -> dict[str, Any]:
        """A garment the look missed, where somebody drew its box (a bag, often): cut from the photo,
        its group read from the crop unless given (or named by a corrected category), labelled and matched
        like the look's own garments."""
        labels = _checked_labels(labels)
        if group is not None and group not in GROUP_WORDS:
            raise InvalidInput(f"group must be one of {', '.join(GROUP_WORDS)}", field="group")
        record = self.get(look_id)
        if "garments" not in record:
            raise InvalidInput(f"look {look_id!r} has not been analysed yet", field="look_id")
        _check_room(record)
        group = group or garment_group(labels.get("category", ""))
        drawn = self.finder.drawn(self.photo(look_id)[0], _checked_box(record, box),
                                  collection=record.get("collection"), group=group)
        for kind, value in labels.items():
            drawn.labels[kind] = [Label(value, 1.0)]
        matched = self._match(record, drawn.crop_png, {k: drawn.label(k) for k in drawn.labels}, drawn.group)
        item = garment_as_dict(drawn, 0)
        if matched is not None:
            item["matches"], item["unmatched"] = matched
        if labels:
            item["corrected"] = dict(labels)

        def append(latest: dict[str, Any]) -> dict[str, Any]:
            _check_room(latest)  # again: another request may have drawn one meanwhile
            item["index"] = len(latest["garments"])
            latest["garments"].append(item)
            return item

        added = self._change(look_id, append)
        self.store.put_crop(look_id, added["index"], drawn.crop_png)
        return added

    def remove(self, look_id: str, index: int) -> dict[str, Any]:
        """Marks a garment as not one (a box where there is none, a garment shown twice): it stays in the look,
        so that the others keep their indices, with `removed` set; it is no longer indexed as a product."""

        def mark(latest: dict[str, Any]) -> dict[str, Any]:
            garment = self._garment(latest, index)
            garment["removed"] = True
            return garment

        return self._change(look_id, mark)

    def _match(self, record: dict[str, Any], crop: bytes, labels: dict[str, str],
               group: str) -> tuple[list[dict[str, Any]], str | None] | None:
        """A garment's matches in the look's collection (with the look's filters and top_k), or why it has
        none; None when the look was matched against no collection."""
        if not record.get("collection"):
            return None
        words = f"{labels.get('colour', '')} {labels.get('category', '')}".strip()
        try:
            hits, unmatched = self.finder.match(crop, words, group, collection=record["collection"],
                                                top_k=int(record.get("top_k") or REMATCH_TOP_K),
                                                filters=Filters.from_plain(record.get("filters") or {}))
        except NotFound:  # the collection was deleted since: the labels are still corrected
            return [], f"the collection {record['collection']!r} is gone"
        return [match_as_dict(h) for h in hits], unmatched

    def index(self, look_id: str, collection: str) -> list[str]:
        """Adds each garment as a product (its crop as the photo, its labels as attributes)."""
        record = self.get(look_id)
        if "garments" not in record:
            raise InvalidInput(f"look {look_id!r} has not been analysed yet", field="look_id")
        ids = []
        for garment in record["garments"]:
            if garment.get("removed"):
                continue
            label = {kind: (garment["labels"].get(kind) or [{"value": ""}])[0]["value"] for kind in LABEL_KINDS}
            product_id = f"look-{look_id}-{garment['index']}"
            record_ = ProductRecord(
                id=product_id, title=f"{label['colour']} {label['category']}".strip() or garment["group"],
                description="", category=label["category"], colour=label["colour"], price=None, image_refs=(),
                attributes={"pattern": label["pattern"], "group": garment["group"], "look": look_id,
                            "box": ",".join(map(str, garment["box"]))},
            )
            self.engine.put_product(collection, record_, [self.crop(look_id, garment["index"])])
            garment["product"] = {"collection": collection, "id": product_id}
            self._record_pairs(garment)
            ids.append(product_id)

        def link(latest: dict[str, Any]) -> None:
            for garment in record["garments"]:  # by index: a shopper may have drawn one meanwhile
                if "product" in garment:
                    latest["garments"][garment["index"]]["product"] = garment["product"]

        self._change(look_id, link)
        return ids

    def _record_pairs(self, garment: dict[str, Any]) -> None:
        product = garment["product"]
        store = self.engine.store(product["collection"])
        for kind, value in garment.get("corrected", {}).items():
            if kind in LABEL_KINDS:
                store.add_training_pair(product["id"], value, "correction")

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _garment(record: dict[str, Any], index: int) -> dict[str, Any]:
        garments = record.get("garments") or []
        if not 0 <= index < len(garments):
            raise NotFound(f"look {record['id']!r} has no garment {index}", field="index")
        garment: dict[str, Any] = garments[index]
        return garment

    def _change(self, look_id: str, change: Callable[[dict[str, Any]], T]) -> T:
        """Applies `change` to the look's latest record and writes it, again from a fresh read when
        another replica wrote the look in between (so neither change is lost)."""
        for _ in range(CHANGE_ATTEMPTS):
            found = self.store.read(look_id) if LOOK_ID.match(look_id) else None
            if found is None:
                raise NotFound(f"no look {look_id!r}", field="look_id")
            record, revision = found
            result = change(record)
            if self.store.update(record, revision, time.time()):
                return result
        raise Busy(f"look {look_id!r} is being changed by others; retry", retry_after_s=1)

    def _write(self, look_id: str, record: dict[str, Any]) -> None:
        self.store.put({**record, "id": look_id}, time.time())

    def _move_files(self, root: Path) -> None:
        """Looks an older Vitrine kept under `root`: into the tables (photo, record, crops), then the files
        removed. A look whose photo is missing is dropped with its folder: it could not be shown."""
        if not root.is_dir():
            return
        moved = 0
        for path in root.glob("*/look.json"):
            try:
                record = json.loads(path.read_text())
                sha, kind = record["photo"]["sha256"], record["photo"]["type"]
                data = (root / "photos" / sha[:2] / f"{sha}.{kind}").read_bytes()
            except (OSError, ValueError, KeyError, TypeError):
                shutil.rmtree(path.parent, ignore_errors=True)
                continue
            now = time.time()
            self.store.put_photo(sha, data, now)
            crops = sorted(path.parent.glob("crops/*.png"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
            self.store.put_crops(path.parent.name, [c.read_bytes() for c in crops])
            self.store.put({**record, "id": path.parent.name}, now)
            shutil.rmtree(path.parent, ignore_errors=True)
            moved += 1
        shutil.rmtree(root / "photos", ignore_errors=True)
        if not any(root.iterdir()):
            root.rmdir()
        if moved:
            log.info("looks moved into the tables", extra={"looks": moved})


def _checked_labels(labels: dict[str, str] | None) -> dict[str, str]:
    out = {}
    for kind, value in (labels or {}).items():
        if kind not in LABEL_KINDS:
            raise InvalidInput(f"label kind must be one of {', '.join(LABEL_KINDS)}", field=f"labels.{kind}")
        if not value.strip() or len(value) > 80:
            raise InvalidInput("a label is 1 to 80 characters", field=f"labels.{kind}")
        out[kind] = value.strip()
    return out


def _checked_box(record: dict[str, Any], box: list[int]) -> Box:
    width, height = record["width"], record["height"]
    if len(box) != 4 or not (0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height):
        raise InvalidInput(f"box must be [x0, y0, x1, y1] inside the {width}x{height} photo", field="box")
    if box[2] - box[0] < MIN_BOX_SIDE or box[3] - box[1] < MIN_BOX_SIDE:
        raise InvalidInput(f"a box is at least {MIN_BOX_SIDE} pixels on each side", field="box")
    x0, y0, x1, y1 = box
    return x0, y0, x1, y1


def _check_room(record: dict[str, Any]) -> None:
    if sum(1 for g in record["garments"] if g.get("person", 0) is None) >= MAX_DRAWN:
        raise InvalidInput(f"a look holds at most {MAX_DRAWN} drawn garments", field="box")
