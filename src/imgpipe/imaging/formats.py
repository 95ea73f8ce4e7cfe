"""Recognise image formats by magic bytes (no Pillow needed). STUB."""

from __future__ import annotations

__all__ = ["sniff_format"]


def sniff_format(head: bytes) -> str | None:
    """``"jpeg"``, ``"png"``, ``"gif"``, ``"webp"``, ``"bmp"``, ``"tiff"`` or None."""
    raise NotImplementedError
