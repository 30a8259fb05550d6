"""`vitrine train` on a collection that searches with a CLIP or SigLIP checkpoint.

The checkpoint's towers stay as they are. What a collection learns is a residual linear map on each
side of its space (photo embeddings, text embeddings), zero at the start so that training begins at
the checkpoint itself. It is trained with the fashion heads' loss and held-out rule on the
collection's stored photo embeddings and texts, which the checkpoint's text tower encodes. A
version is kept in the collection's model versions like any trained heads. Labels, looks and search
then read the adapted space, and `vitrine models <collection> --use base` goes back to the bare
checkpoint.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.errors import ModelUnavailable
from vitrine.models.clip_encoder import ClipCheckpoint, ClipCrossModal
from vitrine.models.training import Progress, TrainConfig, TrainingData, check_trainable, fit_card, fit_contrastive
from vitrine.search.scoring import normalise_rows

KIND = "clip-adapter"
WEIGHT_NAMES = ("image_w", "image_b", "text_w", "text_b")
TEXT_BATCH = 64


@dataclass
class ClipAdapter:
    """A checkpoint's space as one collection's version adapted it (a CrossModal)."""

    base: ClipCrossModal
    weights: dict[str, Array]
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def version(self) -> str:
        return str(self.card.get("version", KIND))

    @property
    def logit_scale(self) -> float:
        return float(np.exp(self.card.get("logit_scale", np.log(self.base.logit_scale))))

    def image_vectors(self, raw: Array) -> Array:
        e = self.base.image_vectors(raw)
        return normalise_rows(e + e @ self.weights["image_w"] + self.weights["image_b"])

    def text_vectors(self, embeddings: Array) -> Array:
        """The checkpoint's text embeddings into the adapted space."""
        t = np.asarray(embeddings, dtype=np.float32)
        return normalise_rows(t + t @ self.weights["text_w"] + self.weights["text_b"])

    def text_query(self, texts: list[str], sentence_vectors: Array) -> Array:
        return self.text_vectors(self.base.text_query(texts, sentence_vectors))

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        np.savez_compressed(out, **{k: v.astype(np.float32) for k, v in self.weights.items()})
        return out.getvalue()

    @classmethod
    def from_bytes(cls, base: ClipCrossModal, data: bytes, card: dict[str, Any], *, source: str) -> ClipAdapter:
        if card.get("kind") != KIND:
            raise ModelUnavailable(f"{source} is not an adapter of a checkpoint's space (it was trained for the "
                                   "built-in fashion model)")
        try:
            with np.load(io.BytesIO(data)) as npz:
                weights = {k: npz[k].astype(np.float32) for k in WEIGHT_NAMES}
        except (OSError, KeyError, ValueError, EOFError) as exc:
            raise ModelUnavailable(f"cannot load the adapter {source}: {exc}") from exc
        if weights["image_w"].shape != (base.dim, base.dim):
            raise ModelUnavailable(f"{source} adapts a {len(weights['image_w'])}-d space; the checkpoint's is "
                                   f"{base.dim}-d")
        return cls(base=base, weights=weights, card=card)


@dataclass
class ClipTextTower:
    """The checkpoint's text tower where training expects a sentence encoder (`encode`, `dim`)."""

    checkpoint: ClipCheckpoint

    @property
    def dim(self) -> int:
        return self.checkpoint.dim

    def encode(self, texts: list[str]) -> Array:
        parts = [self.checkpoint.encode_texts(texts[i : i + TEXT_BATCH]) for i in range(0, len(texts), TEXT_BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)


def train_adapter(data: TrainingData, base: ClipCrossModal, config: TrainConfig, *, init: ClipAdapter | None = None,
                  progress: Progress | None = None) -> tuple[ClipAdapter, dict[str, Any]]:
    """Trains (or goes on training `init`); the start is a candidate too, so a collection whose texts
    teach nothing keeps the checkpoint's space."""
    import torch
    from torch import nn

    check_trainable(data)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    x_all = torch.from_numpy(base.image_vectors(data.features))
    t_all = torch.from_numpy(np.asarray(data.caption_vectors, dtype=np.float32))
    dim = base.dim

    class Adapter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.image = nn.Linear(dim, dim)
            self.text = nn.Linear(dim, dim)
            for layer in (self.image, self.text):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
            self.logit_scale = nn.Parameter(torch.tensor(float(np.log(min(base.logit_scale, 100.0)))))

        def encode_image(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(x + self.image(x), dim=-1)

        def encode_text(self, t: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(t + self.text(t), dim=-1)

    model = Adapter()
    layers = {"image": model.image, "text": model.text}
    if init is not None:
        with torch.no_grad():
            for name, layer in layers.items():
                layer.weight.copy_(torch.from_numpy(init.weights[f"{name}_w"].T.copy()))
                layer.bias.copy_(torch.from_numpy(init.weights[f"{name}_b"]))
            model.logit_scale.fill_(float(np.log(init.logit_scale)))

    def export() -> ClipAdapter:
        weights: dict[str, Array] = {}
        for name, layer in layers.items():
            weights[f"{name}_w"] = layer.weight.detach().numpy().T.astype(np.float32).copy()
            weights[f"{name}_b"] = layer.bias.detach().numpy().astype(np.float32).copy()
        return ClipAdapter(base=base, weights=weights, card={"logit_scale": float(model.logit_scale.item())})

    fit = fit_contrastive(model, x_all, t_all, data, config, export=export, start_scored=True, progress=progress)
    card = {**fit.best.card, **fit_card(fit, data, config), "kind": KIND, "checkpoint": base.checkpoint.path.name,
            "sizes": {"dim": dim}}
    return ClipAdapter(base=base, weights=fit.best.weights, card=card), card
