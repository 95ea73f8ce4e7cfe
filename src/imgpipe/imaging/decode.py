"""Safe decoding of untrusted image bytes into collage tiles.

Two entry points, both safe to call from many threads at once (no shared
mutable state, no global Pillow settings touched):

- :func:`probe` reads only the header: format and (EXIF-oriented) size.
- :func:`load_tile` turns the bytes into a ``size`` x ``size`` RGB tile:
  center-cropped, resized, EXIF-oriented, alpha flattened onto white, colours
  converted to sRGB through an embedded ICC profile.

Both refuse bad input with :class:`~imgpipe.errors.ImageError` whose ``reason``
is a :class:`~imgpipe.domain.records.Reason`: ``not_an_image``, ``too_large``
(checked from the header, before any pixel memory is allocated), ``too_small``
or ``decode_error`` (truncated or corrupt data).

The bytes are opened by :mod:`imgpipe.imaging.safe_open` (why not plain
``Image.open``, and the size checks made from the header); this module turns
what it opens into pixels.
"""

from __future__ import annotations

import io  # noqa: F401  (the examples below use it)
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageFile, JpegImagePlugin

from imgpipe.domain.layout import center_crop_box
from imgpipe.imaging.colour import to_srgb
from imgpipe.imaging.safe_open import as_image_error as _as_image_error
from imgpipe.imaging.safe_open import open_checked as _open_checked

if TYPE_CHECKING:
    from imgpipe.imaging.budget import DecodeBudget

__all__ = ["ImageInfo", "load_tile", "load_fitted", "probe"]

# The filter depends on how much shrinking is left (measured against a
# full-resolution LANCZOS fit; Pillow's resampler is scalar C, so after
# decoding this is the largest cost):
# - below 2x, which is where a draft-decoded JPEG always lands, libjpeg's DCT
#   scaling has already low-passed the picture: an antialiased BILINEAR
#   scores 49 dB PSNR vs 51 dB for BICUBIC, in ~35% less time;
# - from 2x (PNG, WebP, GIF at full size) the filter shows: BICUBIC 54 dB vs
#   BILINEAR 51 dB, with a box-reduce first to within 2x of the target
#   (reducing_gap) that halves the cost for ~1 dB.
_SMALL_SHRINK = 2.0
_RESAMPLE_SMALL = Image.Resampling.BILINEAR
_RESAMPLE_LARGE = Image.Resampling.BICUBIC
_REDUCING_GAP = 2.0

# Fitting (compression, comparison): box-reduce first to within 3x of the target.
# Images with alpha or a palette above _BAND_FIT_PIXELS are flattened and reduced
# in bands of about _BAND_PIXELS, so they never need a second full-size copy.
_FIT_GAP = 3.0
_BAND_FIT_PIXELS = 4_000_000
_BAND_PIXELS = 2_000_000

_WHITE = (255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "LA", "La", "RGBa", "PA"})
_WIDE_GRAY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: lower-case format (``"jpeg"``) and displayed size.

    ``width`` and ``height`` are after EXIF orientation, so a phone photo
    stored landscape with orientation 6 reports as portrait.
    """

    format: str
    width: int
    height: int


def probe(data: bytes, *, max_pixels: int, min_size: int) -> ImageInfo:
    """Identify ``data`` from its header without decoding pixels.

    >>> buf = io.BytesIO()
    >>> Image.new("RGB", (320, 480), (200, 30, 30)).save(buf, "JPEG")
    >>> probe(buf.getvalue(), max_pixels=10**8, min_size=50)
    ImageInfo(format='jpeg', width=320, height=480)

    Raises :class:`ImageError` (``not_an_image``, ``too_large``, ``too_small``,
    ``decode_error``).
    """
    with _open_checked(data, max_pixels=max_pixels, min_size=min_size) as im:
        width, height = im.size
        if _orientation(im) in (5, 6, 7, 8):  # these rotate by 90 degrees
            width, height = height, width
        assert im.format is not None  # every plugin we open with sets it
        return ImageInfo(im.format.lower(), width, height)


def load_tile(
    data: bytes, size: int, *, max_pixels: int, min_size: int, crop: str = "center"
) -> Image.Image:
    """Decode ``data`` into an RGB ``size`` x ``size`` tile (square crop, resize).

    ``crop="center"`` keeps the centred square; ``"smart"`` slides it over the
    cover's faces, else over what stands out (:mod:`imgpipe.imaging.smartcrop`,
    run on the same small draft).

    JPEGs are decoded at the smallest DCT scale that still covers the tile, so
    a 1080x1920 cover becomes 270x480 pixels in libjpeg, never 2 megapixels.

    >>> buf = io.BytesIO()
    >>> Image.new("RGB", (320, 480), (30, 200, 30)).save(buf, "PNG")
    >>> tile = load_tile(buf.getvalue(), 200, max_pixels=10**8, min_size=50)
    >>> (tile.mode, tile.size, tile.getpixel((100, 100)))
    ('RGB', (200, 200), (30, 200, 30))

    Raises :class:`ImageError` like :func:`probe`, plus ``decode_error`` when
    the pixel data is truncated or corrupt.
    """
    if size < 1:
        raise ValueError(f"cell size must be positive, got {size}")
    with _open_checked(data, max_pixels=max_pixels, min_size=min_size) as im, _as_image_error():
        return _render_tile(im, size, smart=crop == "smart")


def load_fitted(
    data: bytes, max_size: int, *, max_pixels: int, budget: DecodeBudget | None = None
) -> Image.Image:
    """Decode ``data`` as RGB fitted inside ``max_size`` x ``max_size`` (aspect kept).

    The same guards as :func:`load_tile` (header-only size checks before any
    pixel is decoded, JPEG draft decoding, EXIF orientation, every mode to RGB
    with alpha on white); for compression and comparison previews. With a
    ``budget``, the decode waits for room for the pixels it is about to
    materialise (the header's size, after draft scaling) and keeps them until
    only the fitted image is left.

    >>> buf = io.BytesIO()
    >>> Image.new("RGB", (1600, 900), (30, 200, 30)).save(buf, "JPEG")
    >>> load_fitted(buf.getvalue(), 800, max_pixels=10**8).size
    (800, 450)
    """
    if max_size < 1:
        raise ValueError(f"max_size must be positive, got {max_size}")
    with _open_checked(data, max_pixels=max_pixels, min_size=1) as im, _as_image_error():
        if isinstance(im, JpegImagePlugin.JpegImageFile):
            im.draft("RGB", (max_size, max_size))  # sets im.size to the decoded size
        width, height = im.size
        with budget.hold(width * height) if budget is not None else nullcontext():
            im.load()
            orientation = _orientation(im)
            fitted = _fit(im, max_size)
    method = _TRANSPOSE.get(orientation)
    return fitted.transpose(method) if method is not None else fitted


def _fit(im: Image.Image, max_size: int) -> Image.Image:
    icc = im.info.get("icc_profile")
    width, height = im.size
    if width * height > _BAND_FIT_PIXELS and _converted_at_full_size(im):
        return _fit_in_bands(im, max_size, icc)
    source = _resizable(im)
    source.thumbnail((max_size, max_size), Image.Resampling.LANCZOS, reducing_gap=_FIT_GAP)
    return _to_rgb(to_srgb(source, icc))


def _converted_at_full_size(im: Image.Image) -> bool:
    """Modes that cost a second full-size copy before they can be resized.

    A palette becomes RGB(A) in ``_resizable``, and Pillow premultiplies alpha
    into a new full-size image before it reduces or resizes one.
    """
    return im.mode in _ALPHA_MODES or im.mode in ("P", "PA") or "transparency" in im.info


def _fit_in_bands(im: Image.Image, max_size: int, icc: bytes | None) -> Image.Image:
    """``thumbnail`` + ``_to_rgb`` for an image with alpha or a palette, a band at a time.

    Flattening onto white is linear per pixel, so flatten-then-shrink equals
    Pillow's premultiplied shrink-then-flatten (to within rounding); done in
    bands of rows, the only full-size image is the decoded one. Measured on a
    7999x7999 RGBA PNG: 525 MB peak for the whole-image way, 270 MB this way.
    """
    width, height = im.size
    size = _fitted_size(width, height, max_size)
    factor = max(1, int(min(width / size[0], height / size[1]) / _FIT_GAP))
    rows = max(1, _BAND_PIXELS // width // factor) * factor
    reduced = Image.new("RGB", (-(-width // factor), -(-height // factor)), _WHITE)
    for top in range(0, height, rows):
        band = im.crop((0, top, width, min(height, top + rows)))
        flat = _to_rgb(to_srgb(_resizable(band), icc))
        reduced.paste(flat.reduce(factor) if factor > 1 else flat, (0, top // factor))
    box = (0.0, 0.0, width / factor, height / factor)
    return reduced.resize(size, Image.Resampling.LANCZOS, box=box)


def _fitted_size(width: int, height: int, max_size: int) -> tuple[int, int]:
    """The size ``Image.thumbnail((max_size, max_size))`` gives, rounding included."""
    if width <= max_size and height <= max_size:
        return width, height
    aspect = width / height

    def nearest(number: float, error: Callable[[int], float]) -> int:
        return max(min(math.floor(number), math.ceil(number), key=error), 1)

    if aspect <= 1:
        return nearest(max_size * aspect, lambda n: abs(aspect - n / max_size)), max_size
    return max_size, nearest(max_size / aspect, lambda n: abs(aspect - max_size / n) if n else 0)


def _render_tile(im: ImageFile.ImageFile, size: int, *, smart: bool = False) -> Image.Image:
    if isinstance(im, JpegImagePlugin.JpegImageFile):  # also MPO
        # draft() picks the largest 1/1..1/8 scale that keeps both sides >= size,
        # so the square crop still has at least `size` pixels.
        im.draft("RGB", (size, size))
    im.load()  # explicit, so that truncation surfaces here and not mid-resize
    orientation = _orientation(im)
    source = _resizable(im)
    if smart:
        # An off-centre window does not map onto itself under a transpose (a face at
        # the top of the displayed cover is at the left of a rotated one), so the
        # draft is turned upright first: ~0.2 ms on a 270x480 draft, only when needed.
        method = _TRANSPOSE.get(orientation)
        if method is not None:
            source, orientation = source.transpose(method), 1
        box = _smart_box(source)
    else:
        box = center_crop_box(*source.size)
    shrink = (box[2] - box[0]) / size
    if shrink == 1:
        tile = source.crop(box)  # e.g. 400x600 drafted to 200x300: nothing to filter
    else:
        tile = source.resize(
            (size, size),
            _RESAMPLE_SMALL if shrink < _SMALL_SHRINK else _RESAMPLE_LARGE,
            box=box,
            reducing_gap=_REDUCING_GAP,
        )
    tile = _to_rgb(to_srgb(tile, im.info.get("icc_profile")))
    # Centre crop: orientation is applied to the small tile, not the source: every
    # EXIF transpose maps the centered square onto the centered square, so this is
    # the same picture (to within one source pixel) for a fraction of the work.
    method = _TRANSPOSE.get(orientation)
    return tile.transpose(method) if method is not None else tile


def _smart_box(source: Image.Image) -> tuple[int, int, int, int]:
    from imgpipe.imaging.smartcrop import square_window  # its OpenCV only when it runs

    side = min(source.size)
    left, top = square_window(source)
    return left, top, left + side, top + side


def _orientation(im: Image.Image) -> int:
    """EXIF (or XMP) orientation 1-8; 1 when absent or unreadable."""
    try:
        # The base implementation reads what the header gave us; PNG's override
        # would decode the whole image looking for a late eXIf chunk.
        value = Image.Image.getexif(im).get(_ORIENTATION_TAG, 1)
    except Exception:
        return 1  # broken metadata must not cost us an otherwise good picture
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _resizable(im: Image.Image) -> Image.Image:
    """Bring modes that resize() would treat wrongly into one it handles well."""
    mode = im.mode
    if mode in ("P", "PA") or "transparency" in im.info:
        # Palette indices can't be interpolated; tRNS becomes a real alpha band.
        has_alpha = mode == "PA" or "transparency" in im.info
        return im.convert("RGBA" if has_alpha else "RGB")
    if mode == "1":
        return im.convert("L")  # resize() would fall back to NEAREST
    if mode in _WIDE_GRAY_MODES:
        return _to_8bit_gray(im)
    return im


def _to_8bit_gray(im: Image.Image) -> Image.Image:
    # convert("L") clips wide values at 255 instead of scaling them, which would
    # turn almost any 16-bit picture white.
    wide = im if im.mode in ("I", "F") else im.convert("I")
    high = wide.getextrema()[1]
    assert isinstance(high, (int, float))  # single-band extrema are plain numbers
    if im.mode.startswith("I;16") or high > 255:
        wide = wide.point(lambda value: value * (1 / 256))
    return wide.convert("L")


def _to_rgb(tile: Image.Image) -> Image.Image:
    if tile.mode == "RGB":
        return tile
    if tile.mode in _ALPHA_MODES:
        canvas = Image.new("RGBA", tile.size, (*_WHITE, 255))
        canvas.alpha_composite(tile.convert("RGBA"))
        return canvas.convert("RGB")
    return tile.convert("RGB")  # L, CMYK (Adobe inversion already undone), YCbCr...
