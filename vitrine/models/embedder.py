"""From image bytes to raw features: decode defensively, preprocess, encode, with the content-hash cache.

A raw feature row is the encoder's pooled features followed by the colour descriptor
(`vitrine.models.colour`); both are stored so that heads can be trained without re-reading photos."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vitrine.arrays import Array, ChannelScale
from vitrine.models.colour import COLOUR_DIM, colour_descriptors
from vitrine.models.feature_cache import FeatureCache
from vitrine.models.imaging import decode_image, to_model_input


class PixelSpec(Protocol):
    @property
    def size_px(self) -> int: ...
    @property
    def mean(self) -> ChannelScale: ...
    @property
    def std(self) -> ChannelScale: ...


class FeatureEncoder(Protocol):
    """What turns preprocessed pixels into features: the built-in CNN, or a CLIP checkpoint's image tower."""

    @property
    def spec(self) -> PixelSpec: ...
    @property
    def dim(self) -> int: ...
    def encode(self, batch: Array) -> Array: ...


@dataclass(frozen=True)
class PreparedPhoto:
    """One of the two: raw features found in the cache, or the decoded model input still to encode."""

    features: Array | None
    pixels: Array | None


class ImageEmbedder:
    def __init__(
        self, encoder: FeatureEncoder, *, cache: FeatureCache | None, max_pixels: int, batch_size: int, threads: int
    ) -> None:
        self.encoder = encoder
        self.cache = cache
        self.max_pixels = max_pixels
        self.batch_size = batch_size
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="decode")

    @property
    def dim(self) -> int:
        return self.encoder.dim + COLOUR_DIM

    def preprocess(self, data: bytes, *, max_pixels: int | None = None) -> Array:
        """Bytes to model input; raises ImageError for anything that is not a sound, reasonably sized image."""
        spec = self.encoder.spec
        image = decode_image(data, max_pixels=min(max_pixels or self.max_pixels, self.max_pixels),
                             draft_px=spec.size_px)
        return to_model_input(image, size_px=spec.size_px, mean=spec.mean, std=spec.std)

    def preprocess_many(self, blobs: Sequence[bytes]) -> list[Array | Exception]:
        """Decodes in a thread pool (PIL releases the GIL); each item is an array or the error it raised."""

        def attempt(data: bytes) -> Array | Exception:
            try:
                return self.preprocess(data)
            except Exception as exc:  # returned, not raised: one bad image must not fail its batch
                return exc

        return list(self._pool.map(attempt, blobs))

    def encode_arrays(self, arrays: Sequence[Array]) -> Array:
        out = np.zeros((len(arrays), self.dim), dtype=np.float32)
        for start in range(0, len(arrays), self.batch_size):
            batch = np.stack(arrays[start : start + self.batch_size])
            out[start : start + len(batch)] = self._encode_batch(batch)
        return out

    def _encode_batch(self, batch: Array) -> Array:
        spec = self.encoder.spec
        colour = colour_descriptors(batch, mean=spec.mean, std=spec.std)
        return np.concatenate([self.encoder.encode(batch), colour], axis=1)

    def prepare(self, data: bytes, *, max_pixels: int | None = None) -> PreparedPhoto:
        """A query photo's costly first half: its cached features, or its decoded model input. Split from
        `finish` so that callers can bound decoding apart from encoding. `max_pixels` can only lower the
        embedder's limit. Raises ImageError."""
        sha = hashlib.sha256(data).hexdigest()
        if self.cache is not None:
            cached = self.cache.get_many([sha]).get(sha)
            if cached is not None:
                return PreparedPhoto(features=cached, pixels=None)
        return PreparedPhoto(features=None, pixels=self.preprocess(data, max_pixels=max_pixels))

    def finish(self, photo: PreparedPhoto) -> Array:
        """Raw features (dim,) float32 of a prepared photo."""
        if photo.features is not None:
            return photo.features
        assert photo.pixels is not None
        features: Array = self._encode_batch(photo.pixels[None])[0]
        return features

    def features(self, data: bytes, *, max_pixels: int | None = None) -> Array:
        """Raw features of one image (a query): (dim,) float32. Raises ImageError."""
        return self.finish(self.prepare(data, max_pixels=max_pixels))

    def features_many(self, blobs: Sequence[bytes]) -> list[Array]:
        """Raw features of several images at once (a look's crops): decoded in the pool, encoded as one batch.
        Raises the ImageError of the first bad one."""
        arrays = self.preprocess_many(blobs)
        bad = next((item for item in arrays if isinstance(item, Exception)), None)
        if bad is not None:
            raise bad
        return list(self.encode_arrays([item for item in arrays if not isinstance(item, Exception)]))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
