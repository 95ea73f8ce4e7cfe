"""A small preview of a stored collage, for pages that show many of them.

A batch page of 30 creators used to load 30 full collages (1400 px wide, JPEG
quality 95, about 300-500 KB each) to show them in 300 px tiles. The preview is
``PREVIEW_WIDTH`` px wide, WebP: a few tens of KB. It is made from the collage's
own bytes, so it can be made later for a collage stored before previews existed.

>>> import io
>>> from PIL import Image
>>> buffer = io.BytesIO()
>>> Image.new("RGB", (1400, 200), (200, 30, 30)).save(buffer, "JPEG")
>>> data = render_preview(buffer.getvalue())
>>> data[8:12], Image.open(io.BytesIO(data)).size
(b'WEBP', (480, 69))
"""

from __future__ import annotations

import io

from PIL import Image, JpegImagePlugin, WebPImagePlugin  # noqa: F401

__all__ = ["PREVIEW_CONTENT_TYPE", "PREVIEW_WIDTH", "render_preview"]

PREVIEW_WIDTH = 480  # a grid tile is 260-420 CSS px wide; larger screens get the collage
PREVIEW_CONTENT_TYPE = "image/webp"
# Measured on the example's collages: q80 WebP is a tenth of the q95 JPEG's bytes
# at this size and shows no artefacts a tile would reveal.
_QUALITY = 80


def render_preview(collage: bytes, width: int = PREVIEW_WIDTH) -> bytes:
    """WebP bytes of ``collage`` (our own JPEG) scaled to ``width`` px, aspect kept.

    A collage narrower than ``width`` keeps its size.
    """
    with Image.open(io.BytesIO(collage), formats=["JPEG"]) as image:
        height = max(1, round(image.height * width / image.width))
        if image.width > width:
            # draft() lets libjpeg decode at 1/2, 1/4... of the size: less work to shrink.
            image.draft("RGB", (width, height))
            small = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
        else:
            small = image.convert("RGB")
    buffer = io.BytesIO()
    # method 2, not 4: 40 % less encoding time for 4 % more bytes (measured on 1400 x
    # 1000 collages: 23 vs 38 ms, 22.8 vs 22.0 KB); a batch makes one per creator.
    small.save(buffer, "WEBP", quality=_QUALITY, method=2)
    return buffer.getvalue()
