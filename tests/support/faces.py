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

``composed_cover`` composes a cover the way examples/make_examples.py does, as
creators make them: the whole photograph, colour-graded and maybe mirrored, the
face 12-30 % of the width, over a blurred, darkened, zoomed copy of itself, with a
title band. There the orange suit and the blurred copy of it are skin-coloured
around the face, unlike on the backdrops above. (make_examples.py is not imported:
it is a 360x640 developer script that needs its own checkout on ``sys.path``; the
few lines of composition are repeated here at 1080x1920.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

__all__ = [
    "ASTRONAUT_FACE",
    "COVER_SIZE",
    "FaceCover",
    "closeup_cover",
    "composed_cover",
    "composed_placements",
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


# Where make_examples.py puts a face's centre (of the height) and a title's colours.
COMPOSED_BANDS = {"top": (0.10, 0.30), "middle": (0.42, 0.58), "bottom": (0.68, 0.88)}
_ACCENTS = [(232, 93, 117), (255, 166, 0), (60, 140, 200), (70, 160, 90), (140, 90, 200)]


def _graded(image: Image.Image, rng: random.Random) -> Image.Image:
    """One of the looks filters give covers (make_examples.py's ``grade``)."""
    look = rng.choice(["none", "vivid", "warm", "cool", "faded", "contrast"])
    if look == "vivid":
        return ImageEnhance.Color(image).enhance(1.5)
    if look == "contrast":
        return ImageEnhance.Contrast(image).enhance(1.35)
    if look == "faded":
        return Image.blend(image, Image.new("RGB", image.size, (235, 225, 210)), 0.25)
    if look in ("warm", "cool"):
        shift = (18, 4, -18) if look == "warm" else (-18, 0, 22)
        return image.point([max(0, min(255, v + s)) for s in shift for v in range(256)])
    return image


def composed_cover(rng: random.Random, band: str) -> FaceCover:
    """The astronaut's photograph over a blurred, darkened copy of itself, as
    make_examples.py composes a cover, at 1080x1920: the face 12-30 % of the width,
    its centre in the ``band`` ("top", "middle" or "bottom") of COMPOSED_BANDS."""
    width, height = COVER_SIZE
    photo = _graded(_photo("astronaut"), rng)
    face = ASTRONAUT_FACE
    if rng.random() < 0.4:
        photo = ImageOps.mirror(photo)
        face = (photo.width - face[2], face[1], photo.width - face[0], face[3])
    scale = rng.uniform(0.12, 0.30) * width / (face[2] - face[0])
    low, high = COMPOSED_BANDS[band]
    target = (rng.uniform(0.3, 0.7) * width, rng.uniform(low, high) * height)
    focus = ((face[0] + face[2]) / 2, (face[1] + face[3]) / 2)
    size = (round(photo.width * scale), round(photo.height * scale))
    x, y = round(target[0] - focus[0] * scale), round(target[1] - focus[1] * scale)
    if size[0] >= width:  # no gap at the sides: the photo slides, the face moves sideways
        x = min(0, max(width - size[0], x))
    if size[1] >= height:
        y = min(0, max(height - size[1], y))
    # The backdrop is made at the examples' 360x640 and enlarged: the same look (a
    # 14 px blur there) at 1/9 of the pixels to blur.
    centering = (rng.random(), rng.random())
    backdrop = ImageOps.fit(photo, (width // 3, height // 3), centering=centering)
    backdrop = backdrop.filter(ImageFilter.GaussianBlur(14))
    backdrop = ImageEnhance.Brightness(backdrop).enhance(rng.uniform(0.45, 0.75))
    cover = backdrop.resize(COVER_SIZE, Image.Resampling.BICUBIC)
    cover.paste(photo.resize(size, Image.Resampling.LANCZOS), (x, y))
    box = (
        round(x + face[0] * scale),
        round(y + face[1] * scale),
        round(x + face[2] * scale),
        round(y + face[3] * scale),
    )
    _composed_title(cover, rng, at_top=band != "top")
    return FaceCover(cover, box, band)


def _composed_title(cover: Image.Image, rng: random.Random, at_top: bool) -> None:
    """make_examples.py's title band (one or two lines, an accent colour or translucent
    black) at three times its size, at the top or the bottom, away from the face."""
    draw = ImageDraw.Draw(cover, "RGBA")
    size = rng.choice([90, 102, 114])
    lines = rng.choice([1, 1, 2])
    height = round(size * 1.2) * lines + 84
    top = rng.randint(72, 180) if at_top else COVER_SIZE[1] - height - rng.randint(120, 270)
    fill = (*rng.choice(_ACCENTS), 235) if rng.random() < 0.5 else (0, 0, 0, 170)
    draw.rectangle((0, top, COVER_SIZE[0], top + height), fill=fill)
    font = ImageFont.load_default(size=size)
    titles = ["LEARN THIS IN 30s", "day 12 of the moonwalk", "POV: first class", "slow vs fast"]
    for line in range(lines):
        centre = (COVER_SIZE[0] / 2, top + 42 + (line + 0.5) * round(size * 1.2))
        draw.text(centre, rng.choice(titles), font=font, anchor="mm", fill="white")


def composed_placements(count: int, seed: int = 0) -> list[FaceCover]:
    """``count`` composed covers, the bands taken in turn, everything else from ``seed``."""
    rng = random.Random(seed)
    names = list(COMPOSED_BANDS)
    return [composed_cover(rng, names[i % len(names)]) for i in range(count)]
