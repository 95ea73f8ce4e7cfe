"""Where the square cell window goes on a cover: on a face first, on what stands out otherwise.

A TikTok cover is 9:16; a centred square keeps its middle 56 % and cuts the top
and bottom, where faces and titles usually sit. ``square_window`` slides the
square along the long side instead:

1. **Faces.** Skin-coloured blobs of a face's size are the candidates; OpenCV's
   frontal-face Haar cascade (it ships inside ``opencv-python-headless``) looks
   only inside them, on a slightly enlarged copy so that a face 8 % of the cover
   wide is still above the cascade's 24 px window. Scanning the whole image
   costs 3-6x the decode; scanning the candidates costs a few percent on covers
   without faces. The window is centred on the faces it can hold.
2. **Saliency** otherwise, the way smartcrop.js scores a crop: skin, edges and
   saturation, with more weight near the middle of the window than at its edges.

Everything runs on the small draft-decoded image the cell is cut from. Without
OpenCV (the Lambda zip leaves it out: 218 MB with NumPy), step 1 is skipped and
``detector_name()`` says so; it is part of the collage fingerprint, so a
collage made without faces is not mistaken for one made with them.

    left, top = square_window(image)   # the square's top-left corner in ``image``
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache
from typing import Any

from PIL import Image, ImageChops, ImageFilter

__all__ = ["detector_name", "square_window"]

_CELL = 6  # px of the draft image per cell of the skin grid
_SKIN_CELL_FRACTION = 0.35  # a cell is skin when this much of it is
# A face candidate: a skin blob between these fractions of the short side, wide or tall.
_FACE_MIN, _FACE_MAX = 0.05, 0.45
_HAAR_UPSCALE = 1.25
_HAAR_SCALE_STEP = 1.15
_HAAR_MIN_NEIGHBOURS = 3
_MAX_CANDIDATES = 4
# smartcrop.js weights: skin counts most, then edges, then saturation.
_SKIN_WEIGHT, _EDGE_WEIGHT, _SATURATION_WEIGHT = 1.8, 0.2, 0.3
_PROFILE_LENGTH = 96  # samples along the long side for the saliency search


def detector_name() -> str:
    """``faces+saliency`` with OpenCV installed, else ``saliency``."""
    return "faces+saliency" if _cascade() is not None else "saliency"


def square_window(image: Image.Image) -> tuple[int, int]:
    """The top-left corner of the square (side = the short side) to keep of ``image``."""
    width, height = image.size
    side = min(width, height)
    if width == height:
        return 0, 0
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    skin = _skin_mask(rgb)
    faces = _faces(rgb, skin)
    portrait = height > width
    length = height if portrait else width
    if faces:
        start = _window_over_faces(faces, portrait, side, length)
    else:
        start = _window_by_saliency(rgb, skin, portrait, side, length)
    return (0, start) if portrait else (start, 0)


# -- skin ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _skin_luts() -> tuple[list[int], list[int]]:
    # Chai & Ngan's skin box in YCbCr (Cb 77-127, Cr 133-173), as 0/255 lookups.
    cb = [255 if 77 <= v <= 127 else 0 for v in range(256)]
    cr = [255 if 133 <= v <= 173 else 0 for v in range(256)]
    return cb, cr


def _skin_mask(rgb: Image.Image) -> Image.Image:
    """255 where a pixel's chroma is skin-like, else 0 (mode L, the image's size)."""
    _, cb, cr = rgb.convert("YCbCr").split()
    cb_lut, cr_lut = _skin_luts()
    return ImageChops.multiply(cb.point(cb_lut), cr.point(cr_lut))


# -- faces -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _cascade() -> Any:
    try:
        import cv2
    except ImportError:
        return None
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cv2.setNumThreads(1)  # the cells are decoded in parallel already
    cascade = cv2.CascadeClassifier(path)
    return None if cascade.empty() else cascade


def _faces(rgb: Image.Image, skin: Image.Image) -> list[tuple[int, int, int, int]]:
    cascade = _cascade()
    if cascade is None:
        return []
    region = _skin_region(skin)
    if region is None:
        return []
    import cv2
    import numpy as np

    width, height = rgb.size
    short = min(width, height)
    x0, y0, x1, y1 = region
    gray = np.asarray(rgb.convert("L").crop(region))
    roi = cv2.resize(gray, None, fx=_HAAR_UPSCALE, fy=_HAAR_UPSCALE, interpolation=cv2.INTER_LINEAR)
    limit = int(short * _FACE_MAX * _HAAR_UPSCALE)
    found = []
    for x, y, w, h in cascade.detectMultiScale(
        roi,
        scaleFactor=_HAAR_SCALE_STEP,
        minNeighbors=_HAAR_MIN_NEIGHBOURS,
        minSize=(24, 24),
        maxSize=(limit, limit),
    ):
        found.append(
            (
                x0 + int(x / _HAAR_UPSCALE),
                y0 + int(y / _HAAR_UPSCALE),
                x0 + int((x + w) / _HAAR_UPSCALE),
                y0 + int((y + h) / _HAAR_UPSCALE),
            )
        )
    return found


def _skin_region(skin: Image.Image) -> tuple[int, int, int, int] | None:
    """The box around every skin-coloured cell, with a margin; None when there are none."""
    width, height = skin.size
    cols, rows = max(1, width // _CELL), max(1, height // _CELL)
    grid = skin.resize((cols, rows), Image.Resampling.BOX).point(
        lambda v: 255 if v >= 255 * _SKIN_CELL_FRACTION else 0
    )
    box = grid.getbbox()
    if box is None:
        return None
    margin = _CELL * 3
    return (
        max(0, box[0] * _CELL - margin),
        max(0, box[1] * _CELL - margin),
        min(width, box[2] * _CELL + margin),
        min(height, box[3] * _CELL + margin),
    )


def _window_over_faces(
    faces: list[tuple[int, int, int, int]], portrait: bool, side: int, length: int
) -> int:
    """The window start that holds the most face area, centred on what it holds."""
    spans = [(f[1], f[3]) if portrait else (f[0], f[2]) for f in faces]
    best, best_score = 0, -1.0
    for low, high in spans:
        for start in (
            (low + high) // 2 - side // 2,
            low - side // 10,
            high + side // 10 - side,
        ):
            start = max(0, min(start, length - side))
            held = sum(max(0, min(h, start + side) - max(lo, start)) * (h - lo) for lo, h in spans)
            centre = sum((lo + h) / 2 for lo, h in spans) / len(spans)
            score = held - abs(start + side / 2 - centre) * 1e-3
            if score > best_score:
                best, best_score = start, score
    return best


# -- saliency --------------------------------------------------------------------------


def _window_by_saliency(
    rgb: Image.Image, skin: Image.Image, portrait: bool, side: int, length: int
) -> int:
    edges = rgb.convert("L").filter(ImageFilter.FIND_EDGES)
    saturation = rgb.convert("HSV").getchannel("S")
    score = Image.merge("RGB", (skin, edges, saturation))
    # Means along the short side: a profile of how much stands out along the long one.
    samples = min(_PROFILE_LENGTH, length)
    size = (1, samples) if portrait else (samples, 1)
    profile_image = score.resize(size, Image.Resampling.BOX)
    profile = [
        _SKIN_WEIGHT * s + _EDGE_WEIGHT * e + _SATURATION_WEIGHT * t
        for s, e, t in profile_image.getdata()
    ]
    window = max(1, round(samples * side / length))
    best, best_score = 0, float("-inf")
    for start in range(0, samples - window + 1):
        total = 0.0
        for offset in range(window):
            # smartcrop.js's importance: full weight in the middle, less towards the edges.
            distance = abs(offset + 0.5 - window / 2) / (window / 2)
            total += profile[start + offset] * (1.0 - 0.6 * distance * distance)
        if total > best_score:
            best, best_score = start, total
    return min(length - side, round(best * length / samples))
