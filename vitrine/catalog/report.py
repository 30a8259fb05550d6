"""The validation report of one ingest: counts and per-row problems, printed and saved as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vitrine.catalog.records import Problem
from vitrine.files import write_atomic


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
    problems: list[Problem] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.images / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = [p.as_dict() for p in self.problems]
        data["images_per_s"] = round(self.images_per_s, 2)
        data["elapsed_s"] = round(self.elapsed_s, 3)
        return data

    def save(self, path: Path) -> Path:
        write_atomic(path, json.dumps(self.as_dict(), indent=2, ensure_ascii=False).encode())
        return path
