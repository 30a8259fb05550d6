"""Training the fashion heads as users run it: the packaged base model, or a collection's own version.

Both read stored features (no photo is decoded again) and encode each distinct text once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vitrine.engine import Engine
from vitrine.errors import InvalidInput
from vitrine.models.clip_adapter import ClipAdapter, ClipTextTower, train_adapter
from vitrine.models.clip_encoder import ClipCrossModal
from vitrine.models.heads import FashionHeads, base_heads_path
from vitrine.models.training import Scorable, TrainConfig, collect, holdout_mask, retrieval_score, train_heads

log = logging.getLogger(__name__)

BASE_CATALOGS = ("fpi", "hm", "luma")
FINE_TUNE_LR = 3e-4
Progress = Callable[[int, int, dict[str, float]], None]


def train_collection(
    engine: Engine, name: str, *, config: TrainConfig | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Fine-tunes the collection's active heads on its own products (on a CLIP/SigLIP collection: an
    adapter of its checkpoint's space); the result becomes its new, active version. Raises InvalidInput
    when the collection has too little text or too few photos."""
    store = engine.store(name)
    started_from = engine.active_model(name)
    start = engine.heads(name)
    heads: FashionHeads | ClipAdapter
    begin: Scorable | None  # what training starts from, scored on the same held-out products
    if isinstance(start, ClipCrossModal | ClipAdapter):  # a checkpoint's space: an adapter of it
        bare = start if isinstance(start, ClipCrossModal) else start.base
        adapted = start if isinstance(start, ClipAdapter) else None
        config = config or TrainConfig(lr=FINE_TUNE_LR if adapted is not None else TrainConfig.lr,
                                       threads=engine.settings.threads)
        data = collect([store], ClipTextTower(bare.checkpoint))
        heads, card = train_adapter(data, bare, config, init=adapted, progress=progress)
        begin = adapted or bare
    else:
        init = start if isinstance(start, FashionHeads) else None
        config = config or TrainConfig(lr=FINE_TUNE_LR if init is not None else TrainConfig.lr,
                                       threads=engine.settings.threads)
        data = collect([store], engine.text_encoder)
        heads, card = train_heads(data, config, init=init, progress=progress)
        begin = init
    held = holdout_mask(data.groups, config.holdout, config.seed)
    before = retrieval_score(begin, data, held.nonzero()[0]) if begin is not None else None
    card.update(created_at=time.time(), started_from=started_from, collection=name,
                heldout_before={k: round(v, 4) for k, v in before.items()} if before else None)
    version = engine.model_versions(name).save(heads)
    active = engine.use_model(name, f"v{version}")
    log.info("trained collection model", extra={"collection": name, "version": active, "heldout": card["heldout"]})
    return {"version": active, **card}


def train_base(
    engine: Engine,
    *,
    data_dir: Path,
    out: Path | None = None,
    catalogs: Sequence[str] = BASE_CATALOGS,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Trains the base heads from scratch on the catalogs under `data_dir` (ingested as collections
    `base-<catalog>` first; unchanged rows are skipped) and writes them to `out` (the package's model)."""
    config = config or TrainConfig(threads=engine.settings.threads)
    stores = []
    sources: dict[str, str] = {}
    for catalog in catalogs:
        path = data_dir / catalog / "catalog.csv"
        if not path.is_file():
            raise InvalidInput(f"catalog not found: {path}", field="data_dir")
        engine.ingest(f"base-{catalog}", path)
        stores.append(engine.store(f"base-{catalog}"))
        sources[catalog] = hashlib.sha256(path.read_bytes()).hexdigest()
    data = collect(stores, engine.text_encoder)
    heads, card = train_heads(data, config, progress=progress)
    card.update(created_at=time.time(), version="base", catalogs=sources,
                image_model=engine.image_encoder.spec.name, text_model=engine.text_encoder.spec.name,
                command="vitrine train --base")
    target = out or base_heads_path(engine.image_encoder.spec.name)
    FashionHeads(weights=heads.weights, card=card).save(target)
    return {"path": str(target), **card}
