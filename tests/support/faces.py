"""9:16 covers built from public-domain photographs, with the face where the test put it.

The photographs ship inside scikit-image (``skimage.data``): the astronaut
(NASA, public domain) and, as backgrounds, the rocket (NASA, public domain),
coffee and chelsea (CC0). The ground truth is geometry, not a detector: the
astronaut's face box was measured by hand in the 512x512 original
(``ASTRONAUT_FACE``, hairline to chin, ear to ear), and a cover scales and moves
that box with the photograph::

    cover = face_cover(random.Random(7), band="top")
    cover.image, cover.face   # a 1080x1920 RGB image and the face box in it

``closeup_cover`` makes the face 25-45 % of the width, ``landscape_cover`` a
1920x1080 cover with the face near its left or right edge.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = [
    "ASTRONAUT_FACE",
    "COVER_SIZE",
    "FaceCover",
    "closeup_cover",
    "face_cover",
    "landscape_cover",
    "placements",
]

COVER_SIZE = (1080, 1920)
# (left, top, right, bottom) of the face in skimage.data.astronaut(), by eye.
ASTRONAUT_FACE = (176, 70, 274, 182)
# Where a face sits on a cover: the top, middle or bottom band of the height.
BANDS = {"top": (0.06, 0.26), "middle": (0.40, 0.60), "bottom": (0.74, 0.94)}


@dataclass(frozen=True)
class FaceCover:
    image: Image.Image
    face: tuple[int, int, int, int]  # in cover pixels
    band: str


@lru_cache(maxsize=8)
def _photo(name: str) -> Image.Image:
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def _background(rng: random.Random, size: tuple[int, int] = COVER_SIZE) -> Image.Image:
    """Another photograph filling the cover (cropped to its shape), softened like a backdrop."""
    photo = _photo(rng.choice(["rocket", "coffee", "chelsea"]))
    width, height = photo.size
    crop_width = min(width, height * size[0] // size[1])
    crop_height = min(height, crop_width * size[1] // size[0])
    left = rng.randrange(0, width - crop_width + 1)
    backdrop = photo.crop((left, 0, left + crop_width, crop_height))
    # Blurred before it is enlarged (the radius scaled to match): the same softness,
    # at 1/14 of the pixels; blurring the 1080x1920 cover took most of a test's time.
    radius = rng.uniform(0, 6) * crop_height / size[1]
    return backdrop.filter(ImageFilter.GaussianBlur(radius)).resize(size)


def _paste_face(
    cover: Image.Image, face_width: float, centre: tuple[float, float]
) -> tuple[int, int, int, int]:
    """The astronaut's head and shoulders with the face ``face_width`` px wide, centred
    on ``centre`` (moved back inside the cover if needed); returns the face box."""
    scale = face_width / (ASTRONAUT_FACE[2] - ASTRONAUT_FACE[0])
    # Head and shoulders: the portrait without most of the suit and the props.
    portrait = _photo("astronaut").crop((110, 0, 350, 330))
    origin = (110, 0)
    size = (round(portrait.width * scale), round(portrait.height * scale))
    portrait = portrait.resize(size, Image.Resampling.LANCZOS)
    face_left = (ASTRONAUT_FACE[0] - origin[0]) * scale
    face_top = (ASTRONAUT_FACE[1] - origin[1]) * scale
    face_height = (ASTRONAUT_FACE[3] - ASTRONAUT_FACE[1]) * scale
    x = round(centre[0] - face_left - face_width / 2)
    y = round(centre[1] - face_top - face_height / 2)
    x = max(-round(face_left), min(x, cover.width - round(face_left + face_width)))
    cover.paste(portrait, (x, y))
    return (
        round(x + face_left),
        round(y + face_top),
        round(x + face_left + face_width),
        round(y + face_top + face_height),
    )


def face_cover(rng: random.Random, band: str) -> FaceCover:
    """The astronaut's head and shoulders on a backdrop, the face 8-15 % of the width."""
    cover = _background(rng)
    face_width = rng.uniform(0.08, 0.15) * COVER_SIZE[0]
    low, high = BANDS[band]
    centre_y = rng.uniform(low, high) * COVER_SIZE[1]
    face = _paste_face(cover, face_width, (rng.uniform(0.05, 0.95) * COVER_SIZE[0], centre_y))
    _title_band(cover, rng, avoid=face)
    return FaceCover(cover, face, band)


def closeup_cover(rng: random.Random, band: str) -> FaceCover:
    """A close-up: the face 25-45 % of the width, in the ``band`` "top" or "bottom"."""
    cover = _background(rng)
    face_width = rng.uniform(0.25, 0.45) * COVER_SIZE[0]
    centre_y = (0.2 if band == "top" else 0.8) * COVER_SIZE[1]
    face = _paste_face(cover, face_width, (rng.uniform(0.3, 0.7) * COVER_SIZE[0], centre_y))
    return FaceCover(cover, face, band)


def landscape_cover(rng: random.Random, side: str) -> FaceCover:
    """A 16:9 cover (1920x1080) with the face near its ``side`` ("left" or "right")."""
    width, height = COVER_SIZE[1], COVER_SIZE[0]
    cover = _background(rng, (width, height))
    face_width = rng.uniform(0.08, 0.15) * height
    where = rng.uniform(0.08, 0.2)
    centre_x = (where if side == "left" else 1 - where) * width
    face = _paste_face(cover, face_width, (centre_x, rng.uniform(0.3, 0.7) * height))
    return FaceCover(cover, face, side)


def _title_band(cover: Image.Image, rng: random.Random, avoid: tuple[int, int, int, int]) -> None:
    """A dark band with a white title, like a real cover's, where it does not hide the face."""
    height = COVER_SIZE[1] // 10
    top = COVER_SIZE[1] - height - 60 if avoid[1] < COVER_SIZE[1] / 2 else 60
    draw = ImageDraw.Draw(cover)
    draw.rectangle((0, top, COVER_SIZE[0], top + height), fill=(20, 20, 24))
    font = ImageFont.load_default(size=72)
    title = rng.choice(["DAY 12 IN ORBIT", "WHAT I PACKED", "Q&A LIVE", "MY ROUTINE"])
    draw.text((60, top + height // 4), title, fill=(255, 255, 255), font=font)


def placements(count: int, seed: int = 0) -> list[FaceCover]:
    """``count`` covers, the bands taken in turn, everything else drawn from ``seed``."""
    rng = random.Random(seed)
    names = list(BANDS)
    return [face_cover(rng, names[i % len(names)]) for i in range(count)]
