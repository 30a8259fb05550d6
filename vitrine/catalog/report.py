"""The validation report of one ingest: counts and per-row problems, printed and saved as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vitrine.catalog.records import Problem, ProductRecord
from vitrine.files import write_atomic

# A field most products of a real catalog have: below this share, the report warns that the column
# was probably not found (or mapped to the wrong one).
SUSPICIOUS_SHARE = 0.5
_SHARED_FIELDS = ("price", "colour", "category", "images")


@dataclass
class IngestReport:
    collection: str
    source: str
    rows: int = 0
    valid: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    images: int = 0
    images_encoded: int = 0
    images_cached: int = 0
    elapsed_s: float = 0.0
    completed: bool = False
    format: str = ""
    field_sources: dict[str, str] = field(default_factory=dict)  # product field -> the source field that fed it
    variants: int = 0
    shares: dict[str, float] = field(default_factory=dict)  # share of valid products that have each field
    warnings: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    _have: dict[str, int] = field(default_factory=dict, repr=False)
    _products: int = field(default=0, repr=False)

    def count_fields(self, record: ProductRecord) -> None:
        """Counts which fields one valid product has (pass 1), for the shares."""
        self._products += 1
        self.variants += len(record.variants)
        have = {"price": record.price is not None, "colour": bool(record.colour), "category": bool(record.category),
                "images": bool(record.image_refs)}
        for name, present in have.items():
            self._have[name] = self._have.get(name, 0) + int(present)

    def check_shares(self) -> None:
        """The shares, with a warning for each field no product has, or suspiciously few do."""
        if not self._products:
            return
        for name in _SHARED_FIELDS:
            share = self._have.get(name, 0) / self._products
            self.shares[name] = round(share, 4)
            source = self.field_sources.get(name)
            looked = f"from {source!r}" if source else "no column found for it; map one with --map"
            if share == 0:
                self.warnings.append(f"no product has a {name} ({looked})")
            elif share < SUSPICIOUS_SHARE:
                self.warnings.append(f"only {share:.0%} of products have a {name} ({looked})")

    @property
    def images_per_s(self) -> float:
        return self.images / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        data["problems"] = [p.as_dict() for p in self.problems]
        data["images_per_s"] = round(self.images_per_s, 2)
        data["elapsed_s"] = round(self.elapsed_s, 3)
        return data

    def save(self, path: Path) -> Path:
        write_atomic(path, json.dumps(self.as_dict(), indent=2, ensure_ascii=False).encode())
        return path
