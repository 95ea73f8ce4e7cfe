"""Opening untrusted image bytes: the header read, the format known, the size checked.

Why not plain ``Image.open``: it runs Pillow's decompression-bomb check, which
*warns* (a global side channel; silencing it needs ``warnings.catch_warnings``,
which is not thread-safe) and, for WebP, lets the decoder allocate the canvas
before that check. It also tries every format Pillow knows, including ones
that shell out (EPS -> Ghostscript). We open with the plugins of the six web
formats ourselves and check the size against our own limit instead.

This is the guard every decode passes first (:mod:`imgpipe.imaging.decode`
turns what it opens into tiles and fitted images), kept apart so the rules of
what may be opened read in one place; :func:`as_image_error` is the one seam
where whatever Pillow raises on untrusted bytes becomes a reason code.

Example::

    >>> open_checked(b"<!doctype html>", max_pixels=10**8, min_size=1)
    Traceback (most recent call last):
    ...
    imgpipe.errors.ImageError: not_an_image: 15 bytes, unknown format
    >>> buf = io.BytesIO()
    >>> Image.new("RGB", (40, 30)).save(buf, "PNG")
    >>> open_checked(buf.getvalue(), max_pixels=10**8, min_size=50)
    Traceback (most recent call last):
    ...
    imgpipe.errors.ImageError: too_small: 40x30 is below 50 px
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

# Importing the plugins registers them in Image.OPEN; we look them up there.
from PIL import (  # noqa: F401
    AvifImagePlugin,
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from imgpipe.domain.records import Reason
from imgpipe.errors import ImageError
from imgpipe.imaging.formats import SNIFF_BYTES, sniff_format

__all__ = ["as_image_error", "open_checked"]

# Same vocabulary as imaging.formats.sniff_format, in Pillow's registry spelling.
_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "AVIF", "HEIF", "BMP", "TIFF")
_HEAD = 16  # bytes Pillow's accept() functions look at
_READ_MAX = 8 << 20  # bytes Pillow reads (and decodes) at once


def open_checked(data: bytes, *, max_pixels: int, min_size: int) -> ImageFile.ImageFile:
    """Open the header and enforce the size limits; the caller closes the image."""
    im = _open(data, max_pixels)
    width, height = im.size
    if width * height > max_pixels:
        im.close()
        raise ImageError(Reason.TOO_LARGE, f"{width}x{height} exceeds {max_pixels} pixels")
    if min(width, height) < min_size:
        im.close()
        raise ImageError(Reason.TOO_SMALL, f"{width}x{height} is below {min_size} px")
    return im


def _open(data: bytes, max_pixels: int) -> ImageFile.ImageFile:
    head = bytes(data[:_HEAD])
    failure = "unknown format"
    for name in _FORMATS:
        if name == "HEIF" and name not in Image.OPEN:
            if sniff_format(data[:SNIFF_BYTES]) != "heic":
                continue
            _register_heif()
        factory, accept = Image.OPEN[name]
        if accept is not None and accept(head) is not True:
            continue
        if name == "WEBP":
            # Pillow's WebP plugin allocates the whole canvas while opening.
            _refuse_large_webp(data, max_pixels)
        with as_image_error():
            try:
                image = factory(io.BytesIO(data), "")
                # One read and one decode call for the whole cover instead of 64 KB
                # pieces: libjpeg restarts its row on every piece that ends mid-way
                # (15 % of a 264 KB cover's decode, measured), and each call takes
                # the GIL back from the other decode threads. Capped: a huge PNG's
                # bytes are not copied whole a second time.
                image.decodermaxblock = max(image.decodermaxblock, min(len(data), _READ_MAX))
                return image
            except (SyntaxError, IndexError, TypeError, struct.error) as exc:
                # What Image.open treats as "not this format": try the next one.
                failure = f"{name}: {exc}"
    raise ImageError(Reason.NOT_AN_IMAGE, f"{len(data)} bytes, {failure}")


@lru_cache(maxsize=1)
def _register_heif() -> None:
    """Teach Pillow HEIF/HEIC (pillow-heif, ~60 ms to import): once, when the first arrives."""
    from pillow_heif import register_heif_opener

    register_heif_opener(thumbnails=False)


@contextmanager
def as_image_error() -> Iterator[None]:
    """The seam where whatever Pillow raises on untrusted bytes becomes one reason code."""
    try:
        yield
    except (ImageError, MemoryError):
        raise  # ours already, or an operational limit rather than a property of the image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # A GIF frame may grow the canvas past its header; Pillow checks that itself.
        raise ImageError(Reason.TOO_LARGE, str(exc)) from exc
    except Exception as exc:
        # OSError for truncation, ValueError, SyntaxError, struct.error, EOFError...
        raise ImageError(Reason.DECODE_ERROR, f"{type(exc).__name__}: {exc}") from exc


def _refuse_large_webp(data: bytes, max_pixels: int) -> None:
    size = _webp_canvas(data[:30])
    if size is None:
        raise ImageError(Reason.DECODE_ERROR, "WebP header without a readable canvas size")
    width, height = size
    if width * height > max_pixels:
        raise ImageError(Reason.TOO_LARGE, f"{width}x{height} exceeds {max_pixels} pixels")


def _webp_canvas(head: bytes) -> tuple[int, int] | None:
    """Canvas size from the first chunk of a RIFF/WEBP file (RFC 9649)."""
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", head, 26)
        return width & 0x3FFF, height & 0x3FFF  # top bits are upscaling hints
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None
