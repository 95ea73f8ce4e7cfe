"""Safe decoding of untrusted image bytes into collage cells. STUB."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

__all__ = ["ImageInfo", "load_cell", "probe"]


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int  # after EXIF orientation
    height: int


def probe(data: bytes, *, max_pixels: int, min_size: int) -> ImageInfo:
    raise NotImplementedError


def load_cell(data: bytes, size: int, *, max_pixels: int, min_size: int) -> Image.Image:
    raise NotImplementedError
