"""Compose cells into a grid collage and encode it. STUB."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from imgpipe.domain.layout import Grid

__all__ = ["render_collage"]


def render_collage(cells: Sequence[Image.Image], grid: Grid, *, quality: int) -> bytes:
    raise NotImplementedError
