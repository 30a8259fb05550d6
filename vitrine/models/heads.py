"""The fashion model's trained heads: frozen-backbone features in, one shared space for words and photos out.

Image head: a two-layer MLP over [power-normalised CNN features, Hellinger colour descriptor].
Text head: a residual linear layer on the MiniLM sentence vector (zero-initialised, so an untrained
head is MiniLM itself). Inference is plain numpy: the weights are a few MB and need no torch.
A model is a `.npz` of weights with a JSON model card beside it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vitrine.arrays import Array
from vitrine.errors import ModelUnavailable
from vitrine.models.colour import colour_part
from vitrine.models.registry import DEFAULT_IMAGE_MODEL, PACKAGED_MODELS, image_model_spec
from vitrine.search.scoring import image_search_vectors, normalise_rows

WEIGHT_NAMES = ("image_w1", "image_b1", "image_w2", "image_b2", "text_w", "text_b")


def image_head_input(raw: Array) -> Array:
    """Stored raw feature rows to the image head's input: unit CNN part, then sqrt of each colour half."""
    raw = np.asarray(raw, dtype=np.float32)
    colour = np.sqrt(np.maximum(colour_part(raw), 0.0))
    joined: Array = np.concatenate([image_search_vectors(raw), colour], axis=1).astype(np.float32)
    return joined


def gelu(x: Array) -> Array:
    """tanh GELU, the same approximation the trainer uses."""
    out: Array = 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))
    return out


class CrossModal(Protocol):
    """A shared space for words and photos: the built-in heads, or a real CLIP/SigLIP checkpoint."""

    @property
    def dim(self) -> int: ...
    @property
    def version(self) -> str: ...
    @property
    def logit_scale(self) -> float: ...
    def image_vectors(self, raw: Array) -> Array: ...
    def text_query(self, texts: list[str], sentence_vectors: Array) -> Array: ...


@dataclass(frozen=True)
class FashionHeads:
    weights: dict[str, Array]
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.weights["image_w2"].shape[1])

    @property
    def version(self) -> str:
        return str(self.card.get("version", "base"))

    @property
    def logit_scale(self) -> float:
        return float(np.exp(self.card.get("logit_scale", np.log(1 / 0.07))))

    def image_vectors(self, raw: Array, *, batch: int = 4096) -> Array:
        """(n, raw dim) stored features to (n, dim) unit vectors in the shared space."""
        w = self.weights
        out = np.zeros((len(raw), self.dim), dtype=np.float32)
        for start in range(0, len(raw), batch):
            x = image_head_input(raw[start : start + batch])
            hidden = gelu(x @ w["image_w1"] + w["image_b1"])
            out[start : start + len(x)] = normalise_rows(hidden @ w["image_w2"] + w["image_b2"])
        return out

    def text_vectors(self, sentence_vectors: Array) -> Array:
        """(n, 384) MiniLM vectors to (n, dim) unit vectors in the shared space."""
        m = np.asarray(sentence_vectors, dtype=np.float32)
        return normalise_rows(m + m @ self.weights["text_w"] + self.weights["text_b"])

    def text_query(self, texts: list[str], sentence_vectors: Array) -> Array:
        """Queries into the space; the heads read the MiniLM vectors, not the strings."""
        return self.text_vectors(sentence_vectors)

    def to_bytes(self) -> bytes:
        """The weights as a compressed .npz, float16 to halve the size (scores move < 1e-3)."""
        out = io.BytesIO()
        np.savez_compressed(out, **{k: v.astype(np.float16) for k, v in self.weights.items()})
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, card: dict[str, Any], *, source: str) -> FashionHeads:
        """Weights written by `to_bytes`; ModelUnavailable names `source` when they cannot be read."""
        try:
            with np.load(io.BytesIO(data)) as npz:
                weights = {k: npz[k].astype(np.float32) for k in WEIGHT_NAMES}
        except (OSError, KeyError, ValueError, EOFError) as exc:
            raise ModelUnavailable(f"cannot load fashion heads from {source}: {exc}") from exc
        return cls(weights=weights, card=card)

    def save(self, path: Path) -> None:
        """Writes `path` (.npz) and `path`.json (the card)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        tmp.write_bytes(self.to_bytes())
        tmp.replace(path)
        path.with_suffix(".json").write_text(json.dumps(self.card, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> FashionHeads:
        try:
            data = path.read_bytes()
            card_path = path.with_suffix(".json")
            card = json.loads(card_path.read_text()) if card_path.exists() else {}
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(f"cannot load fashion heads from {path}: {exc}") from exc
        return cls.from_bytes(data, card, source=str(path))


def base_heads_path(image_model: str = DEFAULT_IMAGE_MODEL) -> Path:
    """Where the package keeps the base heads trained on `image_model`'s features."""
    return PACKAGED_MODELS / image_model_spec(image_model).heads_file


def load_base_heads(image_model: str = DEFAULT_IMAGE_MODEL) -> FashionHeads | None:
    """The heads shipped in the package for `image_model`, or None when they have not been trained (a
    fresh checkout before `vitrine train --base`); search then runs on text and raw image similarity alone."""
    path = base_heads_path(image_model)
    return FashionHeads.load(path) if path.exists() else None
