"""Rendering: canvas size, placement, white gaps, JPEG encoding; and decode + render together."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from imgpipe.domain.layout import plan_grid
from imgpipe.imaging.collage import render_collage
from imgpipe.imaging.decode import load_tile
from tests.support import covers
from tests.support.covers import WHITE, Color, color_close

CELL = 200


def distinct(index: int) -> Color:
    """35 colours at least 30 apart on some channel, so cells can't be mistaken."""
    return 30 + (index % 5) * 50, 30 + (index // 5) * 30, 230 - (index % 3) * 60


def solid_cells(n: int, size: int = CELL) -> list[Image.Image]:
    return [Image.new("RGB", (size, size), distinct(i)) for i in range(n)]


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return image.convert("RGB")


def centre(image: Image.Image, origin: tuple[int, int], size: int = CELL) -> object:
    return image.getpixel((origin[0] + size // 2, origin[1] + size // 2))


@pytest.mark.parametrize(
    ("n", "size"),
    [(35, (1400, 1000)), (8, (1400, 400)), (7, (1400, 200)), (1, (1400, 200))],
)
def test_collage_size(n: int, size: tuple[int, int]) -> None:
    grid = plan_grid(n, rows=5, cols=7, cell_size=CELL)
    image = decode(render_collage(solid_cells(n), grid, quality=95))
    assert image.size == size


@pytest.mark.parametrize("n", [35, 9, 1])
def test_each_cell_lands_at_its_origin_and_the_rest_is_white(n: int) -> None:
    grid = plan_grid(n, rows=5, cols=7, cell_size=CELL)
    image = decode(render_collage(solid_cells(n), grid, quality=95))
    for index in range(n):
        pixel = centre(image, grid.origin(index))
        assert color_close(pixel, distinct(index), tol=6), (index, pixel)
    empty = grid.rows * grid.cols - n  # the tail of the last row
    for slot in range(n, n + empty):
        row, col = divmod(slot, grid.cols)
        pixel = centre(image, (col * CELL, row * CELL))
        assert color_close(pixel, WHITE, tol=2), (slot, pixel)


def test_cells_fill_their_square_exactly() -> None:
    grid = plan_grid(2, rows=1, cols=3, cell_size=50)
    red = (220, 20, 20)
    cells = [Image.new("RGB", (50, 50), red), Image.new("RGB", (50, 50), red)]
    image = decode(render_collage(cells, grid, quality=100))
    assert color_close(image.getpixel((2, 2)), red, tol=6)
    assert color_close(image.getpixel((97, 47)), red, tol=6)
    assert color_close(image.getpixel((102, 2)), WHITE, tol=6)  # third slot


def test_non_rgb_cells_are_converted() -> None:
    grid = plan_grid(2, rows=1, cols=2, cell_size=40)
    cells = [Image.new("L", (40, 40), 100), Image.new("RGBA", (40, 40), (10, 200, 10, 255))]
    image = decode(render_collage(cells, grid, quality=95))
    assert color_close(centre(image, grid.origin(0), 40), (100, 100, 100), tol=6)
    assert color_close(centre(image, grid.origin(1), 40), (10, 200, 10), tol=6)


def test_encodes_optimized_jpeg_at_the_given_quality(monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[tuple[object, dict[str, Any]]] = []
    original = Image.Image.save

    def spy(self: Image.Image, fp: Any, format: Any = None, **params: Any) -> None:
        saved.append((format, params))
        original(self, fp, format, **params)

    monkeypatch.setattr(Image.Image, "save", spy)
    grid = plan_grid(3, rows=5, cols=7, cell_size=CELL)
    render_collage(solid_cells(3), grid, quality=87)
    assert saved == [("JPEG", {"quality": 87, "optimize": True})]


def test_quality_changes_the_bytes() -> None:
    grid = plan_grid(2, rows=1, cols=2, cell_size=CELL)
    cells = [
        load_tile(covers.noisy_jpeg(seed=s), CELL, max_pixels=10**8, min_size=1) for s in (1, 2)
    ]
    high = render_collage(cells, grid, quality=95)
    low = render_collage(cells, grid, quality=40)
    assert len(low) < len(high) * 0.7
    assert decode(low).size == decode(high).size == (400, 200)


def test_rejects_a_cell_count_that_does_not_match_the_grid() -> None:
    grid = plan_grid(3, rows=5, cols=7, cell_size=CELL)
    with pytest.raises(ValueError, match="2 tiles for a grid of 3"):
        render_collage(solid_cells(2), grid, quality=95)


def test_rejects_a_cell_of_the_wrong_size() -> None:
    grid = plan_grid(2, rows=5, cols=7, cell_size=CELL)
    cells = [*solid_cells(1), Image.new("RGB", (CELL, CELL + 1))]
    with pytest.raises(ValueError, match="tile 1"):
        render_collage(cells, grid, quality=95)


@pytest.mark.parametrize("quality", [0, 101])
def test_rejects_quality_outside_jpeg_range(quality: int) -> None:
    grid = plan_grid(1, rows=5, cols=7, cell_size=CELL)
    with pytest.raises(ValueError, match="quality"):
        render_collage(solid_cells(1), grid, quality=quality)


def test_mixed_covers_end_to_end() -> None:
    """Every supported kind of cover, decoded and rendered, lands where planned."""
    sources: list[tuple[bytes, Color]] = [
        (covers.solid_jpeg(covers.RED, (1080, 1920)), covers.RED),
        (covers.solid_png(covers.GREEN), covers.GREEN),
        (covers.solid_webp(covers.BLUE), covers.BLUE),
        (covers.cmyk_jpeg((0, 0, 255, 0)), (255, 255, 0)),
        (covers.animated_gif((covers.YELLOW, covers.RED)), covers.YELLOW),
        (covers.gray16_png(0x8000), (128, 128, 128)),
        (covers.palette_png(covers.RED), WHITE),  # centre sits in the transparent half
        (covers.exif_rotated_jpeg(6, left=covers.GREEN, right=covers.BLUE), covers.GREEN),
    ]
    cells = [load_tile(data, CELL, max_pixels=10**8, min_size=50) for data, _ in sources]
    grid = plan_grid(len(cells), rows=5, cols=7, cell_size=CELL)
    image = decode(render_collage(cells, grid, quality=95))
    assert image.size == (1400, 400)
    for index, (_, expected) in enumerate(sources):
        x, y = grid.origin(index)
        # A quarter down the cell, where the half-and-half covers are uniform too.
        pixel = image.getpixel((x + CELL // 2, y + CELL // 4))
        assert color_close(pixel, expected, tol=14), (index, pixel)
    assert color_close(image.getpixel((1300, 300)), WHITE, tol=2)  # empty slot 13
