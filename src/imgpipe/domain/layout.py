"""Grid geometry of a collage. Pure: no Pillow, no I/O.

A collage is a grid of square cells filled row-major. Like the original system,
the canvas always spans every column, even when fewer images than columns are
present, and only as many rows as the images need::

    >>> grid = plan_grid(8, rows=5, cols=7, cell_size=200)
    >>> (grid.rows, grid.count, grid.width, grid.height)
    (2, 8, 1400, 400)
    >>> grid.origin(7)
    (0, 200)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Grid", "center_crop_box", "plan_grid"]


@dataclass(frozen=True)
class Grid:
    """Where ``count`` square cells of ``cell`` px go on a ``cols``-wide canvas.

    ``rows`` is the number of rows actually used (``ceil(count / cols)``), not
    the configured maximum.
    """

    rows: int
    cols: int
    cell_size: int  # px, square
    count: int

    @property
    def width(self) -> int:
        return self.cols * self.cell_size

    @property
    def height(self) -> int:
        return self.rows * self.cell_size

    def origin(self, index: int) -> tuple[int, int]:
        """Top-left corner ``(x, y)`` of cell ``index``, counting row-major.

        >>> Grid(rows=2, cols=3, cell_size=10, count=5).origin(4)
        (10, 10)
        """
        if not 0 <= index < self.count:
            raise IndexError(f"cell {index} outside a grid of {self.count}")
        row, col = divmod(index, self.cols)
        return col * self.cell_size, row * self.cell_size


def plan_grid(n_images: int, *, rows: int, cols: int, cell_size: int) -> Grid:
    """Lay out ``n_images`` (capped at ``rows * cols``) in square cells of ``cell_size`` px.

    >>> plan_grid(35, rows=5, cols=7, cell_size=200).height
    1000
    >>> plan_grid(40, rows=5, cols=7, cell_size=200).count
    35
    """
    if n_images < 1:
        raise ValueError(f"a collage needs at least one image, got {n_images}")
    if rows < 1 or cols < 1 or cell_size < 1:
        raise ValueError(
            f"rows, cols and cell size must be positive, got {rows}, {cols}, {cell_size}"
        )
    count = min(n_images, rows * cols)
    rows_used = -(-count // cols)  # ceiling division without floats
    return Grid(rows=rows_used, cols=cols, cell_size=cell_size, count=count)


def center_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centered square of a ``width`` x ``height`` image, as a crop box.

    The box is ``(left, top, right, bottom)`` in Pillow's convention (right and
    bottom exclusive); an odd leftover pixel goes to the right/bottom side.

    >>> center_crop_box(1080, 1920)
    (0, 420, 1080, 1500)
    >>> center_crop_box(300, 200)
    (50, 0, 250, 200)
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return left, top, left + side, top + side
