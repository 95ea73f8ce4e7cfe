"""Regenerate the bundled example: examples/covers/*.jpg and examples/covers.csv.

A developer tool, not part of imgpipe. It composes 9:16 covers, like the ones
creators put on their videos, from photographs that ship inside scikit-image
(`skimage.data`, public domain or CC0: see examples/README.md), so it needs
scikit-image (the `dev` extra). `make run` does not: the generated files are
committed. The output is deterministic: a fixed seed, and no clock or machine
state goes into a cover.

What the covers exercise:

- a title band at the top or bottom, away from the face, as on real covers;
- faces in the top or bottom third on many covers, where a centred square crop
  cuts them off;
- every cover of a creator is distinct enough (checked with imgpipe's own
  near-duplicate measure, with a margin) to take its own cell, so the 40-cover
  creator still fills its 35 cells;
- café/paris also posts three near-duplicates of one cover (a re-encode at JPEG
  quality 60, a 90 % resize, brightness +10), reported as `near_duplicate`;
- the row problems real exports contain: a repeated row, a blank URL, a cover
  that is gone and a URL scheme imgpipe will not fetch.

Run: .venv/bin/python examples/make_examples.py
"""

from __future__ import annotations

import csv
import io
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps
from skimage import data

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))  # imgpipe's own measure, from this checkout

from imgpipe.imaging.decode import load_tile  # noqa: E402
from imgpipe.imaging.perceptual import Look, alike, look_of  # noqa: E402

WIDTH, HEIGHT = 360, 640  # 9:16; the photographs are at most 640 px, larger adds nothing
QUALITY = 72  # with 120 covers, what keeps covers/ under 3 MB
MAX_TOTAL_BYTES = 3_000_000
CELL = 200  # the collage's default cell size
# A cover is kept only when it differs from every earlier cover of its creator by
# more than this many bits in each of three square windows (top, middle, bottom),
# well above the default of 6, so another crop rule still sees distinct covers.
DISTINCT_BITS = 12
LANCZOS = Image.Resampling.LANCZOS


@dataclass(frozen=True)
class Photo:
    """A photograph from skimage.data; ``face`` is its face box (x, y, size) if any.

    ``truth`` is a frontal face's box measured by hand (hairline to chin, ear to ear,
    as tests/support/faces.py's ASTRONAUT_FACE): where a smart crop must frame it.
    """

    name: str
    load: Callable[[], np.ndarray]
    face: tuple[int, int, int] | None = None
    truth: tuple[int, int, int, int] | None = None


# Face boxes found once with skimage.feature.Cascade (its bundled LBP frontal-face model).
PHOTOS = {
    "astronaut": Photo("astronaut", data.astronaut, (175, 66, 99), truth=(176, 70, 274, 182)),
    # The camera man is in profile: no frontal face for a smart crop to find.
    "camera": Photo("camera", data.camera, face=(209, 128, 49)),
    "coffee": Photo("coffee", data.coffee),
    "chelsea": Photo("chelsea", data.chelsea),
    "rocket": Photo("rocket", data.rocket),
    "hubble_deep_field": Photo("hubble_deep_field", data.hubble_deep_field),
    "grass": Photo("grass", data.grass),
    "gravel": Photo("gravel", data.gravel),
    "brick": Photo("brick", data.brick),
    "coins": Photo("coins", data.coins),
}


@dataclass(frozen=True)
class Creator:
    name: str
    count: int
    photos: tuple[str, ...]
    accent: tuple[int, int, int]
    titles: str  # separated by " | "; {n} becomes a number


CREATORS = [
    Creator(
        "Zoë Dance", 35, ("astronaut", "camera"), (232, 93, 117),
        "LEARN THIS IN 30s | day {n} of the moonwalk | POV: first class | tutorial pt. {n} | "
        "slow vs fast | mirror drill #{n} | trend of the week | zero gravity spin | "
        "which one? 1 or 2 | count it with me | recital prep {n} | rate my footwork",
    ),
    Creator(
        "東京グルメ", 20, ("coffee", "chelsea"), (255, 166, 0),
        "TOKYO EATS #{n} | 500 yen latte?! | cat cafe in Akiba | hidden kissaten | "
        "best espresso pt.{n} | morning coffee run | rating cafes 1-10 | the cat owns it",
    ),
    Creator(
        "café/paris", 12, ("coffee", "chelsea"), (60, 140, 200),
        "cafe creme, 4.20 | PARIS on a budget | the bistro cat | terrace season | "
        "espresso at the bar | croissant + coffee {n}",
    ),
    Creator(
        "mountain.bikes", 40, ("gravel", "grass", "camera", "rocket", "hubble_deep_field"),
        (70, 160, 90),
        "GRAVEL SZN | trail check #{n} | flat tyre again | climb of the week | send it? day {n} | "
        "night ride, no lights | rate this line | launch the drop | mud or dust? | "
        "1000 m of climbing",
    ),
    Creator(
        "DIY Dave", 7, ("brick", "coins", "camera", "gravel"), (140, 90, 200),
        "fix a wall in 5 steps | garden path ep {n} | coin cleaning (don't) | tripod hack | "
        "brick by brick | 5 tools under 20 bucks",
    ),
    Creator(
        "the_quiet_one", 3, ("hubble_deep_field", "rocket", "coffee"), (90, 90, 90),
        "3 a.m. | quiet launch | ... | no caption today",
    ),
]  # fmt: skip
TEXTURES = {"grass", "gravel", "brick"}
NEAR_DUPLICATE_CREATOR, NEAR_DUPLICATE_OF = 2, 3  # café/paris, its cover #3


def rgb(photo: Photo, accent: tuple[int, int, int], rng: random.Random) -> Image.Image:
    """The photograph in colour: grey ones are toned towards the creator's accent."""
    image = Image.fromarray(photo.load())
    if image.mode == "L":
        dark = tuple(c // 5 for c in accent)
        light = tuple(min(255, 150 + c // 2 + rng.randint(-20, 20)) for c in accent)
        image = ImageOps.colorize(image, dark, light)
    if photo.name in TEXTURES:  # their grain costs the most bytes and shows least in a cell
        image = image.filter(ImageFilter.GaussianBlur(1.2))
    return image.convert("RGB")


def grade(image: Image.Image, rng: random.Random) -> Image.Image:
    """One of the looks filters give covers."""
    look = rng.choice(["none", "vivid", "warm", "cool", "faded", "contrast"])
    if look == "vivid":
        return ImageEnhance.Color(image).enhance(1.5)
    if look == "contrast":
        return ImageEnhance.Contrast(image).enhance(1.35)
    if look == "faded":
        return Image.blend(image, Image.new("RGB", image.size, (235, 225, 210)), 0.25)
    if look in ("warm", "cool"):
        shift = (18, 4, -18) if look == "warm" else (-18, 0, 22)
        tables = [[max(0, min(255, v + s)) for v in range(256)] for s in shift]
        return image.point([v for table in tables for v in table])
    return image


def compose(
    photo: Photo, image: Image.Image, rng: random.Random
) -> tuple[Image.Image, str, tuple[int, int, int, int] | None]:
    """The photograph on a 9:16 canvas over a blurred copy of itself.

    Returns the canvas, where the face is ("top", "middle", "bottom" or "none") and
    the box of its frontal face on the canvas (``Photo.truth`` moved with the photo;
    None without one): the ground truth `python -m benchmarks smartcrop` measures
    the examples with.
    """
    if rng.random() < 0.4:
        image = ImageOps.mirror(image)
        flipped = True
    else:
        flipped = False
    w, h = image.size
    if photo.face is not None:
        fx, fy, fsize = photo.face
        if flipped:
            fx = w - fx - fsize
        # faces 12-30 % of the cover's width, mostly in the top or bottom third
        scale = rng.uniform(0.12, 0.30) * WIDTH / fsize
        where = rng.choices(["top", "bottom", "middle"], weights=[5, 4, 1])[0]
        band = {"top": (0.10, 0.30), "middle": (0.42, 0.58), "bottom": (0.68, 0.88)}[where]
        target = (rng.uniform(0.3, 0.7) * WIDTH, rng.uniform(*band) * HEIGHT)
        focus = (fx + fsize / 2, fy + fsize / 2)
    else:
        where = "none"
        scale = rng.uniform(0.7, 1.5) * HEIGHT / h if rng.random() < 0.6 else WIDTH / w
        focus = (rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h)
        target = (WIDTH / 2, rng.uniform(0.3, 0.7) * HEIGHT)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    x, y = round(target[0] - focus[0] * scale), round(target[1] - focus[1] * scale)
    if size[0] >= WIDTH:  # no gap at the sides: slide the photo, the face moves sideways only
        x = min(0, max(WIDTH - size[0], x))
    if size[1] >= HEIGHT:
        y = min(0, max(HEIGHT - size[1], y))
    background = ImageOps.fit(image, (WIDTH, HEIGHT), centering=(rng.random(), rng.random()))
    background = background.filter(ImageFilter.GaussianBlur(14))
    background = ImageEnhance.Brightness(background).enhance(rng.uniform(0.45, 0.75))
    background.paste(image.resize(size, LANCZOS), (x, y))
    box = None
    if photo.face is not None:
        centre_y = y + focus[1] * scale
        third = int(3 * centre_y // HEIGHT)
        where = ("top", "middle", "bottom")[min(2, max(0, third))]
    if photo.truth is not None:
        left, top, right, bottom = photo.truth
        if flipped:
            left, right = w - right, w - left
        box = (
            round(x + left * scale),
            round(y + top * scale),
            round(x + right * scale),
            round(y + bottom * scale),
        )
    return background, where, box


def title_band(
    cover: Image.Image, text: str, at_top: bool, accent: tuple[int, int, int], rng: random.Random
) -> None:
    """Bold title on a band, wrapped to the cover's width."""
    draw = ImageDraw.Draw(cover, "RGBA")
    size = rng.choice([30, 34, 38])
    font = ImageFont.load_default(size)  # Pillow's bundled Aileron, ASCII only
    words, lines = text.split(), [""]
    for word in words:
        trial = f"{lines[-1]} {word}".strip()
        if draw.textlength(trial, font=font) <= WIDTH - 48 or not lines[-1]:
            lines[-1] = trial
        else:
            lines.append(word)
    line_height = round(size * 1.2)
    height = line_height * len(lines) + 28
    top = rng.randint(24, 60) if at_top else HEIGHT - height - rng.randint(40, 90)
    fill = (*accent, 235) if rng.random() < 0.5 else (0, 0, 0, 170)
    draw.rectangle((0, top, WIDTH, top + height), fill=fill)
    for number, line in enumerate(lines):
        draw.text(
            (WIDTH / 2, top + 14 + number * line_height + line_height / 2), line,
            font=font, anchor="mm", fill="white", stroke_width=1, stroke_fill="white",
        )  # fmt: skip


def encode(image: Image.Image, quality: int = QUALITY) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True, progressive=True)
    return out.getvalue()


def looks(jpeg: bytes) -> list[Look]:
    """The cover's look in the pipeline's cell (middle) and in the top and bottom squares."""
    with Image.open(io.BytesIO(jpeg)) as opened:
        image = opened.convert("RGB")
        w, h = image.size
        ends = [image.crop((0, top, w, top + w)).resize((CELL, CELL)) for top in (0, h - w)]
    middle = load_tile(jpeg, CELL, max_pixels=10_000_000, min_size=50)
    return [look_of(middle), *map(look_of, ends)]


def distinct(candidate: list[Look], kept: list[list[Look]]) -> bool:
    return not any(
        alike(a, b, DISTINCT_BITS) for other in kept for a, b in zip(candidate, other, strict=True)
    )


Box = tuple[int, int, int, int]


def make_creator(
    index: int, creator: Creator, rng: random.Random, covers_dir: Path, truths: dict[str, Box]
) -> tuple[list[str], dict[str, int]]:
    """The creator's covers into ``covers_dir``; the frontal faces' boxes into ``truths``."""
    kept: list[list[Look]] = []
    names: list[str] = []
    faces = {"top": 0, "middle": 0, "bottom": 0, "none": 0}
    titles: list[str] = []
    tries = 0
    while len(names) < creator.count:
        tries += 1
        if tries > creator.count * 50:
            raise SystemExit(f"{creator.name}: cannot make {creator.count} distinct covers")
        photo = PHOTOS[rng.choice(creator.photos)]
        image = grade(rgb(photo, creator.accent, rng), rng)
        cover, where, truth = compose(photo, image, rng)
        number = len(names) + 1
        if not titles:  # every title once before any repeats
            titles = rng.sample(creator.titles.split(" | "), creator.titles.count(" | ") + 1)
        title = titles.pop().format(n=rng.randint(2, 99))
        title_band(cover, title, at_top=(where != "top"), accent=creator.accent, rng=rng)
        jpeg = encode(cover)
        candidate = looks(jpeg)
        if not distinct(candidate, kept):
            continue
        kept.append(candidate)
        faces[where] += 1
        name = f"c{index}_{number:02d}.jpg"
        (covers_dir / name).write_bytes(jpeg)
        names.append(name)
        if truth is not None:
            truths[name] = truth
    return names, faces


def near_duplicates(original: Path) -> list[Path]:
    """Three near-duplicates of a cover, as reposts make them; each must look alike."""
    with Image.open(original) as opened:
        image = opened.convert("RGB")
    variants = {
        "q60": encode(image, quality=60),
        "resized90": encode(image.resize((WIDTH * 9 // 10, HEIGHT * 9 // 10), LANCZOS)),
        "brighter": encode(image.point([min(255, v + 10) for v in range(256)] * 3)),
    }
    reference = looks(original.read_bytes())[0]
    paths = []
    for suffix, jpeg in variants.items():
        if not alike(reference, looks(jpeg)[0], 6):
            raise SystemExit(f"{original.name} {suffix}: not a near-duplicate at 6 bits")
        path = original.with_name(f"{original.stem}_{suffix}.jpg")
        path.write_bytes(jpeg)
        paths.append(path)
    return paths


def main() -> None:
    rng = random.Random(20261123)
    covers_dir = HERE / "covers"
    covers_dir.mkdir(exist_ok=True)
    for old in covers_dir.glob("*.jpg"):
        old.unlink()
    rows: list[tuple[str, str]] = []
    truths: dict[str, Box] = {}
    for index, creator in enumerate(CREATORS):
        names, faces = make_creator(index, creator, rng, covers_dir, truths)
        print(f"{creator.name}: {len(names)} covers, faces {faces}")
        creator_rows = [(creator.name, f"covers/{name}") for name in names]
        if index == NEAR_DUPLICATE_CREATOR:
            original = covers_dir / names[NEAR_DUPLICATE_OF - 1]
            reposts = [(creator.name, f"covers/{p.name}") for p in near_duplicates(original)]
            # reposted later in the feed, every fourth row after two newer covers
            for offset, row in enumerate(reposts):
                creator_rows.insert(NEAR_DUPLICATE_OF + 2 + 4 * offset, row)
        rows.extend(creator_rows)
    # What real exports contain: a repeated row, a blank URL, a cover that is gone,
    # and a URL scheme imgpipe will not fetch. Each is reported, none stops the batch.
    rows.insert(3, (CREATORS[0].name, rows[0][1]))
    rows.append(("DIY Dave", ""))
    rows.append(("DIY Dave", "covers/missing_cover.jpg"))
    rows.append(("the_quiet_one", "ftp://example.com/cover.jpg"))
    with (HERE / "covers.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["creator_name", "cover_url"])
        writer.writerows(rows)
    # Where each cover's frontal face is (cover pixels): the ground truth of the smart
    # crop's figure on the examples (benchmarks/bench_smartcrop.py), not a detector's.
    with (HERE / "faces.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["cover", "left", "top", "right", "bottom"])
        writer.writerows((name, *box) for name, box in truths.items())
    total = sum(p.stat().st_size for p in covers_dir.glob("*.jpg"))
    print(f"{len(rows)} rows, covers/ {total / 1e6:.2f} MB")
    if total > MAX_TOTAL_BYTES:
        raise SystemExit(f"covers/ is {total} bytes, more than {MAX_TOTAL_BYTES}")


if __name__ == "__main__":
    main()
