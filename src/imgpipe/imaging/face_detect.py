"""Faces on a small cover image: skin-coloured blobs first, OpenCV's Haar cascade inside them.

OpenCV (``opencv-python-headless``, the ``smart`` extra) is imported by
:func:`load_cascade`, the first time a smart crop runs, never at import; without
it :func:`load_cascade` is None and :func:`find_faces` finds nothing (the Lambda
zip leaves OpenCV out: with NumPy it is 218 MB unzipped).

Why not scan the whole draft: the cascade over a 270x480 draft, even at only the
sizes of a cover's face, costs 2x the draft decode on flat covers and 10-45x on
photographs (measured: ~10 ms, and 40-170 ms). A face is a skin-coloured blob,
so the skin of the 1/4-size copy is labelled (``connectedComponentsWithStats``,
microseconds), blobs without a face's sharp marks (eyes, brows, mouth) are
dropped, and the cascade looks only around the few left. When skin-coloured
cells are most of the picture (a warm backdrop, wood, a ginger cat), the face
merges into the backdrop's blob; then the three face-sized regions with the most
sharp detail on skin colours are scanned instead.

When that finds nothing, a face may still hide in skin colours: merged with an
orange suit and a blurred copy of the photo behind it (covers composed the way
examples/make_examples.py composes them), or not skin-coloured itself. If the
small copy has sharp detail on skin colours somewhere (faceless covers rarely do),
the draft is scanned there, shrunken so that the smallest face sought (12 % of the
short side) is just above the cascade's window, for faces 12-50 % wide (close-ups
too), in bands of 2x from the largest, stopping at the first band that makes a
face: ~2-30 ms a cover, not 40-170. Measured (README, "Smart crop"): 58 of 60
generated faces framed, and 60 of 60 covers composed like the examples; on the 35
benchmark covers the whole smart window costs ~1 ms against a 4.6-6.1 ms decode.

    faces = find_faces(draft, draft.reduce(4))   # [Face(box, votes), ...] in draft pixels
"""

from __future__ import annotations

from typing import Any

from PIL import Image

# The cascade's mechanics (loading, one classifier a thread, scanning a size range)
# live in .cascade; this module decides where to look.
from imgpipe.imaging.cascade import (
    Box,
    Face,
    cascade_at,
    load_cascade,
    thread_cascade,
)

__all__ = ["Box", "Face", "find_faces", "load_cascade"]

# Skin box of Chai & Ngan in YCrCb: Cr 133-173, Cb 77-127.
_SKIN_LOW, _SKIN_HIGH = (0, 133, 77), (255, 173, 127)
# A candidate blob's width, as a fraction of the short side: faces of 8-15 % of the
# cover's width leave blobs of ~5-15 % (hair and ears are not skin); larger ones
# are close-ups, up to half the frame.
_BLOB_MIN, _BLOB_MAX = 0.035, 0.5
_BLOB_MAX_ASPECT = 2.6  # height / width: a face with its neck, not an arm
_MAX_CANDIDATES = 4  # the largest blobs; more would make a skin-rich cover expensive
_MARGIN = 0.06  # of the short side, around a blob: a face reaches past its skin (hair, ears)
_SMALL_BLOB_MAX = 0.25  # a wider blob is not a face 7-17 % wide (with its neck)
_BLOB_SCALE_STEP = 1.25  # around a blob: as accurate as 1.15 on the 60 covers, 1/3 cheaper
_SHARPNESS_MIN = 18.0  # mean |Laplacian| of a blob worth scanning for a face
_SHARP_WIDTH = 32  # px: a blob is judged at this width
# Above this share of skin-coloured cells (warm backdrops, a cat, wood) a face
# merges into the backdrop's blob: the cascade scans the sharpest skin-coloured
# regions instead, at the sizes of a face 7-17 % of the short side.
_SKIN_GATE = 0.4
_WHOLE_MIN, _WHOLE_MAX = 0.07, 0.17
# Three regions of 12 % of the short side plus 8 % around: on the 40 skin-rich test
# covers 38-39 faces found (the whole-draft scan: 40) at 1/6 of its cost. Two regions
# or a 6 % margin lost 2-5 more faces; scale step 1.25 in them lost 1-2 more.
_REGIONS, _REGION_SIZE, _REGION_MARGIN = 3, 0.12, 0.08
_REGION_STEP = 1.2
# When the passes above find nothing: faces 12-50 % of the short side where skin
# colours are sharp, the draft shrunken (the smallest face to FACE_PX), for a face
# merged with skin-coloured surroundings into one blob (an orange suit, a blurred
# copy of the photo behind it). On the 60 composed covers (faces 12-30 % of the
# width): 59 found at 0.12 and step 1.2; 57 at 0.13, or at step 1.25 (1/5 cheaper).
_MEDIUM_MIN, _MEDIUM_STEP = 0.12, 1.2
# Scanned in bands of 2x (12-24 %, 24-48 %, 48-50 %), the largest first, stopping at the
# first band that makes a face: on the 60 composed covers 59 found either way, the
# median cost 17 -> 10 ms; bands of 2.2x found 57, of 1.7x 51 (OpenCV's 1 px slide
# past twice its window gives a face the votes it needs, so each band keeps one).
_MEDIUM_BAND = 2.0
# Scanned around the cells that score at least half the best, plus 15 % of the short
# side (a face reaches past its sharp skin): 59 found, ~17 ms a cover, where the
# whole draft cost ~25 ms; 0.7 of the best found 52, a reach of 0.1 57.
_EXTENT_SHARE, _EXTENT_REACH = 0.5, 0.15
# The least best score (sharpness x skin share, on the small copy) worth that scan.
_SHARP_SKIN_MIN = 38.0


def find_faces(rgb: Image.Image, small: Image.Image) -> list[Face]:
    """Face boxes in ``rgb`` (an RGB image), [] when none or without OpenCV.

    ``small`` is ``rgb`` box-reduced by a whole factor (the skin grid's cells).
    """
    if load_cascade() is None:
        return []
    cascade = thread_cascade()
    import cv2
    import numpy as np

    short = min(rgb.size)
    cell = round(rgb.width / small.width)  # reduce() rounds the size up
    skin = cv2.inRange(cv2.cvtColor(np.asarray(small), cv2.COLOR_RGB2YCrCb), _SKIN_LOW, _SKIN_HIGH)
    skin_cells = cv2.countNonZero(skin)
    skin_rich = skin_cells > _SKIN_GATE * skin.size
    if not skin_rich:
        found = [
            face
            for blob in _skin_blobs(skin, cell, short, cv2)
            for face in _scan(rgb, blob, cascade, cv2)
        ]
        if found or not skin_cells:
            return found
    # Sharp detail on skin colours, judged on the small copy (0.1 ms: on the draft
    # itself, for the faceless benchmark covers, it cost 0.6 ms a cover).
    side = _region_side(short, cell)
    small_gray = cv2.cvtColor(np.asarray(small), cv2.COLOR_RGB2GRAY)
    promise = _sharp_skin_score(small_gray, skin, side, cv2, np)
    if float(promise.max()) < _SHARP_SKIN_MIN:
        # No sharp detail on skin colours (a faceless cover, a blurred warm backdrop):
        # no face the passes below could find. Its best score was 3-29 on the 35
        # benchmark covers, 48-130 on the 60 composed ones, 63-89 on the other faces.
        return []
    gray = np.asarray(rgb.convert("L"))
    if skin_rich:
        found = _scan_skin_rich(gray, skin, cell, cascade, cv2, np)
        if found:
            return found
    # The face merged with skin-coloured surroundings (an orange suit, a blurred copy
    # of the photo behind it) into one blob, or is not skin-coloured itself (a cool
    # grade): the draft where skin colours are sharp, shrunken so that the smallest
    # face sought is FACE_PX.
    left, top, right, bottom = _sharp_skin_extent(promise, gray.shape, cell, short, np)
    found = cascade_at(
        gray[top:bottom, left:right],
        _MEDIUM_MIN * short,
        _BLOB_MAX * short,
        cascade,
        cv2,
        _MEDIUM_STEP,
        large_first=True,
        band=_MEDIUM_BAND,
    )
    return [face.moved(left, top) for face in found]


def _sharp_skin_extent(score: Any, shape: tuple[int, int], cell: int, short: int, np: Any) -> Box:
    """The box (in image pixels) around every cell of ``score`` that scores at least
    _EXTENT_SHARE of the best, plus a face's reach."""
    ys, xs = np.nonzero(score >= _EXTENT_SHARE * float(score.max()))
    margin = round(_EXTENT_REACH * short)
    height, width = shape
    return (
        max(0, int(xs.min()) * cell - margin),
        max(0, int(ys.min()) * cell - margin),
        min(width, (int(xs.max()) + 1) * cell + margin),
        min(height, (int(ys.max()) + 1) * cell + margin),
    )


def _scan_skin_rich(gray: Any, skin: Any, cell: int, cascade: Any, cv2: Any, np: Any) -> list[Face]:
    """Faces of a cover's size on a picture mostly of skin colours (a warm backdrop,
    wood, a ginger cat), where the face's blob merges into the backdrop's.

    The cascade over the whole draft cost 40-170 ms here (10-45x the decode). Instead
    it scans the few face-sized regions with the most sharp detail on skin colours (a
    face has eyes, brows and a mouth); the caller scans the shrunken draft for larger
    faces when they hold none.
    """
    short = min(gray.shape)
    margin = round(_REGION_MARGIN * short)
    low, high = _WHOLE_MIN * short, _WHOLE_MAX * short
    found = []
    side = _region_side(short, cell)
    # Sharpness from the draft itself, not the small copy: the regions were tuned so.
    sharpness = cv2.convertScaleAbs(cv2.Laplacian(gray, cv2.CV_16S))
    grid = cv2.resize(sharpness, (skin.shape[1], skin.shape[0]), interpolation=cv2.INTER_AREA)
    score = _sharp_skin_score(grid, skin, side, cv2, np, laplacian=False)
    for left, top, right, bottom in _sharp_skin_regions(score, gray.shape, cell, side, margin, np):
        region = gray[top:bottom, left:right]
        found += [
            f.moved(left, top) for f in cascade_at(region, low, high, cascade, cv2, _REGION_STEP)
        ]
    return found


def _sharp_skin_score(
    gray: Any, skin: Any, side: int, cv2: Any, np: Any, laplacian: bool = True
) -> Any:
    """Per skin-grid cell: the mean sharpness (|Laplacian| of ``gray``, a grid-sized
    image, or ``gray`` itself without ``laplacian``) times the skin share, over the
    ``side``-cell square around it."""
    sharp = cv2.convertScaleAbs(cv2.Laplacian(gray, cv2.CV_16S)) if laplacian else gray
    share = cv2.blur((skin > 0).astype(np.float32), (side, side))
    return cv2.blur(sharp.astype(np.float32), (side, side)) * share


def _region_side(short: int, cell: int) -> int:
    return max(1, round(_REGION_SIZE * short / cell))  # in cells


def _sharp_skin_regions(
    score: Any, shape: tuple[int, int], cell: int, side: int, margin: int, np: Any
) -> list[Box]:
    """Boxes of ``side`` cells (plus ``margin`` px) of the skin-coloured picture with the
    sharpest detail (``score``, per cell), sharpest first, inside an image of ``shape``."""
    height, width = shape
    boxes: list[Box] = []
    for _ in range(_REGIONS):
        y, x = np.unravel_index(int(np.argmax(score)), score.shape)
        if score[y, x] <= 0:
            break
        cx, cy, half = (x + 0.5) * cell, (y + 0.5) * cell, side * cell / 2
        left, top = max(0, int(cx - half) - margin), max(0, int(cy - half) - margin)
        right, bottom = min(width, int(cx + half) + margin), min(height, int(cy + half) + margin)
        boxes.append((left, top, right, bottom))
        score[max(0, y - side) : y + side + 1, max(0, x - side) : x + side + 1] = 0
    return boxes


def _skin_blobs(skin: Any, cell: int, short: int, cv2: Any) -> list[Box]:
    """Boxes (in image pixels) of the skin blobs of a face's size, the largest first."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(skin, connectivity=8)
    low, high = _BLOB_MIN * short / cell, _BLOB_MAX * short / cell
    blobs = []
    for x, y, w, h, area in stats[1:count].tolist():  # row 0 is the background
        if low <= w <= high and h <= w * _BLOB_MAX_ASPECT and h * _BLOB_MAX_ASPECT >= w:
            blobs.append((area, (x * cell, y * cell, (x + w) * cell, (y + h) * cell)))
    blobs.sort(reverse=True)
    return [box for _, box in blobs[:_MAX_CANDIDATES]]


def _scan(rgb: Image.Image, blob: Box, cascade: Any, cv2: Any) -> list[Face]:
    """Faces around one skin blob: of a cover face's size, and as big as the blob."""
    short = min(rgb.size)
    blob_width = blob[2] - blob[0]
    found: list[Face] = []
    if not _sharp(rgb, blob, cv2):
        return []
    if blob_width <= _SMALL_BLOB_MAX * short:
        margin = round(_MARGIN * short)
        found += _scan_around(
            rgb, blob, margin, _WHOLE_MIN * short, _WHOLE_MAX * short, cascade, cv2
        )
    if blob_width > _WHOLE_MAX * short * 0.8:
        # A close-up: the face is about as wide as its skin, or up to twice; resized
        # so that this costs what a small face costs.
        found += _scan_around(
            rgb, blob, blob_width, blob_width * 0.8, blob_width * 2.2, cascade, cv2
        )
    return found


def _sharp(rgb: Image.Image, blob: Box, cv2: Any) -> bool:
    """Whether the blob has a small face's sharp dark marks (eyes, brows, mouth).

    A flat or soft skin-coloured patch (a wall, sand, a blurred backdrop) does not:
    the mean absolute Laplacian of the 60 generated faces' blobs was 25-36, of the
    74 soft blobs of the benchmark covers 5-15 (one 29.5).
    """
    import numpy as np

    # Judged at one scale, whatever the blob's size: resized to _SHARP_WIDTH px wide.
    scale = min(1.0, _SHARP_WIDTH / (blob[2] - blob[0]))
    patch = rgb.crop(blob).convert("L")
    if scale < 1:
        size = (_SHARP_WIDTH, max(1, round(patch.height * scale)))
        patch = patch.resize(size, Image.Resampling.BOX)
    gray = np.asarray(patch)
    return bool(cv2.mean(cv2.convertScaleAbs(cv2.Laplacian(gray, cv2.CV_16S)))[0] >= _SHARPNESS_MIN)


def _scan_around(
    rgb: Image.Image,
    blob: Box,
    margin: int,
    smallest: float,
    largest: float,
    cascade: Any,
    cv2: Any,
) -> list[Face]:
    import numpy as np

    width, height = rgb.size
    left, top = max(0, blob[0] - margin), max(0, blob[1] - margin)
    right, bottom = min(width, blob[2] + margin), min(height, blob[3] + margin)
    # Only the region goes to gray and to NumPy (a whole 270x480 copy costs 0.3 ms).
    gray = np.asarray(rgb.crop((left, top, right, bottom)).convert("L"))
    found = cascade_at(gray, smallest, largest, cascade, cv2, _BLOB_SCALE_STEP)
    return [face.moved(left, top) for face in found]
