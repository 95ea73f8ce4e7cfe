"""Embedded ICC profiles: colours converted to sRGB before they reach a collage.

A cover saved in Display P3 or Adobe RGB (phones, editing tools) or a CMYK JPEG
with a press profile looks washed out or shifted when its numbers are read as
sRGB, which is what an untagged collage JPEG is shown as. So a tile whose
source carries a profile is converted through it with LittleCMS (Pillow's
ImageCms); sRGB profiles, missing profiles and profiles that do not fit the
image's mode leave the tile as it is. Conversion runs on the small tile, not
the decoded source, and each distinct profile is parsed once::

    tile = to_srgb(tile, source.info.get("icc_profile"))
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["to_srgb"]

# Modes LittleCMS converts here, and the mode of the sRGB result.
_OUTPUT_MODE = {"RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB", "L": "RGB"}


def to_srgb(tile: Image.Image, icc: bytes | None) -> Image.Image:
    """``tile`` in sRGB according to ``icc`` (the source's embedded profile), else unchanged."""
    if not icc or tile.mode not in _OUTPUT_MODE:
        return tile
    transform = _transform(bytes(icc), tile.mode)
    if transform is None:
        return tile
    from PIL import ImageCms

    converted = ImageCms.applyTransform(tile, transform)
    return converted if converted is not None else tile


@lru_cache(maxsize=32)
def _transform(icc: bytes, mode: str) -> Any:
    """The cached LittleCMS transform from ``icc`` to sRGB, or None when none applies.

    None for sRGB profiles (nothing to do), unreadable profiles, and profiles of
    another colour space than ``mode`` (an RGB profile on a CMYK JPEG): those
    images keep Pillow's plain conversion rather than fail.
    """
    import io

    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(source).lower().replace(" ", ""):
            return None
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        return ImageCms.buildTransform(
            source,
            srgb,
            mode,
            _OUTPUT_MODE[mode],
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            # Transforms are shared by the render threads; without its one-pixel
            # cache a LittleCMS transform is safe to use from several at once.
            flags=ImageCms.Flags.NOCACHE,
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None
