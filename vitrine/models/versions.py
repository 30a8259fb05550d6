"""A collection's own trained heads: numbered versions in its folder, one of them active (or the base).

Versions are files (`v1.npz` + `v1.json` card) beside the collection's store, so deleting a
collection deletes its models. Which one is active is the store's `model_version` meta value.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vitrine.errors import NotFound
from vitrine.models.heads import FashionHeads, base_heads_path, load_base_heads

BASE = "base"
_VERSION_FILE = re.compile(r"^v(\d+)\.npz$")


class ModelVersions:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def numbers(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        found = (_VERSION_FILE.match(p.name) for p in self.folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def path(self, version: int) -> Path:
        return self.folder / f"v{version}.npz"

    def save(self, heads: FashionHeads) -> int:
        """Stores `heads` as the next version and returns its number."""
        version = max(self.numbers(), default=0) + 1
        heads.card["version"] = f"v{version}"
        heads.save(self.path(version))
        return version

    def load(self, version: str) -> FashionHeads | None:
        """`base` (the packaged model, None if absent) or `v<N>`; NotFound for an unknown version."""
        if version == BASE:
            return load_base_heads()
        number = parse_version(version)
        path = self.path(number)
        if not path.is_file():
            raise NotFound(f"no model version {version!r}; known: {', '.join(self.names())}", field="version")
        return FashionHeads.load(path)

    def names(self) -> list[str]:
        return [BASE] + [f"v{n}" for n in self.numbers()]

    def cards(self) -> list[dict[str, Any]]:
        """Each version's model card (the JSON beside its weights; the weights are not read)."""
        out: list[dict[str, Any]] = []
        for name in self.names():
            weights = base_heads_path() if name == BASE else self.path(parse_version(name))
            card_path = weights.with_suffix(".json")
            card = json.loads(card_path.read_text()) if card_path.is_file() else {}
            out.append({"version": name, **_summary(card)})
        return out


def parse_version(version: str) -> int:
    match = re.fullmatch(r"v?(\d+)", version.strip())
    if not match:
        raise NotFound(f"model version must be 'base' or v<number>, not {version!r}", field="version")
    return int(match.group(1))


def _summary(card: dict[str, Any]) -> dict[str, Any]:
    keep = ("created_at", "heldout", "data", "best_epoch", "train_seconds", "started_from", "recipe")
    return {k: card[k] for k in keep if k in card}
