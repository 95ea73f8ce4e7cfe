"""Smart crop's cost: the render benchmark's collage with ``crop="smart"`` against ``"center"``.

Run with ``python -m benchmarks smartcrop`` (or ``python -m benchmarks.bench_smartcrop``).
The same 35 cached covers as ``bench_render`` (1080x1920 JPEGs, no faces: the
cost of looking), rendered into the same 5x7 collage by ``load_tile`` +
``render_collage``, single-threaded. Each round renders both, back to back in
this process, and times them in process CPU time (other engineers' jobs on a
shared machine take wall time, not ours); the verdict is the median of the
per-round ratios, the target the issue's: smart <= 1.25x centre.

It also times the draft decode alone (the floor of ``bench_render``) and the
smart window alone on the drafts, so the extra cost reads per cover; then, cover
by cover, the window against the decode on the 60 face covers of the accuracy
test (``tests/support/faces.py``: scikit-image photographs, two thirds of them
on skin-coloured backdrops), where the aim is no cover over ~3x its decode, and
on the 60 covers composed like the bundled examples (the photo over a blurred
copy of itself: the orange suit makes them the covers that cost most).

Last, the bundled examples (``examples/covers``, decoded as a cell decodes them):
how many of the covers with the astronaut's face hold it in the smart window.
The ground truth is ``examples/faces.csv``, written by make_examples.py from where
it put the photograph, not a detector's output.
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from PIL import Image

from benchmarks.bench_render import CELL, COLS, MAX_PIXELS, MIN_SIZE, QUALITY, ROWS, load_covers
from imgpipe.domain.layout import plan_grid
from imgpipe.imaging.collage import render_collage
from imgpipe.imaging.decode import load_tile
from imgpipe.imaging.smartcrop import detector_name, square_window

TARGET = 1.25  # smart render / centre render, at most


def render(covers: Sequence[bytes], crop: str) -> bytes:
    cells = [
        load_tile(d, CELL, max_pixels=MAX_PIXELS, min_size=MIN_SIZE, crop=crop) for d in covers
    ]
    grid = plan_grid(len(cells), rows=ROWS, cols=COLS, cell_size=CELL)
    return render_collage(cells, grid, quality=QUALITY)


def drafts(covers: Sequence[bytes]) -> list[Image.Image]:
    images = []
    for data in covers:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (CELL, CELL))
        image.load()
        images.append(image)
    return images


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def face_covers(composed: bool = False) -> list[bytes]:
    """The 60 placements of tests/unit/test_smartcrop.py (or its 60 covers composed like
    the examples), as the JPEGs it decodes."""
    # scikit-image: a dev dependency
    from tests.support.faces import composed_placements, placements
    from tests.support.images import encode

    make = composed_placements if composed else placements
    return [encode(c.image, "JPEG", quality=85) for seed in (0, 1) for c in make(30, seed)]


def examples_framed() -> tuple[int, int]:
    """(covers whose smart window holds the face, covers with a frontal face) of the
    bundled examples."""
    with (EXAMPLES / "faces.csv").open(newline="", encoding="utf-8") as handle:
        truths = list(csv.DictReader(handle))
    held = 0
    for row in truths:
        (draft,) = drafts([(EXAMPLES / "covers" / row["cover"]).read_bytes()])
        with Image.open(EXAMPLES / "covers" / row["cover"]) as full:
            scale = draft.width / full.width  # the draft may be smaller than the cover
        left, top, right, bottom = (int(row[k]) * scale for k in ("left", "top", "right", "bottom"))
        x, y = square_window(draft)
        side = min(draft.size)
        held += (
            x - 0.5 <= left
            and y - 0.5 <= top
            and right <= x + side + 0.5
            and bottom <= y + side + 0.5
        )
    return held, len(truths)


def per_cover(covers: Sequence[bytes], repeats: int = 3) -> list[tuple[float, float]]:
    """(window ms, decode ms) of each cover, each the least of ``repeats`` timings."""
    timings = []
    for data in covers:
        (draft,) = drafts([data])
        decode = min(cpu_ms(partial(drafts, [data])) for _ in range(repeats))
        window = min(cpu_ms(partial(square_window, draft)) for _ in range(repeats))
        timings.append((window, decode))
    return timings


def cpu_ms(action: Callable[[], object]) -> float:
    start = time.process_time()
    action()
    return (time.process_time() - start) * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_smartcrop")
    parser.add_argument("--rounds", type=int, default=9, help="paired rounds")
    args = parser.parse_args(argv)

    covers = load_covers()
    render(covers, "smart")  # warm-up: OpenCV's import and the cascade's load
    images = drafts(covers)
    times: dict[str, list[float]] = {"center": [], "smart": [], "decode": [], "window": []}
    for round_ in range(args.rounds):
        order = ("center", "smart") if round_ % 2 == 0 else ("smart", "center")
        for crop in order:
            times[crop].append(cpu_ms(partial(render, covers, crop)))
        times["decode"].append(cpu_ms(lambda: drafts(covers)))
        times["window"].append(cpu_ms(lambda: [square_window(i) for i in images]))

    count = len(covers)
    print(
        f"smart crop benchmark: {count} covers of bench_render -> {COLS}x{ROWS} collage, "
        f"detector {detector_name()}; process CPU time, {args.rounds} paired rounds"
    )
    print(f"\n  {'variant':<8} {'best ms':>8} {'median ms':>10} {'per cover':>10}")
    for name in ("center", "smart", "decode", "window"):
        best, median = min(times[name]), statistics.median(times[name])
        print(f"  {name:<8} {best:>8.1f} {median:>10.1f} {median / count:>9.2f}")
    paired = statistics.median(s / c for s, c in zip(times["smart"], times["center"], strict=True))
    verdict = "OK" if paired <= TARGET else "MISSED"
    print(f"\n  smart / center render: {paired:.2f}x paired median  (<= {TARGET}x  {verdict})")
    window = statistics.median(times["window"]) / statistics.median(times["decode"])
    print(f"  smart window alone / draft decode: {window:.2f}x")

    print()
    for label, composed in (("face covers", False), ("composed covers", True)):
        timings = per_cover(face_covers(composed))
        windows, ratios = [w for w, _ in timings], [w / d for w, d in timings]
        median = statistics.median
        print(
            f"  {len(timings)} {label}, per cover: window median {median(windows):.1f} ms,"
            f" max {max(windows):.1f} ms; window / decode median {median(ratios):.1f}x,"
            f" max {max(ratios):.1f}x"
        )
    held, count = examples_framed()
    print(f"\n  bundled examples: the smart window holds the astronaut's face on {held}/{count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
