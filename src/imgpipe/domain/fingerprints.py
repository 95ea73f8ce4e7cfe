"""Content hashes and collage fingerprints. Pure. STUB."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["RENDER_VERSION", "collage_fingerprint", "content_hash"]

RENDER_VERSION = 1


def content_hash(data: bytes) -> str:
    raise NotImplementedError


def collage_fingerprint(
    image_hashes: Sequence[str], *, rows: int, cols: int, cell: int, quality: int
) -> str:
    raise NotImplementedError
