"""Where the square cell window goes on a cover: on a face first, on what stands out otherwise.

A TikTok cover is 9:16; a centred square keeps its middle 56 % and cuts the top
and bottom, where faces and titles usually sit. ``square_window`` slides the
square along the long side instead:

1. **Faces** (:mod:`imgpipe.imaging.face_detect`): OpenCV's frontal-face Haar
   cascade, which ships inside ``opencv-python-headless``, around the sharp
   skin-coloured blobs of a 1/4-size copy (or in the sharpest skin-coloured
   regions when skin colours are most of it, then, shrunken, where skin colours
   are sharp). The window holds as many of the faces' votes as it can and is
   centred on what it holds.
2. **Saliency** otherwise, the way smartcrop.js scores a crop: skin, edges and
   saturation along the long side, with more weight near the middle of the
   window than at its edges; Pillow only, on that copy halved again (1/8).

Everything runs on the small draft-decoded image the cell is cut from (270x480
for a 200 px cell), upright. Without OpenCV (the Lambda zip leaves it out: 218 MB
with NumPy), step 1 finds nothing and ``detector_name()`` says ``saliency``; it
is part of the collage fingerprint, so a collage made without faces is not
mistaken for one made with them. Measured accuracy and cost: README, "Smart crop".

>>> square_window(Image.new("RGB", (300, 300)))
(0, 0)
>>> square_window(Image.new("RGB", (90, 160), (40, 40, 40)))[0]
0
"""

from __future__ import annotations

from functools import lru_cache
from itertools import accumulate
from typing import TYPE_CHECKING

from PIL import Image, ImageChops, ImageFilter

# face_detect imports OpenCV only when its cascade is first needed.
from imgpipe.imaging import face_detect

if TYPE_CHECKING:
    from imgpipe.imaging.face_detect import Face

__all__ = ["detector_name", "square_window"]

_ANALYSIS_SHORT = 64  # px: the skin grid of faces is this small (1/4 of a 270 px draft)
_SALIENCY_SHORT = 32  # px: and saliency's copy this small (1/8)
# smartcrop.js weights: skin counts most, then edges, then saturation.
_SKIN_WEIGHT, _EDGE_WEIGHT, _SATURATION_WEIGHT = 1.8, 0.2, 0.3


def detector_name() -> str:
    """``faces+saliency`` with OpenCV installed, else ``saliency``."""
    return "faces+saliency" if face_detect.load_cascade() is not None else "saliency"


def square_window(image: Image.Image) -> tuple[int, int]:
    """The top-left corner of the square (side = the short side) to keep of ``image``."""
    width, height = image.size
    side = min(width, height)
    if width == height:
        return 0, 0
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    # Skin blobs and saliency are found on a box-reduced copy (a 270x480 draft: 67x120,
    # saliency halves it again): where things are along the long side survives, and
    # it costs 1/10 (measured). NEAREST instead of reduce() saved ~0.15 ms a cover
    # but framed one face fewer of 60, and two fewer by saliency alone.
    factor = max(1, side // _ANALYSIS_SHORT)
    small = rgb.reduce(factor) if factor > 1 else rgb
    faces = face_detect.find_faces(rgb, small)
    portrait = height > width
    length = height if portrait else width
    if faces:
        start = _window_over_faces(faces, portrait, side, length)
    else:
        start = _window_by_saliency(small, portrait, side, length)
    return (0, start) if portrait else (start, 0)


@lru_cache(maxsize=1)
def _skin_luts() -> tuple[list[int], list[int]]:
    # Chai & Ngan's skin box in YCbCr (Cb 77-127, Cr 133-173), as 0/255 lookups.
    cb = [255 if 77 <= v <= 127 else 0 for v in range(256)]
    cr = [255 if 133 <= v <= 173 else 0 for v in range(256)]
    return cb, cr


def _window_over_faces(faces: list[Face], portrait: bool, side: int, length: int) -> int:
    """The window start that holds the most votes (a face counts by the share of it held),
    centred on the faces it holds."""
    spans = [((f.box[1], f.box[3]) if portrait else (f.box[0], f.box[2]), f.votes) for f in faces]
    best, best_score = 0, -1.0
    for (low, high), _ in spans:
        for start in ((low + high) // 2 - side // 2, low - side // 10, high + side // 10 - side):
            start = max(0, min(start, length - side))
            held = [
                (votes * max(0, min(h, start + side) - max(lo, start)) / max(1, h - lo), lo + h)
                for (lo, h), votes in spans
            ]
            weight = sum(share for share, _ in held)
            centre = sum(share * ends / 2 for share, ends in held) / max(weight, 1e-9)
            score = weight - abs(start + side / 2 - centre) * 1e-3
            if score > best_score:
                best, best_score = start, score
    return best


# -- saliency --------------------------------------------------------------------------


def _window_by_saliency(small: Image.Image, portrait: bool, side: int, length: int) -> int:
    # Scored on a copy halved again (34x60 for a 270x480 draft): a profile along the
    # long side needs no more, and every step costs a quarter (the window alone went
    # from ~0.6 to ~0.2 ms a cover; saliency alone framed 40 of the 60 test faces, not 38).
    factor = max(1, min(small.size) // _SALIENCY_SHORT)
    tiny = small.reduce(factor) if factor > 1 else small
    # One YCbCr conversion serves skin (Cb, Cr) and edges (Y: the same luma as "L").
    luma, cb, cr = tiny.convert("YCbCr").split()
    cb_lut, cr_lut = _skin_luts()
    skin = ImageChops.darker(cb.point(cb_lut), cr.point(cr_lut))  # 255 where both are skin
    edges = luma.filter(ImageFilter.FIND_EDGES)
    saturation = tiny.convert("HSV").getchannel("S")
    # Means along the short side: a profile of how much stands out along the long one,
    # the three bands shrunk together.
    samples = tiny.height if portrait else tiny.width
    size = (1, samples) if portrait else (samples, 1)
    means = Image.merge("RGB", (skin, edges, saturation)).resize(size, Image.Resampling.BOX)
    data = means.tobytes()
    profile = [
        _SKIN_WEIGHT * s + _EDGE_WEIGHT * e + _SATURATION_WEIGHT * t
        for s, e, t in zip(data[0::3], data[1::3], data[2::3], strict=True)
    ]
    window = max(1, round(samples * side / length))
    return min(length - side, round(_best_start(profile, window) * length / samples))


def _best_start(profile: list[float], window: int) -> int:
    """The start of the ``window`` samples of ``profile`` with the highest weighted sum.

    smartcrop.js's importance: full weight in the middle of the window, 40 % less at
    its edges, ``1 - 0.6 * d**2`` at ``d`` half-windows from the middle. The weighted
    sum is a quadratic in the sample index, so three running sums score every start
    in one pass (the direct double loop cost 0.5 ms a cover; list comprehensions
    instead of a loop: 1/3 of the pass's cost).

    >>> _best_start([0, 0, 5, 0, 0, 0, 0], 3)
    1
    """
    s0 = list(accumulate(profile, initial=0.0))  # prefix sums of p, j*p and j*j*p
    s1 = list(accumulate((j * p for j, p in enumerate(profile)), initial=0.0))
    s2 = list(accumulate((j * j * p for j, p in enumerate(profile)), initial=0.0))
    half = window / 2
    curvature = 0.6 / (half * half)
    middles = [start + half - 0.5 for start in range(len(profile) - window + 1)]  # window centres
    scores = [
        (a0 - b0) - curvature * ((a2 - b2) - 2 * m * (a1 - b1) + m * m * (a0 - b0))
        for m, a0, b0, a1, b1, a2, b2 in zip(
            middles, s0[window:], s0, s1[window:], s1, s2[window:], s2, strict=False
        )
    ]
    return max(range(len(scores)), key=scores.__getitem__)  # the first best, as before
