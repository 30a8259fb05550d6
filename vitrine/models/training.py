"""Training the fashion heads (torch, CPU): symmetric contrastive learning between stored photo
features and texts that describe the product, with early stopping on held-out products.

Recipe (kept in every model card): InfoNCE in both directions with a learnable temperature; texts
that are identical strings count as positives of each other (many products are "black trousers"),
so the loss never pushes apart what is the same; one random photo and one random view per product
per epoch; 10% of products (whole variant groups) held out; the epoch with the best held-out
retrieval score is kept. Deterministic for a seed and a thread count.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from vitrine.arrays import Array
from vitrine.errors import InvalidInput
from vitrine.index.store import CollectionStore
from vitrine.models.captions import clean, product_views
from vitrine.models.heads import FashionHeads, image_head_input

RECIPE = "infonce-multipositive-v1"
MIN_PRODUCTS = 50
MIN_DISTINCT_TEXTS = 20
Progress = Callable[[int, int, dict[str, float]], None]


@dataclass
class TrainingData:
    """Products with their photos' stored features and their texts, ready for training."""

    features: Array  # (n_images, raw_dim) stored raw features
    image_product: Array  # (n_images,) product index
    groups: list[str]  # per product: variant group (held-out splits keep a group together)
    views: list[list[int]]  # per product: caption ids
    captions: list[str]
    caption_vectors: Array  # (n_captions, 384) MiniLM vectors
    short_caption: list[int]  # per product: its "colour category" caption id, or -1
    title_caption: list[int]  # per product: its title's caption id, or -1
    sources: dict[str, int] = field(default_factory=dict)  # collection -> products

    @property
    def products(self) -> int:
        return len(self.views)


class TextTower(Protocol):
    """What encodes the training texts: MiniLM for the fashion heads, a checkpoint's text tower for its adapter."""

    @property
    def dim(self) -> int: ...

    def encode(self, texts: list[str]) -> Array: ...


def collect(stores: Sequence[CollectionStore], text_encoder: TextTower) -> TrainingData:
    """Reads products, stored features and texts from collections; encodes each distinct text once.

    Texts recorded for a product (label corrections, queries that led to a click) join its own.
    """
    features: list[Array] = []
    image_product: list[Array] = []
    groups: list[str] = []
    views: list[list[str]] = []
    short: list[str] = []
    titles: list[str] = []
    sources: dict[str, int] = {}
    extra: dict[tuple[str, str], list[str]] = {}
    for store in stores:
        for collection, product_id, text in store.training_pairs():
            extra.setdefault((collection, product_id), []).append(clean(text))
        data = store.load_vectors([])
        products = {p.id: p for p in store.get_products(data.ids)}
        offset = len(views)
        features.append(data.image_features)
        image_product.append(data.image_product.astype(np.int64) + offset)
        for product_id in data.ids:
            p = products[product_id]
            texts = product_views(title=p.title, description=p.description, category=p.category, colour=p.colour,
                                  attributes=p.attributes)
            texts += extra.get((store.name, product_id), [])
            views.append(list(dict.fromkeys(texts)))
            groups.append(f"{store.name}/{p.attributes.get('group_id', product_id)}")
            colour, category = clean(p.colour), clean(p.category)
            short.append(f"{colour} {category}" if colour and category else "")
            titles.append(clean(p.title))
        sources[store.name] = len(data.ids)
    captions = sorted({t for texts in views for t in texts})
    caption_id = {t: i for i, t in enumerate(captions)}
    caption_vectors = text_encoder.encode(captions) if captions else np.zeros((0, text_encoder.dim), np.float32)
    return TrainingData(
        features=np.concatenate(features) if features else np.zeros((0, 0), np.float32),
        image_product=np.concatenate(image_product) if image_product else np.zeros(0, np.int64),
        groups=groups,
        views=[[caption_id[t] for t in texts] for texts in views],
        captions=captions,
        caption_vectors=caption_vectors,
        short_caption=[caption_id.get(t, -1) if t else -1 for t in short],
        title_caption=[caption_id.get(t, -1) if t else -1 for t in titles],
        sources=sources,
    )


def check_trainable(data: TrainingData) -> None:
    """Refuses collections with too little to learn from, with the reason."""
    with_text = sum(1 for v in data.views if v)
    with_images = len(np.unique(data.image_product))
    if with_text < MIN_PRODUCTS or with_images < MIN_PRODUCTS:
        raise InvalidInput(
            f"too little to learn from: {with_text} products with text and {with_images} with photos "
            f"(at least {MIN_PRODUCTS} of each are needed)"
        )
    if len(data.captions) < MIN_DISTINCT_TEXTS:
        raise InvalidInput(f"too little text to learn from: {len(data.captions)} distinct texts "
                           f"(at least {MIN_DISTINCT_TEXTS} are needed)")


def holdout_mask(groups: Sequence[str], fraction: float, seed: int) -> Array:
    """True for held-out products: whole groups, chosen by a seeded hash (stable as catalogs grow)."""
    def held(group: str) -> bool:
        digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < fraction

    return np.asarray([held(g) for g in groups], dtype=bool)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    epochs: int = 60
    patience: int = 6
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.01
    hidden: int = 1024
    dim: int = 384
    dropout: float = 0.1
    holdout: float = 0.1
    short_weight: float = 3.0  # how much likelier a short caption (<= 4 words) is drawn than a long text
    threads: int = 2

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _view_weights(data: TrainingData, product: int, short_weight: float) -> Array:
    words = np.asarray([len(data.captions[c].split()) for c in data.views[product]])
    weights = np.where(words <= 4, short_weight, 1.0)
    normalised: Array = weights / weights.sum() if len(weights) else weights
    return normalised


def describes_matrix(views: Sequence[Sequence[int]], products: Array, caption_ids: Array) -> Array:
    """(B, B) float32: 1 where the batch's caption j is one of product i's own texts.

    A caption such as "black" describes every black product in the batch, not only the one it was
    drawn for; counting those as negatives would teach the model to pull apart what is alike.
    """
    columns: dict[int, list[int]] = {}
    for j, c in enumerate(caption_ids):
        columns.setdefault(int(c), []).append(j)
    out = np.zeros((len(products), len(caption_ids)), dtype=np.float32)
    for i, p in enumerate(products):
        for c in views[int(p)]:
            for j in columns.get(c, ()):
                out[i, j] = 1.0
    return out


class Scorable(Protocol):
    def image_vectors(self, raw: Array) -> Array: ...
    def text_vectors(self, sentence_vectors: Array) -> Array: ...


def retrieval_score(heads: Scorable, data: TrainingData, products: Array) -> dict[str, float]:
    """Held-out retrieval among `products`: MRR of "colour category" captions (relevant: every product
    with that caption) and MRR of titles (relevant: the product itself), on each product's first photo."""
    first = np.full(data.products, -1, dtype=np.int64)
    order = np.arange(len(data.image_product))[::-1]
    first[data.image_product[order]] = order
    products = products[first[products] >= 0]
    images = heads.image_vectors(data.features[first[products]])
    result: dict[str, float] = {}
    for name, ids in (("caption_mrr", data.short_caption), ("title_mrr", data.title_caption)):
        caption = np.asarray(ids)[products]
        asked = np.unique(caption[caption >= 0])
        if len(asked) == 0:
            result[name] = 0.0
            continue
        queries = heads.text_vectors(data.caption_vectors[asked])
        scores = queries @ images.T  # (queries, products)
        relevant = caption[None, :] == asked[:, None]
        best_relevant = np.where(relevant, scores, -np.inf).max(1)
        rank = (scores > best_relevant[:, None]).sum(1) + 1
        result[name] = float(np.mean(1.0 / rank))
    result["score"] = (result["caption_mrr"] + result["title_mrr"]) / 2
    return result


@dataclass
class Fit:
    """What `fit_contrastive` found: the best held-out export and how it got there."""

    best: Any
    metrics: dict[str, float]
    epoch: int
    history: list[dict[str, float]]
    train_products: int
    heldout_products: int
    seconds: float


def fit_contrastive(model: Any, x_all: Any, t_all: Any, data: TrainingData, config: TrainConfig, *,
                    export: Callable[[], Any], start_scored: bool, progress: Progress | None = None) -> Fit:
    """The training loop shared by the fashion heads and a checkpoint's adapters: `model` has
    `encode_image`, `encode_text` and `logit_scale`; `export()` returns what `retrieval_score` reads.
    `start_scored`: the starting model is a candidate (fine-tuning keeps it when no epoch beats it).
    Callers have run `check_trainable` before building the model."""
    import torch
    from torch import nn

    rng = np.random.default_rng(config.seed)
    held = holdout_mask(data.groups, config.holdout, config.seed)
    has_text = np.asarray([bool(v) for v in data.views])
    has_image = np.zeros(data.products, dtype=bool)
    has_image[data.image_product] = True
    train_products = np.flatnonzero(~held & has_text & has_image)
    val_products = np.flatnonzero(held & has_image)
    images_of = np.split(np.arange(len(data.image_product)), np.flatnonzero(np.diff(data.image_product)) + 1)
    image_lists: list[Array] = [np.zeros(0, np.int64)] * data.products
    for chunk in images_of:
        if len(chunk):
            image_lists[int(data.image_product[chunk[0]])] = chunk
    view_weights = [_view_weights(data, p, config.short_weight) for p in range(data.products)]

    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    started = time.perf_counter()
    history: list[dict[str, float]] = []
    best = export()
    best_metrics = retrieval_score(best, data, val_products) if start_scored else {"score": -1.0}
    best_epoch, since_best = 0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = rng.permutation(train_products)
        total_loss, batches = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            if len(batch) < 2:
                continue
            image_ids = np.asarray([rng.choice(image_lists[p]) for p in batch])
            caption_ids = np.asarray([rng.choice(data.views[p], p=view_weights[p]) for p in batch])
            images = model.encode_image(x_all[image_ids])
            texts = model.encode_text(t_all[caption_ids])
            logits = model.logit_scale.exp().clamp(max=100.0) * images @ texts.T
            describes = torch.from_numpy(describes_matrix(data.views, batch, caption_ids))
            image_targets = describes / describes.sum(1, keepdim=True)
            text_targets = describes.T / describes.T.sum(1, keepdim=True)
            loss = (nn.functional.cross_entropy(logits, image_targets)
                    + nn.functional.cross_entropy(logits.T, text_targets)) / 2
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            total_loss += float(loss.item())
            batches += 1
        model.eval()
        with torch.no_grad():
            current = export()
        metrics = retrieval_score(current, data, val_products)
        metrics["loss"] = total_loss / max(batches, 1)
        history.append({"epoch": epoch, **{k: round(v, 4) for k, v in metrics.items()}})
        if metrics["score"] > best_metrics["score"]:
            best, best_metrics, best_epoch, since_best = current, metrics, epoch, 0
        else:
            since_best += 1
        if progress is not None:
            progress(epoch, config.epochs, metrics)
        if since_best >= config.patience:
            break
    return Fit(best=best, metrics=best_metrics, epoch=best_epoch, history=history,
               train_products=len(train_products), heldout_products=len(val_products),
               seconds=round(time.perf_counter() - started, 1))


def fit_card(fit: Fit, data: TrainingData, config: TrainConfig) -> dict[str, Any]:
    return {
        "recipe": RECIPE,
        "config": config.as_dict(),
        "data": {"products": data.products, "images": len(data.image_product), "texts": len(data.captions),
                 "train_products": fit.train_products, "heldout_products": fit.heldout_products,
                 "collections": data.sources},
        "best_epoch": fit.epoch,
        "heldout": {k: round(v, 4) for k, v in fit.metrics.items()},
        "history": fit.history,
        "train_seconds": fit.seconds,
    }


def train_heads(
    data: TrainingData,
    config: TrainConfig,
    *,
    init: FashionHeads | None = None,
    progress: Progress | None = None,
) -> tuple[FashionHeads, dict[str, Any]]:
    """Trains (or fine-tunes `init`) and returns the best heads on held-out products, with metrics."""
    import torch
    from torch import nn

    check_trainable(data)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    x_all = torch.from_numpy(image_head_input(data.features))
    t_all = torch.from_numpy(np.asarray(data.caption_vectors, dtype=np.float32))
    in_dim, text_dim = x_all.shape[1], t_all.shape[1]

    class Heads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dropout = nn.Dropout(config.dropout)
            self.image_in = nn.Linear(in_dim, config.hidden)
            self.image_out = nn.Linear(config.hidden, config.dim)
            self.text = nn.Linear(text_dim, text_dim)
            nn.init.zeros_(self.text.weight)
            nn.init.zeros_(self.text.bias)
            self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

        def encode_text(self, t: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(t + self.text(t), dim=-1)

        def encode_image(self, x: torch.Tensor) -> torch.Tensor:
            hidden = nn.functional.gelu(self.image_in(self.dropout(x)), approximate="tanh")
            return nn.functional.normalize(self.image_out(self.dropout(hidden)), dim=-1)

    model = Heads()
    layers = {"image_w1": model.image_in, "image_w2": model.image_out, "text_w": model.text}
    if init is not None:
        if init.dim != config.dim or init.weights["image_w1"].shape != (in_dim, config.hidden):
            raise InvalidInput("the starting model's shape does not match the training configuration")
        with torch.no_grad():
            for name, layer in layers.items():
                layer.weight.copy_(torch.from_numpy(init.weights[name].T.copy()))
                layer.bias.copy_(torch.from_numpy(init.weights[name.replace("_w", "_b")]))
            model.logit_scale.fill_(float(init.card.get("logit_scale", np.log(1 / 0.07))))

    def export() -> FashionHeads:
        weights: dict[str, Array] = {}
        for name, layer in layers.items():
            weights[name] = layer.weight.detach().numpy().T.astype(np.float32).copy()
            weights[name.replace("_w", "_b")] = layer.bias.detach().numpy().astype(np.float32).copy()
        return FashionHeads(weights=weights, card={"logit_scale": float(model.logit_scale.item())})

    fit = fit_contrastive(model, x_all, t_all, data, config, export=export, start_scored=init is not None,
                          progress=progress)
    card = {
        **fit.best.card, **fit_card(fit, data, config),
        "sizes": {"image_input": int(in_dim), "hidden": config.hidden, "dim": config.dim, "text_input": int(text_dim)},
    }
    return FashionHeads(weights=fit.best.weights, card=card), card
