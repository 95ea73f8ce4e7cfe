"""Grid geometry: pure arithmetic, no images."""

from __future__ import annotations

import pytest

from imgpipe.domain.layout import Grid, center_crop_box, plan_grid


@pytest.mark.parametrize(
    ("n_images", "rows_used", "count", "size"),
    [
        (35, 5, 35, (1400, 1000)),
        (8, 2, 8, (1400, 400)),
        (7, 1, 7, (1400, 200)),
        (1, 1, 1, (1400, 200)),  # full column width even for one image
        (36, 5, 35, (1400, 1000)),  # capped at rows * cols
        (500, 5, 35, (1400, 1000)),
    ],
)
def test_plan_grid_default_collage(
    n_images: int, rows_used: int, count: int, size: tuple[int, int]
) -> None:
    grid = plan_grid(n_images, rows=5, cols=7, cell_size=200)
    assert (grid.rows, grid.cols, grid.cell_size, grid.count) == (rows_used, 7, 200, count)
    assert (grid.width, grid.height) == size


def test_plan_grid_other_shapes() -> None:
    assert plan_grid(5, rows=2, cols=3, cell_size=40) == Grid(rows=2, cols=3, cell_size=40, count=5)
    assert plan_grid(3, rows=1, cols=1, cell_size=10) == Grid(rows=1, cols=1, cell_size=10, count=1)
    tall = plan_grid(4, rows=4, cols=1, cell_size=50)
    assert (tall.width, tall.height) == (50, 200)


@pytest.mark.parametrize("n_images", [0, -1])
def test_plan_grid_needs_an_image(n_images: int) -> None:
    with pytest.raises(ValueError, match="at least one image"):
        plan_grid(n_images, rows=5, cols=7, cell_size=200)


@pytest.mark.parametrize(("rows", "cols", "cell"), [(0, 7, 200), (5, 0, 200), (5, 7, 0)])
def test_plan_grid_rejects_empty_geometry(rows: int, cols: int, cell: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        plan_grid(3, rows=rows, cols=cols, cell_size=cell)


def test_origins_are_row_major() -> None:
    grid = plan_grid(35, rows=5, cols=7, cell_size=200)
    assert grid.origin(0) == (0, 0)
    assert grid.origin(6) == (1200, 0)
    assert grid.origin(7) == (0, 200)
    assert grid.origin(34) == (1200, 800)
    origins = [grid.origin(i) for i in range(grid.count)]
    assert len(set(origins)) == 35  # no two cells overlap
    assert all(0 <= x < grid.width and 0 <= y < grid.height for x, y in origins)


@pytest.mark.parametrize("index", [-1, 8])
def test_origin_outside_the_grid(index: int) -> None:
    grid = plan_grid(8, rows=5, cols=7, cell_size=200)
    with pytest.raises(IndexError):
        grid.origin(index)


@pytest.mark.parametrize(
    ("size", "box"),
    [
        ((1080, 1920), (0, 420, 1080, 1500)),
        ((1920, 1080), (420, 0, 1500, 1080)),
        ((300, 300), (0, 0, 300, 300)),
        ((301, 200), (50, 0, 250, 200)),  # odd leftover goes right
        ((200, 203), (0, 1, 200, 201)),
        ((1, 5), (0, 2, 1, 3)),
    ],
)
def test_center_crop_box(size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    assert center_crop_box(*size) == box
    left, top, right, bottom = box
    assert right - left == bottom - top == min(size)


@pytest.mark.parametrize("size", [(0, 10), (10, 0), (-5, 5)])
def test_center_crop_box_rejects_empty_images(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        center_crop_box(*size)
