"""Defensive decoding on real photos and on the usual kinds of bad image."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from conftest import LUMA
from PIL import Image

from vitrine.errors import ImageError
from vitrine.models.imaging import decode_image, sniff_image_type, to_model_input

PHOTO = LUMA / "images" / "mh01-gray_main.jpg"
LIMIT = 40_000_000


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_real_photo_decodes_to_rgb() -> None:
    image = decode_image(PHOTO.read_bytes(), max_pixels=LIMIT)
    assert image.mode == "RGB" and min(image.size) > 100


def test_exif_orientation_is_applied() -> None:
    photo = Image.open(PHOTO).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: must be rotated 90 degrees on decode
    decoded = decode_image(encode(photo, "JPEG", exif=exif.tobytes()), max_pixels=LIMIT)
    assert decoded.size == (photo.height, photo.width)


def test_cmyk_palette_and_alpha_become_rgb_on_white() -> None:
    photo = Image.open(PHOTO).convert("RGB")
    assert decode_image(encode(photo.convert("CMYK"), "JPEG"), max_pixels=LIMIT).mode == "RGB"
    assert decode_image(encode(photo.convert("P"), "PNG"), max_pixels=LIMIT).mode == "RGB"
    transparent = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    flat = decode_image(encode(transparent, "PNG"), max_pixels=LIMIT)
    assert flat.getpixel((5, 5)) == (255, 255, 255)


def test_animation_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    r, g, b = decode_image(data, max_pixels=LIMIT).getpixel((8, 8))
    assert r > 200 and b < 50


def test_truncated_and_non_images_are_refused() -> None:
    data = PHOTO.read_bytes()
    with pytest.raises(ImageError):
        decode_image(data[: len(data) // 3], max_pixels=LIMIT)
    with pytest.raises(ImageError, match="not an image"):
        decode_image(b"<html>not a photo</html>", max_pixels=LIMIT)
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"", max_pixels=LIMIT)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge canvas: a decompression bomb's calling card."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    body = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat = zlib.compress(b"\x00" * 64)
    body += struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    return b"\x89PNG\r\n\x1a\n" + body


def test_decompression_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(ImageError, match="over the limit"):
        decode_image(_png_header_only(100_000, 100_000), max_pixels=LIMIT)


def test_sniffing_uses_content_not_names() -> None:
    assert sniff_image_type(PHOTO.read_bytes()) == "jpeg"
    assert sniff_image_type(b"GIF89a....") == "gif"
    assert sniff_image_type(b"%PDF-1.4") is None


def test_model_input_is_padded_square_and_normalised() -> None:
    image = Image.new("RGB", (100, 50), (255, 255, 255))
    array = to_model_input(image, size_px=224, mean=127.0, std=128.0)
    assert array.shape == (3, 224, 224) and array.dtype == np.float32
    assert np.allclose(array, (255 - 127) / 128)
