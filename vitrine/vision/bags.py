"""Bags: a bag has no body region, so the landmarks do not place it. A small detector learned from street photos
(ccp's train split, `bag_training.py`) finds it in the whole photo.

It reads the photo resized to INPUT_W x INPUT_H through the built-in image model, whose feature maps are kept at two
strides: 16 (block 10's output, 112 channels) and 32 (the head convolution's, 1280 channels, the part tuned on
fashion photos). Beside them it reads maps of the people found: their pixels, wrists, elbows and hips. A small
convolutional head (CenterNet-like) turns them into a heat map of bags' centres on the stride-16 grid and, at
each centre, the bag's size and where in its cell the centre lies. Peaks of the heat map at or above a threshold
chosen out of fold are the bags. The head runs here in NumPy; only the feature maps need ONNX Runtime.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vitrine.arrays import Array
from vitrine.models.export_quiet import quiet_export
from vitrine.models.image_encoder import _torch_feature_model, export_checked
from vitrine.models.ort_session import open_session
from vitrine.models.registry import ImageModelSpec
from vitrine.vision.decisions import read_model
from vitrine.vision.garments import Box
from vitrine.vision.people import Person

MODEL_FILE = Path(__file__).with_name("look-bags.npz")
INPUT_W, INPUT_H, STRIDE = 352, 512, 16  # ccp's photos are about 340 x 512
GRID_W, GRID_H = INPUT_W // STRIDE, INPUT_H // STRIDE
FINE_BLOCK = 10  # the last block at stride 16
PEOPLE_CHANNELS = 4  # the people's pixels, wrists, elbows, hips
JOINTS = ((15, 16), (13, 14), (23, 24))
MIN_VISIBLE = 0.3
MAX_BAGS = 3
# It learned on portrait photos (ccp: 0.66-0.69 wide for 1 high), stretched a little to INPUT_W x INPUT_H: photos
# much wider or narrower than that would be stretched into shapes it never saw, so it does not look in them.
ASPECTS = (0.5, 1.0)


def looks_in(width: int, height: int) -> bool:
    """Whether a photo of this size is one the detector looks for bags in (portrait or square)."""
    return ASPECTS[0] <= width / max(height, 1) <= ASPECTS[1]


def photo_pixels(image: Image.Image, spec: ImageModelSpec) -> Array:
    """(3, INPUT_H, INPUT_W) float32: the whole photo resized (not padded: street photos are tall alike), normalised
    as the image model was trained."""
    resized = image.convert("RGB").resize((INPUT_W, INPUT_H), Image.Resampling.BICUBIC)
    array = (np.asarray(resized, dtype=np.float32) - spec.mean) / spec.std
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def people_maps(people: list[Person], width: int, height: int) -> Array:
    """(PEOPLE_CHANNELS, GRID_H, GRID_W): the people's pixels (share of each cell), and Gaussians at their visible
    wrists, elbows and hips, as wide as a quarter of their torso."""
    maps = np.zeros((PEOPLE_CHANNELS, GRID_H, GRID_W), dtype=np.float32)
    ys, xs = np.mgrid[0:GRID_H, 0:GRID_W] + 0.5
    for person in people:
        pixels = Image.fromarray(person.mask.astype(np.uint8) * 255).resize((GRID_W, GRID_H), Image.Resampling.BILINEAR)
        maps[0] = np.maximum(maps[0], np.asarray(pixels, dtype=np.float32) / 255)
        marks = person.landmarks
        torso = max(8.0, abs(float(marks[23, 1] + marks[24, 1] - marks[11, 1] - marks[12, 1]) / 2))
        sigma = max(0.7, 0.25 * torso / (height / GRID_H))
        for channel, joints in enumerate(JOINTS, start=1):
            for joint in joints:
                x, y, visibility = marks[joint]
                if visibility < MIN_VISIBLE:
                    continue
                gx, gy = x / width * GRID_W, y / height * GRID_H
                blob = np.exp(-((xs - gx) ** 2 + (ys - gy) ** 2) / (2 * sigma**2)).astype(np.float32)
                maps[channel] = np.maximum(maps[channel], blob)
    return maps


def maps_module(spec: ImageModelSpec) -> Any:
    """The image model as a PyTorch module from pixels to its stride-16 and stride-32 feature maps."""
    import torch

    backbone = _torch_feature_model(spec).backbone

    class FeatureMaps(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            b = self.backbone
            x = b._swish(b._bn0(b._conv_stem(pixels)))
            fine = x
            for index, block in enumerate(b._blocks):
                x = block(x)
                if index == FINE_BLOCK:
                    fine = x
            return fine, b._swish(b._bn1(b._conv_head(x)))

    return FeatureMaps().eval()


class FeatureMaps:
    """The image model's feature maps of whole photos, through ONNX Runtime (exported once, on first use)."""

    def __init__(self, spec: ImageModelSpec, *, model_dir: Path, threads: int) -> None:
        self.spec = spec
        self.path = model_dir / f"{spec.name}-maps-{INPUT_W}x{INPUT_H}.onnx"
        self.threads = threads
        self._session: Any = None
        self._lock = threading.Lock()

    def __call__(self, pixels: Array) -> tuple[Array, Array]:
        """(n, 3, INPUT_H, INPUT_W) to (n, 112, GRID_H, GRID_W) and (n, 1280, GRID_H / 2, GRID_W / 2)."""
        with self._lock:
            if self._session is None:
                if not self.path.is_file():
                    with quiet_export():
                        export_checked(maps_module(self.spec), (INPUT_H, INPUT_W), self.path,
                                       outputs=["fine", "coarse"], what=f"{self.spec.name}'s feature maps")
                self._session = open_session(self.path, threads=self.threads)
        fine, coarse = self._session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})
        return np.asarray(fine, dtype=np.float32), np.asarray(coarse, dtype=np.float32)


def _upsample_matrix(size: int, out: int) -> Array:
    """Bilinear resampling from `size` to `out` points as PyTorch does it (align_corners=False), as a matrix."""
    matrix = np.zeros((out, size), dtype=np.float32)
    for i in range(out):
        src = max((i + 0.5) * size / out - 0.5, 0.0)
        low = min(int(src), size - 1)
        high = min(low + 1, size - 1)
        matrix[i, low] += 1 - (src - low)
        matrix[i, high] += src - low
    return matrix


def _conv(x: Array, weight: Array, bias: Array, dilation: int = 1) -> Array:
    """A 'same' convolution of (C, H, W) with (O, C, k, k) weights."""
    k = weight.shape[-1]
    pad = dilation * (k // 2)
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    height, width = x.shape[1:]
    out = np.zeros((weight.shape[0], height, width), dtype=np.float32)
    for dy in range(k):
        for dx in range(k):
            window = padded[:, dy * dilation:dy * dilation + height, dx * dilation:dx * dilation + width]
            out += np.einsum("oc,chw->ohw", weight[:, :, dy, dx], window, optimize=True)
    result: Array = out + bias[:, None, None]
    return result


def _relu(x: Array) -> Array:
    result: Array = np.maximum(x, 0.0)
    return result


@dataclass
class BagModel:
    weights: dict[str, Array]  # the head's, by the names `bag_training.head_module` gives them
    threshold: float  # a peak at least this sure is a bag
    card: dict[str, Any]

    def heat(self, fine: Array, coarse: Array, people: Array) -> tuple[Array, Array]:
        """One photo's maps to the bag centres' probabilities (GRID_H, GRID_W) and each cell's box (4, ...): log
        width and height in cells, the centre's offset in its cell."""
        w = self.weights
        coarse = _conv(coarse, w["coarse.weight"], w["coarse.bias"])
        up = np.einsum("yh,chw,xw->cyx", _upsample_matrix(coarse.shape[1], GRID_H), coarse,
                       _upsample_matrix(coarse.shape[2], GRID_W), optimize=True)
        ys = np.broadcast_to(np.linspace(0, 1, GRID_H, dtype=np.float32)[:, None], (GRID_H, GRID_W))
        xs = np.broadcast_to(np.abs(np.linspace(0, 1, GRID_W, dtype=np.float32) - 0.5)[None, :] * 2, (GRID_H, GRID_W))
        x = _relu(np.concatenate([up, _conv(fine, w["fine.weight"], w["fine.bias"]), ys[None], xs[None], people]))
        x = _relu(_conv(x, w["body.1.weight"], w["body.1.bias"]))
        x = _relu(_conv(x, w["body.3.weight"], w["body.3.bias"], dilation=2))
        logits = _conv(x, w["heat.weight"], w["heat.bias"])[0]
        return 1.0 / (1.0 + np.exp(-logits)), _conv(x, w["size.weight"], w["size.bias"])

    def bags(self, fine: Array, coarse: Array, people: Array, width: int, height: int) -> list[tuple[float, Box]]:
        """The bags in one photo of `width` x `height`: (probability, box), surest first."""
        heat, size = self.heat(fine, coarse, people)
        return peaks(heat, size, self.threshold, width, height)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **self.weights)
        path.with_suffix(".json").write_text(json.dumps(dict(self.card, threshold=self.threshold), indent=2) + "\n")


def peaks(heat: Array, size: Array, threshold: float, width: int, height: int) -> list[tuple[float, Box]]:
    """Local maxima (3 x 3) of the heat map at or above `threshold`, at most MAX_BAGS, as boxes in the photo."""
    padded = np.pad(heat, 1, constant_values=-1.0)
    neighbours = np.max([padded[dy:dy + GRID_H, dx:dx + GRID_W] for dy in range(3) for dx in range(3)], axis=0)
    found = []
    for iy, ix in zip(*np.nonzero((heat >= neighbours) & (heat >= threshold)), strict=True):
        log_w, log_h, dx, dy = (float(v) for v in size[:, iy, ix])
        cx, cy = (ix + 0.5 + dx) * STRIDE, (iy + 0.5 + dy) * STRIDE
        half_w, half_h = np.exp(log_w) * STRIDE / 2, np.exp(log_h) * STRIDE / 2
        sx, sy = width / INPUT_W, height / INPUT_H
        box = (max(0, round((cx - half_w) * sx)), max(0, round((cy - half_h) * sy)),
               min(width, round((cx + half_w) * sx)), min(height, round((cy + half_h) * sy)))
        if box[2] > box[0] and box[3] > box[1]:
            found.append((float(heat[iy, ix]), box))
    return sorted(found, key=lambda item: -item[0])[:MAX_BAGS]


def load(path: Path = MODEL_FILE) -> BagModel:
    card, arrays = read_model(path, "the bag detector")
    return BagModel(weights=arrays, threshold=float(card["threshold"]), card=card)
