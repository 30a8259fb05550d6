"""A collection's own trained heads: numbered versions kept in its store, one of them active (or the base).

The store is where every replica and worker looks (a SQLite file beside the collection, or its
PostgreSQL schema), so a version trained by a worker on one machine is searched with on every other,
and deleting a collection deletes its models. Which one is active is the store's `model_version` meta
value. Versions that older Vitrines wrote as files (`v1.npz` + `v1.json` card in the collection's
folder) are moved into the store the first time its versions are read.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Protocol

from vitrine.errors import NotFound
from vitrine.index.store import CollectionStore
from vitrine.models.clip_encoder import PREFIX as CLIP_PREFIX
from vitrine.models.heads import FashionHeads, base_heads_path, load_base_heads
from vitrine.models.registry import UNRECORDED_IMAGE_MODEL

BASE = "base"
_VERSION_FILE = re.compile(r"^v(\d+)\.npz$")

log = logging.getLogger(__name__)


class Trained(Protocol):
    @property
    def card(self) -> dict[str, Any]: ...

    def to_bytes(self) -> bytes: ...


class ModelVersions:
    def __init__(self, store: CollectionStore, legacy_folder: Path) -> None:
        self.store = store
        self.legacy_folder = legacy_folder

    def numbers(self) -> list[int]:
        self._move_files()
        return [number for number, _ in self.store.model_cards()]

    def save(self, heads: Trained) -> int:
        """Stores `heads` (fashion heads, or a checkpoint's adapter) as the next version and returns its
        number (also written into its card)."""
        self._move_files()
        card = {k: v for k, v in heads.card.items() if k != "version"}
        version = self.store.save_model(heads.to_bytes(), json.dumps(card, sort_keys=True))
        heads.card["version"] = f"v{version}"
        return version

    def load(self, version: str, *, image_model: str) -> FashionHeads | None:
        """`base` (the packaged heads of the collection's `image_model`, None if absent) or `v<N>`; NotFound
        for an unknown version."""
        if version == BASE:
            return load_base_heads(image_model)
        weights, card = self.read(version)
        source = f"collection {self.store.name!r} version {card['version']}"
        return FashionHeads.from_bytes(weights, card, source=source)

    def read(self, version: str) -> tuple[bytes, dict[str, Any]]:
        """A stored version's weights and card (with its name as `version`); NotFound when unknown."""
        number = parse_version(version)
        self._move_files()
        found = self.store.model(number)
        if found is None:
            raise NotFound(f"no model version {version!r}; known: {', '.join(self.names())}", field="version")
        weights, card = found
        return weights, {**json.loads(card), "version": f"v{number}"}

    def names(self) -> list[str]:
        return [BASE] + [f"v{n}" for n in self.numbers()]

    def cards(self) -> list[dict[str, Any]]:
        """Each version's model card (the weights are not read)."""
        encoder = str(self.store.meta().get("image_model", UNRECORDED_IMAGE_MODEL))
        if encoder.startswith(CLIP_PREFIX):  # its base is the bare checkpoint, not the packaged heads
            out: list[dict[str, Any]] = [{"version": BASE, "checkpoint": Path(encoder[len(CLIP_PREFIX):]).name}]
        else:
            base_card = base_heads_path(encoder).with_suffix(".json")
            out = [{"version": BASE, "image_model": encoder,
                    **_summary(json.loads(base_card.read_text()) if base_card.is_file() else {})}]
        self._move_files()
        for number, card in self.store.model_cards():
            out.append({"version": f"v{number}", **_summary(json.loads(card))})
        return out

    def _move_files(self) -> None:
        """Versions an older Vitrine kept as files: into the store (same numbers), then the files removed."""
        if not self.legacy_folder.is_dir():
            return
        for path in sorted(self.legacy_folder.iterdir()):
            match = _VERSION_FILE.match(path.name)
            if not match:
                continue
            heads = FashionHeads.load(path)
            card = {k: v for k, v in heads.card.items() if k != "version"}
            self.store.save_model(heads.to_bytes(), json.dumps(card, sort_keys=True), version=int(match.group(1)))
            path.with_suffix(".json").unlink(missing_ok=True)
            path.unlink()
            log.info("model version moved into the store", extra={"collection": self.store.name,
                                                                   "version": f"v{match.group(1)}"})


def parse_version(version: str) -> int:
    match = re.fullmatch(r"v?(\d+)", version.strip())
    if not match:
        raise NotFound(f"model version must be 'base' or v<number>, not {version!r}", field="version")
    return int(match.group(1))


def _summary(card: dict[str, Any]) -> dict[str, Any]:
    keep = ("created_at", "heldout", "data", "best_epoch", "train_seconds", "started_from", "recipe", "kind")
    return {k: card[k] for k in keep if k in card}
