"""Recognise image formats by magic bytes (no Pillow needed).

The downloader decides "is this an image at all?" from the first bytes of the
body, never from the ``Content-Type`` header: servers label images
``application/octet-stream`` and serve HTML error pages as ``image/jpeg``.

Example::

    >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8))
    'png'
    >>> sniff_format(b"<!doctype html>") is None
    True
"""

from __future__ import annotations

__all__ = ["SNIFF_BYTES", "media_type", "sniff_format"]

SNIFF_BYTES = 32
"""How many leading bytes :func:`sniff_format` needs to decide every format."""

# TIFF: classic and BigTIFF, both byte orders (the prefixes Pillow accepts).
_TIFF_PREFIXES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# BMP: "BM" alone is too weak (plain text can start with it), so also require
# one of the known DIB header sizes at offset 14 (little-endian uint32).
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
# AVIF: an ISO-BMFF "ftyp" box naming an AVIF brand (still image or sequence),
# as the major brand or as a compatible one (the box lists brands after 16 bytes).
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
# HEIF/HEIC (HEVC stills and sequences, and the generic image brands).
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})


def sniff_format(head: bytes | bytearray) -> str | None:
    """Name the image format of a file from its first bytes, or None.

    Returns ``"jpeg"``, ``"png"``, ``"gif"``, ``"webp"``, ``"avif"``, ``"heic"``, ``"bmp"``
    or ``"tiff"``
    (the same vocabulary as :mod:`imgpipe.imaging.decode`, lower-cased). Pass
    at least :data:`SNIFF_BYTES` bytes when the file is that long; fewer bytes
    than a format's signature never match it.
    """
    head = bytes(head[:SNIFF_BYTES])
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        brands = _ftyp_brands(head)
        if brands & _AVIF_BRANDS:  # first: AVIF files name the generic HEIF brands too
            return "avif"
        if brands & _HEIF_BRANDS:
            return "heic"
    if head.startswith(_TIFF_PREFIXES):
        return "tiff"
    if head[:2] == b"BM" and len(head) >= 18:
        if int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
            return "bmp"
    return None


def _ftyp_brands(head: bytes) -> set[bytes]:
    """Major and compatible brands of the leading ftyp box, as far as ``head`` holds them."""
    box_size = int.from_bytes(head[:4], "big")
    end = min(len(head), box_size) if box_size >= 16 else 0
    brands = {head[8:12]}
    brands.update(head[i : i + 4] for i in range(16, end - 3, 4))
    return brands


def media_type(data: bytes) -> str:
    """The ``Content-Type`` of encoded image bytes, from their magic (JPEG when unknown)."""
    return f"image/{sniff_format(data[:SNIFF_BYTES]) or 'jpeg'}"
