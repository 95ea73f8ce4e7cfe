"""Grid geometry of a collage. Pure. STUB."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Grid", "center_crop_box", "plan_grid"]


@dataclass(frozen=True)
class Grid:
    rows: int  # actual rows used: ceil(count / cols)
    cols: int
    cell: int
    count: int

    @property
    def width(self) -> int:
        return self.cols * self.cell

    @property
    def height(self) -> int:
        return self.rows * self.cell

    def origin(self, index: int) -> tuple[int, int]:
        raise NotImplementedError


def plan_grid(n_images: int, *, rows: int, cols: int, cell: int) -> Grid:
    raise NotImplementedError


def center_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    raise NotImplementedError
