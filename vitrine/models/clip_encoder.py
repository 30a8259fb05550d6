"""A real CLIP or SigLIP checkpoint from a local directory, for users who have one: Hugging Face format, or an
open_clip SigLIP such as Marqo-FashionSigLIP (converted once to the former by `open_clip_siglip`).

A collection created with `--encoder clip:/path/to/checkpoint` stores the checkpoint's image
embeddings as its photo features, searches photos with them, and answers text queries with its
text tower: the checkpoint's own shared space replaces the built-in heads. Nothing is downloaded
(`local_files_only`), and preprocessing is PIL/numpy (no torchvision): the photo is padded to a
square on white like every catalog photo here, resized, and normalised with the checkpoint's
per-channel mean and std from `preprocessor_config.json`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.errors import InvalidInput, ModelUnavailable
from vitrine.models import open_clip_siglip
from vitrine.models.colour import cnn_part
from vitrine.search.scoring import normalise_rows

PREFIX = "clip:"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SUPPORTED = ("clip", "siglip", "siglip2")


@dataclass(frozen=True)
class ClipImageSpec:
    """Pixel preprocessing of a checkpoint, in the 0..255 scale `to_model_input` works in."""

    name: str
    size_px: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def checkpoint_path(encoder: str) -> Path:
    """`clip:/path` to the checkpoint directory, checked to hold a CLIP or SigLIP config."""
    if not encoder.startswith(PREFIX):
        raise InvalidInput(f"encoder must be 'builtin', 'clip:<directory>' or the name of a pulled checkpoint, "
                           f"not {encoder!r}", field="encoder")
    path = Path(encoder[len(PREFIX):]).expanduser().resolve()
    if uses_open_clip(path):
        try:
            open_clip_siglip.converted_path(path)  # converted once, when a collection is first created on it
        except ModelUnavailable as exc:
            raise InvalidInput(str(exc), field="encoder") from exc
        return path
    kind = _model_type(path)
    if kind not in SUPPORTED:
        what = f"a {kind} model" if kind else "no Hugging Face checkpoint (config.json)"
        raise InvalidInput(f"{path} holds {what}; supported: {', '.join(SUPPORTED)} in Hugging Face format, or an "
                           "open_clip SigLIP", field="encoder")
    return path


def _model_type(path: Path) -> str:
    config = path / "config.json"
    if not config.is_file():
        return ""
    try:
        return str(json.loads(config.read_text()).get("model_type", ""))
    except (OSError, ValueError, AttributeError) as exc:
        raise InvalidInput(f"cannot read {config}: {exc}", field="encoder") from exc


def uses_open_clip(path: Path) -> bool:
    """An open_clip checkpoint: its config.json, if any, is not a CLIP or SigLIP transformers reads (a
    repository can hold both, or wrap open_clip for transformers' remote code, which is not run here)."""
    return (path / open_clip_siglip.CONFIG).is_file() and _model_type(path) not in SUPPORTED


def encoder_key(path: Path) -> str:
    return "clip-" + hashlib.sha256(str(path).encode()).hexdigest()[:12]


class ClipCheckpoint:
    """Both towers of a local checkpoint; loads lazily, once, behind a lock."""

    def __init__(self, path: Path, *, threads: int) -> None:
        self.path = path  # what the collection names; an open_clip checkpoint loads from its converted folder
        self.threads = threads
        self.model_path = open_clip_siglip.converted_path(path) if uses_open_clip(path) else path
        config = self._read_json("config.json")
        self.kind = str(config.get("model_type", ""))
        if self.kind not in SUPPORTED:
            raise ModelUnavailable(f"{path} is a {self.kind or 'unknown'} model; supported: {', '.join(SUPPORTED)}")
        self.dim = int(config.get("projection_dim") or config.get("text_config", {}).get("hidden_size") or 0)
        pre = self._read_json("preprocessor_config.json")
        vision = config.get("vision_config", {})
        size = pre.get("crop_size") or pre.get("size") or vision.get("image_size", 224)
        size_px = int(size.get("height") or size.get("shortest_edge") or 224) if isinstance(size, dict) else int(size)
        mean = tuple(float(m) * 255 for m in pre.get("image_mean", CLIP_MEAN))
        std = tuple(float(s) * 255 for s in pre.get("image_std", CLIP_STD))
        self.context_length = int(config.get("text_config", {}).get("max_position_embeddings") or 64)
        self.canonical_text = config.get("vitrine_text_clean") == "canonicalize"  # open_clip's SigLIP cleaning
        self.spec = ClipImageSpec(name=encoder_key(path), size_px=size_px, mean=mean, std=std)  # type: ignore[arg-type]
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _read_json(self, name: str) -> dict[str, Any]:
        file = self.model_path / name
        try:
            return dict(json.loads(file.read_text())) if file.is_file() else {}
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(f"cannot read {file}: {exc}") from exc

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModel, AutoTokenizer

            torch.set_num_threads(self.threads)
            try:
                model, info = AutoModel.from_pretrained(str(self.model_path), local_files_only=True,
                                                        output_loading_info=True)
                tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)
            except Exception as exc:  # transformers raises many kinds for a broken checkpoint
                raise ModelUnavailable(f"cannot load the checkpoint in {self.path}: {exc}") from exc
            if info.get("missing_keys"):  # transformers would fill them with random values
                raise ModelUnavailable(f"the checkpoint in {self.path} lacks weights its config needs: "
                                       f"{sorted(info['missing_keys'])[:4]}")
            model.eval()
            if not self.dim:
                self.dim = int(model.config.projection_dim)
            self._model, self._tokenizer = model, tokenizer

    @property
    def logit_scale(self) -> float:
        self.load()
        return float(self._model.logit_scale.exp().item())

    def encode(self, batch: Array) -> Array:
        """(B, 3, size, size) normalised pixels to (B, dim) unit image embeddings."""
        import torch

        self.load()
        with torch.no_grad():
            out = self._model.get_image_features(pixel_values=torch.from_numpy(np.ascontiguousarray(batch)))
        return normalise_rows(_pooled(out))

    def encode_texts(self, texts: list[str]) -> Array:
        import torch

        self.load()
        padding = "max_length" if self.kind.startswith("siglip") else True  # SigLIP was trained padded
        if self.canonical_text:
            texts = [open_clip_siglip.canonicalize(t) for t in texts]
        tokens = self._tokenizer(texts, padding=padding, truncation=True, max_length=self.context_length,
                                 return_tensors="pt")
        with torch.no_grad():
            out = self._model.get_text_features(
                input_ids=tokens["input_ids"],
                **({"attention_mask": tokens["attention_mask"]} if "attention_mask" in tokens and
                   self.kind == "clip" else {}),
            )
        return normalise_rows(_pooled(out))


def _pooled(out: Any) -> Array:
    """transformers 5 returns an output object whose pooler_output is the embedding; 4 a tensor."""
    tensor = getattr(out, "pooler_output", out)
    array: Array = tensor.detach().float().numpy()
    return array


@dataclass
class ClipCrossModal:
    """A checkpoint's shared space in the place of the built-in heads."""

    checkpoint: ClipCheckpoint
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.checkpoint.dim

    @property
    def version(self) -> str:
        return f"{PREFIX}{self.checkpoint.path}"

    def image_vectors(self, raw: Array) -> Array:
        return normalise_rows(cnn_part(np.atleast_2d(raw)))

    def text_query(self, texts: list[str], sentence_vectors: Array) -> Array:
        return self.checkpoint.encode_texts(texts)

    def text_vectors(self, embeddings: Array) -> Array:
        """The text tower's embeddings are already in the space."""
        return normalise_rows(np.asarray(embeddings, dtype=np.float32))

    @property
    def logit_scale(self) -> float:
        return self.checkpoint.logit_scale
