"""Content hashes and collage fingerprints. Pure.

A collage fingerprint names everything that decides the rendered bytes: the
images in grid order and the render settings. Two runs with the same fingerprint
would produce the same collage, so the second can be skipped::

    >>> fp = collage_fingerprint(["aa", "bb"], rows=5, cols=7, cell_size=200, quality=95)
    >>> fp == collage_fingerprint(["bb", "aa"], rows=5, cols=7, cell_size=200, quality=95)
    False
    >>> len(content_hash(b"cover bytes"))
    64
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

__all__ = ["RENDER_VERSION", "collage_fingerprint", "content_hash"]

RENDER_VERSION = 1
"""Bump when the renderer's output changes for the same inputs (resampling, layout,
encoder options): old fingerprints then no longer match and collages are redrawn."""


def content_hash(data: bytes) -> str:
    """SHA-256 hex digest of ``data``.

    >>> content_hash(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


def collage_fingerprint(
    image_hashes: Sequence[str],
    *,
    rows: int,
    cols: int,
    cell_size: int,
    quality: int,
    near_duplicates: int = 0,
    crop: str = "center",
    detector: str = "",
) -> str:
    """SHA-256 hex of a canonical JSON of the render inputs; image order matters.

    The order is part of the fingerprint because it decides which cell shows
    which cover: the same covers in another order are a different collage.

    >>> a = collage_fingerprint(["aa"], rows=1, cols=1, cell_size=200, quality=95)
    >>> a == collage_fingerprint(["aa"], rows=1, cols=1, cell_size=200, quality=90)
    False

    A smart crop names its ``detector`` too (``faces+saliency`` or ``saliency``:
    whether OpenCV was there), since the two place some windows differently. The
    centre crop adds no keys, so the fingerprints written before crops existed hold::

    >>> a == collage_fingerprint(["aa"], rows=1, cols=1, cell_size=200, quality=95, crop="center")
    True
    >>> smart = dict(rows=1, cols=1, cell_size=200, quality=95, crop="smart")
    >>> len({a, collage_fingerprint(["aa"], **smart, detector="saliency"),
    ...      collage_fingerprint(["aa"], **smart, detector="faces+saliency")})
    3
    """
    document: dict[str, object] = {
        "v": RENDER_VERSION,
        "images": list(image_hashes),
        "rows": rows,
        "cols": cols,
        "cell": cell_size,  # the key stays "cell": renaming it would re-render everything
        "quality": quality,
    }
    if near_duplicates:
        # Which covers were merged decides the images; the setting is named too, so a
        # change of it re-renders. Absent at 0, as before near-duplicates existed.
        document["near"] = near_duplicates
    if crop != "center":
        document["crop"] = crop
        document["detector"] = detector
    # Sorted keys, no whitespace, ASCII: one byte string per document, whatever
    # the dict order or the platform.
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
