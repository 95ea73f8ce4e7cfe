"""Regenerate the bundled example covers and covers.csv (deterministic).

Run: .venv/bin/python examples/make_examples.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
CREATORS = [
    ("Zoë Dance", 35, (232, 93, 117)),
    ("東京グルメ", 20, (255, 166, 0)),
    ("café/paris", 12, (60, 140, 200)),
    ("mountain.bikes", 40, (70, 160, 90)),
    ("DIY Dave", 7, (140, 90, 200)),
    ("the_quiet_one", 3, (90, 90, 90)),
]


def cover(rng: random.Random, base: tuple[int, int, int], number: int) -> Image.Image:
    width, height = 270, 480
    top = tuple(min(255, c + rng.randint(0, 60)) for c in base)
    bottom = tuple(max(0, c - rng.randint(20, 90)) for c in base)
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(
        Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), gradient
    )
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y, r = rng.randint(0, width), rng.randint(0, height), rng.randint(20, 90)
        shade = tuple(min(255, c + rng.randint(-40, 80)) for c in base)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=shade)
    image = image.filter(ImageFilter.GaussianBlur(2))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, height - 90, width, height), fill=(0, 0, 0))
    draw.text((20, height - 75), f"#{number}", fill=(255, 255, 255), font_size=48)
    return image


def main() -> None:
    rng = random.Random(20261123)
    covers_dir = HERE / "covers"
    covers_dir.mkdir(exist_ok=True)
    rows: list[tuple[str, str]] = []
    for index, (name, count, base) in enumerate(CREATORS):
        for number in range(1, count + 1):
            path = covers_dir / f"c{index}_{number:02d}.jpg"
            cover(rng, base, number).save(path, "JPEG", quality=80, optimize=True)
            rows.append((name, f"covers/{path.name}"))
    # What real exports contain: a repeated row, a blank URL, a cover that is gone,
    # and a URL scheme imgpipe will not fetch. Each is reported, none stops the batch.
    rows.insert(3, (CREATORS[0][0], rows[0][1]))
    rows.append(("DIY Dave", ""))
    rows.append(("DIY Dave", "covers/missing_cover.jpg"))
    rows.append(("the_quiet_one", "ftp://example.com/cover.jpg"))
    with (HERE / "covers.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["creator_name", "cover_url"])
        writer.writerows(rows)


if __name__ == "__main__":
    main()
