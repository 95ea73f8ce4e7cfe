"""Generated test covers: every format and mode the pipeline must handle."""

from __future__ import annotations

import io

from PIL import Image


def solid(color: tuple[int, int, int], size: tuple[int, int] = (320, 480)) -> Image.Image:
    return Image.new("RGB", size, color)


def encode(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def jpeg(
    color: tuple[int, int, int] = (200, 30, 30),
    size: tuple[int, int] = (320, 480),
    quality: int = 90,
) -> bytes:
    return encode(solid(color, size), "JPEG", quality=quality)


def png(color: tuple[int, int, int] = (30, 200, 30), size: tuple[int, int] = (320, 480)) -> bytes:
    return encode(solid(color, size), "PNG")


def webp(color: tuple[int, int, int] = (30, 30, 200), size: tuple[int, int] = (320, 480)) -> bytes:
    return encode(solid(color, size), "WEBP", quality=90)
