"""`vitrine train-look`, its first model once the people are gathered: the bag detector (`bags.py`), learned from
the train split of street photos with boxes (the dev split stays for `vitrine eval-look`). Photos without a bag
box are refused before anything is learned.

Each train photo and its mirror image are read once through the image model's feature maps, beside maps of the
people found in it (gathered already for the decisions). The head learns with a focal loss on Gaussian heat maps
around the true bags' centres (CenterNet's) and an L1 loss on their boxes at the centres, with AdamW, dropout of
whole input channels and an average of its weights over the steps. The threshold is the one whose bags, out of
fold (five folds by photo), have the best F1 at IoU >= 0.5, as `eval-look` counts them.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.errors import InvalidInput
from vitrine.models.imaging import decode_image
from vitrine.models.registry import image_model_spec
from vitrine.vision.bags import (
    GRID_H,
    GRID_W,
    INPUT_H,
    INPUT_W,
    PEOPLE_CHANNELS,
    STRIDE,
    BagModel,
    FeatureMaps,
    peaks,
    people_maps,
    photo_pixels,
)
from vitrine.vision.decision_training import Person, Progress
from vitrine.vision.evaluation import rates_of, true_boxes

CHANNELS = 64
EPOCHS = 12
LEARNING_RATE = 3e-4
WEIGHT_DECAY = 1e-3
DROPOUT = 0.2
AVERAGE = 0.98  # each step, the averaged weights keep this much of themselves
BATCH = 16
FOLDS = 5
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5)


@dataclass
class Example:
    fine: Array  # (2, 112, GRID_H, GRID_W) float16: the photo's maps, then its mirror image's
    coarse: Array  # (2, 1280, GRID_H / 2, GRID_W / 2) float16
    people: Array  # (2, PEOPLE_CHANNELS, GRID_H, GRID_W)
    bags: list[tuple[float, float, float, float]]  # true bag boxes, in INPUT_W x INPUT_H pixels


def head_module(channels: int = CHANNELS, dropout: float = DROPOUT) -> Any:
    """The head `BagModel.heat` runs in NumPy, as a PyTorch module (its parameters' names are the saved ones)."""
    import torch
    from torch import nn
    from torch.nn import functional

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout2d(dropout)
            self.coarse, self.fine = nn.Conv2d(1280, channels, 1), nn.Conv2d(112, channels, 1)
            self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(2 * channels + 2 + PEOPLE_CHANNELS, channels, 3, padding=1),
                                      nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=2, dilation=2), nn.ReLU())
            self.heat, self.size = nn.Conv2d(channels, 1, 1), nn.Conv2d(channels, 4, 1)
            with torch.no_grad():  # start near a 10% prior: most cells hold no bag
                self.heat.bias.fill_(-2.2)  # type: ignore[union-attr]

        def forward(self, fine: torch.Tensor, coarse: torch.Tensor,
                    people: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            n = fine.shape[0]
            up = functional.interpolate(self.coarse(self.drop(coarse)), size=(GRID_H, GRID_W), mode="bilinear",
                                        align_corners=False)
            ys = torch.linspace(0, 1, GRID_H).view(1, 1, GRID_H, 1).expand(n, 1, GRID_H, GRID_W)
            xs = (torch.linspace(0, 1, GRID_W) - 0.5).abs().mul(2).view(1, 1, 1, GRID_W).expand(n, 1, GRID_H, GRID_W)
            x = self.body(torch.cat([up, self.fine(self.drop(fine)), ys, xs, people], 1))
            return self.heat(x)[:, 0], self.size(x)

    return Head()


def examples(photos: list[dict[str, Any]], people: list[Person], boxes_file: Path, maps: FeatureMaps, *,
             max_pixels: int, progress: Progress | None = None) -> list[Example]:
    """Each train photo's maps, and its mirror image's, with its people's maps and its true bags."""
    found = []
    for n, photo in enumerate(photos):
        image = decode_image((boxes_file.parent / photo["image"]).read_bytes(), max_pixels=max_pixels)
        pixels = photo_pixels(image, maps.spec)
        fine, coarse = maps(np.stack([pixels, pixels[:, :, ::-1]]))
        mine = people_maps([p.body for p in people if p.photo == n], image.width, image.height)
        sx, sy = INPUT_W / image.width, INPUT_H / image.height
        bags = [(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy) for g, b in true_boxes(photo) if g == "bag"]
        found.append(Example(fine.astype(np.float16), coarse.astype(np.float16),
                             np.stack([mine, mine[:, :, ::-1]]), bags))
        if progress is not None:
            progress(n + 1, len(photos))
    return found


def targets(bags: list[tuple[float, float, float, float]], mirrored: bool) -> tuple[Array, Array, Array]:
    """The heat map (Gaussians around the centres, 1 at each centre's cell), the boxes at the centres, and where
    the centres are."""
    heat = np.zeros((GRID_H, GRID_W), dtype=np.float32)
    size = np.zeros((4, GRID_H, GRID_W), dtype=np.float32)
    centres = np.zeros((GRID_H, GRID_W), dtype=np.float32)
    ys, xs = np.mgrid[0:GRID_H, 0:GRID_W] + 0.5
    for x0, y0, x1, y1 in bags:
        if mirrored:
            x0, x1 = INPUT_W - x1, INPUT_W - x0
        cx, cy, w, h = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE, (x1 - x0) / STRIDE, (y1 - y0) / STRIDE
        sigma = max(0.5, 0.15 * (w + h))
        heat = np.maximum(heat, np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2)))
        ix, iy = min(GRID_W - 1, int(cx)), min(GRID_H - 1, int(cy))
        heat[iy, ix] = 1.0
        size[:, iy, ix] = (np.log(max(w, 0.1)), np.log(max(h, 0.1)), cx - ix - 0.5, cy - iy - 0.5)
        centres[iy, ix] = 1.0
    return heat, size, centres


def fit(found: list[Example], *, epochs: int = EPOCHS, seed: int = 0) -> dict[str, Array]:
    """The head's averaged weights after `epochs` over these examples (each photo or its mirror image per step)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = head_module()
    averaged = copy.deepcopy(model)
    optimiser = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    wanted = [[targets(e.bags, mirrored) for mirrored in (False, True)] for e in found]
    for _ in range(epochs):
        model.train()
        order = rng.permutation(len(found))
        for start in range(0, len(order), BATCH):
            rows = order[start:start + BATCH]
            views = rng.integers(0, 2, len(rows))

            def stack(part: str, rows: Array = rows, views: Array = views) -> torch.Tensor:
                return torch.from_numpy(np.stack([getattr(found[r], part)[v] for r, v in zip(rows, views, strict=True)])
                                        .astype(np.float32))

            chosen = [wanted[r][v] for r, v in zip(rows, views, strict=True)]
            heat, size, centres = (torch.from_numpy(np.stack([c[i] for c in chosen])) for i in range(3))
            logits, boxes = model(stack("fine"), stack("coarse"), stack("people"))
            loss = focal_loss(logits, heat) + ((boxes - size).abs().sum(1) * centres).sum() / centres.sum().clamp(min=1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                for mean, weight in zip(averaged.parameters(), model.parameters(), strict=True):
                    mean.mul_(AVERAGE).add_(weight, alpha=1 - AVERAGE)
    return {name: value.detach().numpy().astype(np.float32) for name, value in averaged.state_dict().items()}


def focal_loss(logits: Any, heat: Any) -> Any:
    """CenterNet's focal loss on a heat map, per centre."""
    import torch

    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    centre = heat.eq(1).float()
    loss = -(centre * (1 - p) ** 2 * torch.log(p) + (1 - centre) * (1 - heat) ** 4 * p**2 * torch.log(1 - p))
    return loss.sum() / centre.sum().clamp(min=1.0)


def train_bags(photos: list[dict[str, Any]], people: list[Person], boxes_file: Path, *, image_model: str,
               model_dir: Path, threads: int, max_pixels: int, progress: Progress | None = None) -> BagModel:
    started = time.perf_counter()
    if not any(g == "bag" for photo in photos for g, _ in true_boxes(photo)):
        raise InvalidInput(f"the train photos of {boxes_file} have no bag boxes to learn from", field="boxes")
    maps = FeatureMaps(image_model_spec(image_model), model_dir=model_dir, threads=threads)
    found = examples(photos, people, boxes_file, maps, max_pixels=max_pixels, progress=progress)
    fold_of_photo = np.random.default_rng(0).permutation(len(photos)) % FOLDS
    out_of_fold: list[tuple[Any, Any]] = [(None, None)] * len(photos)
    for fold in range(FOLDS):
        held = np.flatnonzero(fold_of_photo == fold)
        if len(held) == 0 or len(held) == len(photos):
            continue
        model = BagModel(weights=fit([found[i] for i in np.flatnonzero(fold_of_photo != fold)]), threshold=0.0,
                         card={})
        for i in held:
            e = found[i]
            out_of_fold[i] = model.heat(e.fine[0].astype(np.float32), e.coarse[0].astype(np.float32), e.people[0])
    scored = {}
    for threshold in THRESHOLDS:
        predicted = [[("bag", box) for _, box in peaks(heat, size, threshold, photo["width"], photo["height"])]
                     if heat is not None else [] for (heat, size), photo in zip(out_of_fold, photos, strict=True)]
        scored[threshold] = rates_of(photos, predicted)["bag"]

    def f1(rates: dict[str, Any]) -> float:
        r, p = rates["recall"] or 0.0, rates["precision"] or 0.0
        return 2 * r * p / (r + p) if r + p else 0.0

    threshold = max(THRESHOLDS, key=lambda t: f1(scored[t]))
    weights = fit(found)
    card = {
        "name": "look-bags", "trained_on": boxes_file.name, "split": "train", "photos": len(photos),
        "command": f"vitrine train-look {boxes_file.name}", "image_model": image_model,
        "bags": sum(len(e.bags) for e in found), "input": [INPUT_W, INPUT_H], "stride": STRIDE,
        "channels": CHANNELS, "epochs": EPOCHS, "learning_rate": LEARNING_RATE, "weight_decay": WEIGHT_DECAY,
        "dropout": DROPOUT, "weight_average": AVERAGE, "folds": FOLDS,
        "out_of_fold": {str(t): {"recall": r["recall"], "precision": r["precision"], "predicted": r["predicted"]}
                        for t, r in scored.items()},
        "seconds": round(time.perf_counter() - started, 1), "trained_at": time.strftime("%Y-%m-%d"),
    }
    return BagModel(weights=weights, threshold=threshold, card=card)
