"""Defensive image decoding and preprocessing, as small pure functions (PIL and numpy only)."""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vitrine.arrays import Array, ChannelScale
from vitrine.errors import ImageError

# Magic numbers of the formats we accept; anything else is refused before PIL parses it.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


def sniff_image_type(data: bytes) -> str | None:
    """The image format from the content's first bytes (never from a file name), or None."""
    for magic, kind in _SIGNATURES:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def decode_image(data: bytes, *, max_pixels: int, draft_px: int | None = None) -> Image.Image:
    """Bytes to an upright RGB image, or ImageError.

    Refuses non-images and images over `max_pixels` before decoding pixels (decompression bombs),
    takes the first frame of animations, applies EXIF orientation, converts CMYK/palette/grey,
    and flattens transparency on white, as catalog photos are shown.
    """
    if not data:
        raise ImageError("empty file")
    if sniff_image_type(data) is None:
        raise ImageError("not an image (unknown file signature)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width <= 0 or height <= 0 or width * height > max_pixels:
                raise ImageError(f"image is {width}x{height} pixels, over the limit of {max_pixels}")
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            if draft_px and image.format == "JPEG":
                # JPEG can decode at 1/2, 1/4, 1/8 scale: far less work for big photos.
                image.draft("RGB", (draft_px, draft_px))
            image.load()
            image = ImageOps.exif_transpose(image) or image
            return _to_rgb(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"image is over the limit of {max_pixels} pixels (decompression bomb guard)") from exc
    except UnidentifiedImageError:
        # PIL's message names its buffer object (`<_io.BytesIO object at 0x...>`): not for users.
        raise ImageError("unreadable image: the format is not recognised") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or corrupt data
        raise ImageError(f"corrupt or truncated image: {_plain(exc)}") from None


def _plain(exc: Exception) -> str:
    """An exception's message without Python object reprs."""
    return re.sub(r"<[\w.]+ object at 0x[0-9a-f]+>", "the image", str(exc))[:200]


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def pad_to_square(image: Image.Image, fill: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Pads on white instead of cropping, so a whole garment stays in view."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def to_model_input(image: Image.Image, *, size_px: int, mean: ChannelScale, std: ChannelScale) -> Array:
    """RGB image to a (3, size, size) float32 array, normalised as the model was trained."""
    square = pad_to_square(image).resize((size_px, size_px), Image.Resampling.BICUBIC)
    array = np.asarray(square, dtype=np.float32)
    array = (array - mean) / std
    return np.ascontiguousarray(array.transpose(2, 0, 1))
