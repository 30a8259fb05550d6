"""A garment somebody draws on a look (`POST /looks/{id}/garments` without a group): how often is its group read
right? Each true garment box of the ccp dev photos (never trained on) is drawn, and `LookFinder.drawn` reads its
group as the API does: the drawn-box model that `vitrine train-look` learns from the train photos. Against it, the
crop's zero-shot group shares alone (the most likely group's words), and the same model with crops never set on
white (every crop as drawn).

    python benchmarks/drawn_boxes.py            # about 2 minutes on 2 cores; benchmarks/results/drawn_boxes.json
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import numpy as np
from common import DATA, bench_settings, save

from vitrine.engine import Engine
from vitrine.vision import look
from vitrine.vision.drawn_boxes import GROUPS
from vitrine.vision.evaluation import read_photos, true_boxes
from vitrine.vision.look import LookFinder


def measure(finder: LookFinder, photos: list[dict[str, Any]]) -> dict[str, Any]:
    right, seen, confused = Counter[str](), Counter[str](), Counter[str]()
    started = time.perf_counter()
    for photo in photos:
        data = (DATA / "ccp" / photo["image"]).read_bytes()
        for group, box in true_boxes(photo):
            read = finder.drawn(data, tuple(box), collection=None).group  # type: ignore[arg-type]
            seen[group] += 1
            right[group] += read == group
            if read != group:
                confused[f"{group} -> {read}"] += 1
    boxes = sum(seen.values())
    return {
        "boxes": boxes,
        "accuracy": round(sum(right.values()) / boxes, 3),
        "by_group": {g: {"boxes": seen[g], "accuracy": round(right[g] / seen[g], 3)} for g in GROUPS if seen[g]},
        "most_confused": dict(confused.most_common(6)),
        "boxes_per_s": round(boxes / (time.perf_counter() - started), 1),
    }


class ZeroShotOnly:
    """Stands in for the drawn-box model: the group whose words the crop's zero-shot shares favour."""

    def group(self, raw: np.ndarray, shares: np.ndarray, geometry: np.ndarray) -> str:
        return GROUPS[int(np.argmax(shares))]


def main() -> None:
    photos = read_photos(DATA / "ccp" / "boxes.json", "dev")
    results: dict[str, Any] = {"photos": len(photos), "split": "dev"}
    with Engine(bench_settings()) as engine:
        finder = LookFinder(engine)
        results["shipped"] = measure(finder, photos)
        shipped_share = look.MIN_MASKED_SHARE
        look.MIN_MASKED_SHARE = 2.0  # never on white: every crop as drawn
        try:
            results["as_drawn"] = measure(finder, photos)
        finally:
            look.MIN_MASKED_SHARE = shipped_share
        finder._drawn_model = ZeroShotOnly()  # type: ignore[assignment]
        results["zero_shot_only"] = measure(finder, photos)
    save("drawn_boxes", results)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
