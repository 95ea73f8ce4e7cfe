"""Deterministic test covers, generated in memory: every kind the pipeline must handle.

Every public function returns the encoded file as ``bytes``, the same for the
same arguments on every run, so tests can serve them over HTTP, write them to
a folder or hand them straight to :func:`imgpipe.imaging.decode.load_tile`::

    from tests.support.covers import RED, BLUE, exif_rotated_jpeg, solid_jpeg

    data = solid_jpeg(RED, (320, 480))          # a plain portrait JPEG
    data = exif_rotated_jpeg(6, left=RED, right=BLUE)  # displays red on top

Colours are chosen far apart so that JPEG/WebP loss never blurs one into
another; compare decoded pixels with :func:`color_close` (a per-channel
tolerance) rather than exactly, except for lossless formats.

Well-formed covers: :func:`solid_jpeg`, :func:`solid_png`, :func:`solid_webp`,
:func:`solid_avif`, :func:`solid_heic`, :func:`banded_png`, :func:`cmyk_jpeg`,
:func:`exif_rotated_jpeg`, :func:`exif_rotated_png`,
:func:`palette_png`, :func:`rgba_png`, :func:`la_png`, :func:`gray_png`,
:func:`gray_jpeg`, :func:`bilevel_png`, :func:`gray16_png`, :func:`gray16_tiff`,
:func:`gray32_tiff`, :func:`animated_gif`, :func:`animated_webp`,
:func:`noisy_jpeg`.
Refused covers: :func:`tiny_png` (too small), :func:`bomb_png` / :func:`bomb_gif` /
:func:`bomb_webp` / :func:`bomb_avif` / :func:`bomb_heic`
(huge header, tiny file), :func:`truncated_jpeg`, :func:`html_page`.
"""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image

from tests.support.images import encode, solid

__all__ = [
    "BLUE",
    "GREEN",
    "RED",
    "WHITE",
    "YELLOW",
    "Color",
    "animated_gif",
    "animated_webp",
    "banded_png",
    "bilevel_png",
    "bomb_gif",
    "bomb_png",
    "bomb_avif",
    "bomb_heic",
    "bomb_webp",
    "cmyk_jpeg",
    "color_close",
    "exif_rotated_jpeg",
    "exif_rotated_png",
    "gray16_png",
    "gray16_tiff",
    "gray32_tiff",
    "gray_jpeg",
    "gray_png",
    "html_page",
    "la_png",
    "noisy_jpeg",
    "palette_png",
    "rgba_png",
    "solid_jpeg",
    "solid_png",
    "solid_avif",
    "solid_heic",
    "solid_webp",
    "tiny_png",
    "truncated_jpeg",
]

Color = tuple[int, int, int]

RED: Color = (200, 30, 30)
GREEN: Color = (30, 180, 40)
BLUE: Color = (30, 40, 200)
YELLOW: Color = (230, 220, 30)
WHITE: Color = (255, 255, 255)

PORTRAIT = (320, 480)
LANDSCAPE = (480, 320)


def color_close(actual: object, expected: Color, tol: int = 12) -> bool:
    """True when ``actual`` (a pixel from ``getpixel``) is within ``tol`` per channel."""
    if not isinstance(actual, tuple) or len(actual) != len(expected):
        return False
    return all(abs(int(a) - b) <= tol for a, b in zip(actual, expected, strict=True))


# -- well-formed covers ------------------------------------------------------


def solid_jpeg(color: Color = RED, size: tuple[int, int] = PORTRAIT, quality: int = 95) -> bytes:
    """One colour, baseline JPEG."""
    return encode(solid(color, size), "JPEG", quality=quality)


def solid_png(color: Color = GREEN, size: tuple[int, int] = PORTRAIT) -> bytes:
    """One colour, 8-bit RGB PNG (lossless: colours come back exactly)."""
    return encode(solid(color, size), "PNG")


def solid_webp(
    color: Color = BLUE, size: tuple[int, int] = PORTRAIT, lossless: bool = False
) -> bytes:
    """One colour WebP; lossy by default (VP8), ``lossless=True`` gives VP8L."""
    return encode(solid(color, size), "WEBP", quality=90, lossless=lossless)


def solid_avif(color: Color = RED, size: tuple[int, int] = PORTRAIT) -> bytes:
    """One colour AVIF (lossy AV1 still image)."""
    return encode(solid(color, size), "AVIF", quality=90)


def solid_heic(color: Color = RED, size: tuple[int, int] = PORTRAIT) -> bytes:
    """One colour HEIC (HEVC still image, as phones and TikTok's CDN serve covers)."""
    from pillow_heif import from_pillow

    buffer = io.BytesIO()
    from_pillow(solid(color, size)).save(buffer, quality=90)
    return buffer.getvalue()


def bomb_heic(width: int = 9_000, height: int = 9_000) -> bytes:
    """A real small HEIC whose 'ispe' box claims ``width`` x ``height`` (81 MP by default)."""
    data = solid_heic(RED, (64, 64))
    at = data.index(b"ispe") + 8
    return data[:at] + struct.pack(">II", width, height) + data[at + 8 :]


def bomb_avif(width: int = 9_000, height: int = 9_000) -> bytes:
    """A real small AVIF whose 'ispe' box claims ``width`` x ``height`` (81 MP by default).

    libavif reports the claimed size when parsing, before any pixel is decoded:
    the default sits above imgpipe's 64 MP limit and below libavif's own.
    """
    data = solid_avif(RED, (64, 64))
    at = data.index(b"ispe") + 8  # box type, then version and flags
    return data[:at] + struct.pack(">II", width, height) + data[at + 8 :]


def banded_png(
    colors: tuple[Color, Color, Color] = (BLUE, RED, GREEN), size: tuple[int, int] = (200, 600)
) -> bytes:
    """Three equal bands along the long side: the center crop shows only ``colors[1]``."""
    width, height = size
    image = Image.new("RGB", size)
    for i, color in enumerate(colors):
        if height >= width:
            band = (0, i * height // 3, width, (i + 1) * height // 3)
        else:
            band = (i * width // 3, 0, (i + 1) * width // 3, height)
        image.paste(color, band)
    return encode(image, "PNG")


def cmyk_jpeg(
    cmyk: tuple[int, int, int, int] = (0, 255, 255, 0), size: tuple[int, int] = PORTRAIT
) -> bytes:
    """A CMYK JPEG (default: pure red ink). Pillow writes CMYK Adobe-style, inverted."""
    return encode(Image.new("CMYK", size, cmyk), "JPEG", quality=95)


def exif_rotated_jpeg(
    orientation: int = 6,
    *,
    left: Color = RED,
    right: Color = BLUE,
    size: tuple[int, int] = LANDSCAPE,
) -> bytes:
    """Stored landscape, ``left`` half | ``right`` half, tagged with ``orientation``.

    Displayed correctly: orientation 6 (rotate 90 clockwise) puts ``left`` on
    top and ``right`` at the bottom; orientation 8 the other way round;
    orientation 3 swaps left and right.
    """
    return encode(_halves(left, right, size), "JPEG", quality=95, exif=_exif(orientation))


def exif_rotated_png(
    orientation: int = 6,
    *,
    left: Color = RED,
    right: Color = BLUE,
    size: tuple[int, int] = LANDSCAPE,
) -> bytes:
    """Like :func:`exif_rotated_jpeg` but a lossless PNG with an eXIf chunk."""
    return encode(_halves(left, right, size), "PNG", exif=_exif(orientation))


def palette_png(color: Color = RED, size: tuple[int, int] = PORTRAIT) -> bytes:
    """Mode P: top half transparent (index 0 is black underneath), bottom half ``color``."""
    width, height = size
    image = Image.new("P", size, 0)
    image.putpalette([0, 0, 0, *color] + [0, 0, 0] * 254)
    image.paste(1, (0, height // 2, width, height))
    return encode(image, "PNG", transparency=0)


def rgba_png(color: Color = BLUE, size: tuple[int, int] = PORTRAIT) -> bytes:
    """RGBA: top half fully transparent black, bottom half opaque ``color``."""
    width, height = size
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    image.paste((*color, 255), (0, height // 2, width, height))
    return encode(image, "PNG")


def la_png(level: int = 60, size: tuple[int, int] = PORTRAIT) -> bytes:
    """LA: top half fully transparent black, bottom half opaque gray ``level``."""
    width, height = size
    image = Image.new("LA", size, (0, 0))
    image.paste((level, 255), (0, height // 2, width, height))
    return encode(image, "PNG")


def gray_png(level: int = 90, size: tuple[int, int] = PORTRAIT) -> bytes:
    """Mode L PNG."""
    return encode(Image.new("L", size, level), "PNG")


def gray_jpeg(level: int = 90, size: tuple[int, int] = PORTRAIT) -> bytes:
    """Single-component (grayscale) JPEG."""
    return encode(Image.new("L", size, level), "JPEG", quality=95)


def bilevel_png(size: tuple[int, int] = PORTRAIT) -> bytes:
    """Mode 1: top half black, bottom half white."""
    width, height = size
    image = Image.new("1", size, 0)
    image.paste(1, (0, height // 2, width, height))
    return encode(image, "PNG")


def gray16_png(level: int = 0x8000, size: tuple[int, int] = PORTRAIT) -> bytes:
    """16-bit grayscale PNG (opens as I;16); ``level`` 0x8000 reads as 8-bit 128."""
    return encode(Image.new("I;16", size, level), "PNG")


def gray16_tiff(level: int = 0x8000, size: tuple[int, int] = PORTRAIT) -> bytes:
    """16-bit big-endian grayscale TIFF (opens as I;16B)."""
    return encode(Image.new("I;16B", size, level), "TIFF")


def gray32_tiff(level: int = 0x8000, size: tuple[int, int] = PORTRAIT) -> bytes:
    """32-bit integer grayscale TIFF (opens as I) holding 16-bit-range values."""
    return encode(Image.new("I", size, level), "TIFF")


def animated_gif(
    colors: tuple[Color, ...] = (RED, GREEN), size: tuple[int, int] = PORTRAIT
) -> bytes:
    """One frame per colour; a cell must show the first."""
    frames = [solid(color, size) for color in colors]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def animated_webp(
    colors: tuple[Color, ...] = (RED, GREEN), size: tuple[int, int] = PORTRAIT
) -> bytes:
    """Animated lossless WebP, one frame per colour; a cell must show the first."""
    frames = [solid(color, size) for color in colors]
    return encode(
        frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True
    )


def noisy_jpeg(size: tuple[int, int] = (640, 960), seed: int = 0, quality: int = 90) -> bytes:
    """Gradient plus seeded noise: a JPEG whose scan data is most of the file."""
    width, height = size
    noise = Image.frombytes("L", size, random.Random(seed).randbytes(width * height))
    ramp = Image.linear_gradient("L").resize(size)
    image = Image.merge("RGB", (ramp, noise, ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM)))
    return encode(image, "JPEG", quality=quality)


# -- covers that must be refused ---------------------------------------------


def tiny_png(size: tuple[int, int] = (20, 20), color: Color = RED) -> bytes:
    """A valid image below any sensible ``min_size``."""
    return solid_png(color, size)


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A PNG header claiming ``width`` x ``height`` 1-bit pixels in ~100 bytes.

    Decoding it would need gigabytes; a safe reader refuses it from the header.
    The IDAT holds only a few rows, so a reader that tried would fail late.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit gray
    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed pixels
    idat = zlib.compress(row * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def bomb_gif(width: int = 40_000, height: int = 40_000) -> bytes:
    """A GIF whose logical screen claims ``width`` x ``height`` (one 1x1 frame inside)."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0)  # 2-colour table
    palette = bytes([0, 0, 0, 255, 255, 255])
    frame = b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + palette + frame + b";"


def bomb_webp(width: int = 10_000, height: int = 10_000) -> bytes:
    """A WebP (VP8X) header claiming a ``width`` x ``height`` canvas, no pixel data.

    The default 100 MP sits between typical app limits and Pillow's own bomb
    error threshold, where Pillow's plugin would allocate the canvas on open.
    """
    vp8x = (
        bytes([0, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    )
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def truncated_jpeg(size: tuple[int, int] = (640, 960)) -> bytes:
    """The first half of :func:`noisy_jpeg`: headers intact, scan data cut short."""
    data = noisy_jpeg(size)
    return data[: len(data) // 2]


def html_page() -> bytes:
    """What a CDN returns instead of an image (a login wall or error page)."""
    return (
        b"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head>"
        b"<body><h1>Forbidden</h1><p>You don't have permission.</p></body></html>\n"
    )


def _halves(left: Color, right: Color, size: tuple[int, int]) -> Image.Image:
    width, height = size
    image = Image.new("RGB", size, right)
    image.paste(left, (0, 0, width // 2, height))
    return image


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation  # ExifTags.Base.Orientation
    return exif.tobytes()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)
