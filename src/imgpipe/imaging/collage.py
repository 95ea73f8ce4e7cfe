"""Compose cells into a grid collage and encode it as JPEG.

The cells come from :func:`imgpipe.imaging.decode.load_cell` (RGB, square,
``grid.cell`` px) and the geometry from :func:`imgpipe.domain.layout.plan_grid`;
this module only pastes and encodes, so it stays cheap next to decoding.

>>> from PIL import Image
>>> from imgpipe.domain.layout import plan_grid
>>> grid = plan_grid(2, rows=5, cols=7, cell=10)
>>> cells = [Image.new("RGB", (10, 10), (255, 0, 0))] * 2
>>> data = render_collage(cells, grid, quality=95)
>>> data[:3] == b"\\xff\\xd8\\xff", Image.open(io.BytesIO(data)).size
(True, (70, 10))
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image

from imgpipe.domain.layout import Grid

__all__ = ["render_collage"]

_BACKGROUND = (255, 255, 255)  # empty cells stay white, as in the original system


def render_collage(cells: Sequence[Image.Image], grid: Grid, *, quality: int) -> bytes:
    """Paste ``cells[i]`` at ``grid.origin(i)`` on a white canvas; return JPEG bytes.

    ``len(cells)`` must equal ``grid.count`` and every cell must be
    ``grid.cell`` px square. The JPEG is Huffman-optimized: a few milliseconds
    more for a 1400x1000 collage, typically a few percent fewer bytes to store
    and serve.
    """
    if len(cells) != grid.count:
        raise ValueError(f"{len(cells)} cells for a grid of {grid.count}")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be within 1..100, got {quality}")
    expected = (grid.cell, grid.cell)
    canvas = Image.new("RGB", (grid.width, grid.height), _BACKGROUND)
    for index, cell in enumerate(cells):
        if cell.size != expected:
            raise ValueError(f"cell {index} is {cell.size}, expected {expected}")
        # paste() converts modes itself, but an RGB cell is a straight copy.
        canvas.paste(cell if cell.mode == "RGB" else cell.convert("RGB"), grid.origin(index))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()
