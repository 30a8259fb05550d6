"""A small colour descriptor of a photo's garment pixels, stored beside the CNN features.

ImageNet CNN features are weak on colour names ("navy" vs "black"), which shoppers type all the
time. The descriptor is a soft histogram over a palette of fashion colours in CIELAB, over the
pixels that differ from the photo's background (estimated from its border), once for the whole
foreground and once for its centre (where the garment is on a model photo). It is computed from
the model input the encoder already has, so it costs no second decode.
"""

from __future__ import annotations

import numpy as np

from vitrine.arrays import Array, ChannelScale

# sRGB reference colours; names are documentation only (the descriptor is soft, not a label).
PALETTE_RGB: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("black", (20, 20, 22)), ("charcoal", (62, 62, 66)), ("grey", (128, 128, 128)),
    ("light grey", (192, 192, 192)), ("white", (246, 246, 246)), ("navy", (30, 38, 78)),
    ("blue", (40, 80, 180)), ("light blue", (145, 180, 225)), ("turquoise", (50, 180, 180)),
    ("dark green", (30, 70, 42)), ("green", (60, 150, 60)), ("khaki", (130, 130, 72)),
    ("yellow", (238, 212, 60)), ("mustard", (200, 158, 40)), ("orange", (236, 120, 40)),
    ("red", (200, 30, 40)), ("burgundy", (110, 22, 40)), ("pink", (242, 160, 186)),
    ("fuchsia", (220, 50, 130)), ("lilac", (190, 162, 212)), ("purple", (100, 48, 130)),
    ("beige", (222, 204, 172)), ("camel", (182, 132, 82)), ("brown", (98, 60, 36)),
)
COLOUR_DIM = 2 * len(PALETTE_RGB)
_SIGMA = 14.0  # Lab units: neighbouring palette colours share a pixel, distant ones do not
_BACKGROUND_DISTANCE = 24.0  # Lab units from the border colour that count as foreground
_MIN_FOREGROUND = 0.03
_STRIDE = 7  # 224 px input -> 32 x 32 samples: plenty for a histogram


def srgb_to_lab(rgb: Array) -> Array:
    """(..., 3) sRGB in 0..255 to CIELAB (D65)."""
    c = np.clip(rgb / 255.0, 0.0, 1.0)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], dtype=np.float32)
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    lab: Array = np.stack(
        [116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1
    ).astype(np.float32)
    return lab


_PALETTE_LAB = srgb_to_lab(np.array([rgb for _, rgb in PALETTE_RGB], dtype=np.float32))


def colour_descriptors(arrays: Array, *, mean: ChannelScale, std: ChannelScale) -> Array:
    """(B, 3, H, W) normalised model inputs to (B, COLOUR_DIM) descriptors (each half sums to 1)."""
    pixels = arrays[:, :, ::_STRIDE, ::_STRIDE].transpose(0, 2, 3, 1) * std + mean  # (B, h, w, 3)
    lab = srgb_to_lab(pixels)
    batch, h, w, _ = lab.shape
    border = np.concatenate([lab[:, 0], lab[:, -1], lab[:, :, 0], lab[:, :, -1]], axis=1)  # (B, 2h+2w, 3)
    background = np.median(border, axis=1)  # (B, 3)
    foreground = np.linalg.norm(lab - background[:, None, None], axis=-1) > _BACKGROUND_DISTANCE
    too_little = foreground.mean(axis=(1, 2)) < _MIN_FOREGROUND
    foreground[too_little] = True  # a photo that is all garment (or all background): use every pixel
    distance2 = ((lab[..., None, :] - _PALETTE_LAB) ** 2).sum(-1)  # (B, h, w, K)
    soft = np.exp(-(distance2 - distance2.min(-1, keepdims=True)) / (2 * _SIGMA**2))
    soft /= soft.sum(-1, keepdims=True)
    centre = np.zeros((h, w), dtype=bool)
    centre[h // 4 : h - h // 4, w // 4 : w - w // 4] = True
    out = np.zeros((batch, COLOUR_DIM), dtype=np.float32)
    k = len(PALETTE_RGB)
    for i in range(batch):
        fg = foreground[i]
        out[i, :k] = soft[i][fg].mean(0)
        middle = fg & centre
        out[i, k:] = soft[i][middle].mean(0) if middle.any() else out[i, :k]
    return out


def cnn_part(raw: Array) -> Array:
    """The encoder's own features in a stored feature row (everything before the colour descriptor)."""
    return raw[..., :-COLOUR_DIM]


def colour_part(raw: Array) -> Array:
    return raw[..., -COLOUR_DIM:]
