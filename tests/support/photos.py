"""Photo-like test images: gradients, shapes and texture, different for each seed.

Solid colours make poor comparison tests (every metric says "identical"), so these
images have structure at several scales, like real covers::

    data = photo_jpeg(seed=3, size=(1200, 900))
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFilter

__all__ = ["encode_jpeg", "photo", "photo_jpeg"]


def photo(seed: int, size: tuple[int, int] = (960, 720)) -> Image.Image:
    rng = random.Random(seed)
    width, height = size
    top = tuple(rng.randrange(256) for _ in range(3))
    bottom = tuple(rng.randrange(256) for _ in range(3))
    gradient = Image.linear_gradient("L").resize(size)
    image = Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), gradient)
    draw = ImageDraw.Draw(image)
    for _ in range(18):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1 = x0 + rng.randrange(width // 10, width // 2)
        y1 = y0 + rng.randrange(height // 10, height // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    # Seeded texture (Image.effect_noise would use C's unseeded rand()): same seed, same bytes.
    noise = Image.frombytes("L", size, rng.randbytes(width * height)).convert("RGB")
    return Image.blend(image, noise, 0.08).filter(ImageFilter.GaussianBlur(1))


def encode_jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def photo_jpeg(seed: int, size: tuple[int, int] = (960, 720), quality: int = 92) -> bytes:
    return encode_jpeg(photo(seed, size), quality)
