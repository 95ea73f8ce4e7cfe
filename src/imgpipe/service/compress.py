"""Compression: an image becomes a JPEG bounded by 800x800 at quality 85, never larger.

Used by ``imgpipe compress``, ``POST /v1/compress`` and the Lambda handler's
upload events (``uploads/photo.png`` -> ``compressed/uploads/photo.png``)::

    result = compress_image(data, CompressOptions.from_settings(settings))
    result.kept_original  # True when re-encoding would not have saved bytes

The HTTP service compresses through a :class:`Compressor`: its own bounded pool
of threads, and a :class:`~imgpipe.imaging.budget.DecodeBudget` shared with
comparison, so concurrent requests never hold more decoded pixels than the budget::

    compressor = Compressor(CompressOptions.from_settings(settings), budget)
    result = await compressor.compress(data)
"""

from __future__ import annotations

import asyncio
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgpipe.domain.keys import COMPRESSED_PREFIX
from imgpipe.imaging.budget import DecodeBudget
from imgpipe.imaging.decode import load_fitted
from imgpipe.imaging.formats import media_type
from imgpipe.ports import ObjectStore

if TYPE_CHECKING:
    from imgpipe.settings import Settings

__all__ = [
    "COMPRESSED_PREFIX",
    "CompressOptions",
    "CompressResult",
    "Compressor",
    "compress_image",
    "compress_object",
    "compressed_key",
    "is_compressible_key",
]

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".avif", ".heic", ".heif")


@dataclass(frozen=True)
class CompressOptions:
    max_size: int = 800  # longest side of the result, px
    quality: int = 85
    max_pixels: int = 64_000_000  # refused before decoding above this

    @classmethod
    def from_settings(
        cls, settings: Settings, *, max_size: int | None = None, quality: int | None = None
    ) -> CompressOptions:
        """The settings' limits, with the given non-None overrides (CLI flags)."""
        return cls(
            max_size=max_size or settings.compress_max_size,
            quality=quality or settings.compress_quality,
            max_pixels=settings.max_image_pixels,
        )


@dataclass(frozen=True)
class CompressResult:
    data: bytes
    original_size: int
    compressed_size: int
    width: int
    height: int
    kept_original: bool  # the input was already smaller than any re-encoding

    @property
    def ratio(self) -> float:
        """compressed / original (1.0 when the original was kept)."""
        return round(self.compressed_size / self.original_size, 4) if self.original_size else 1.0

    def to_dict(self) -> dict[str, object]:
        return {
            "original_size": self.original_size,
            "compressed_size": self.compressed_size,
            "ratio": self.ratio,
            "width": self.width,
            "height": self.height,
            "kept_original": self.kept_original,
        }


def compress_image(
    data: bytes, options: CompressOptions = CompressOptions(), budget: DecodeBudget | None = None
) -> CompressResult:
    """Fit inside ``max_size`` and encode as optimized progressive JPEG; ImageError if unusable.

    With a ``budget``, the decode first waits for room for its pixels (blocking).
    """
    image = load_fitted(data, options.max_size, max_pixels=options.max_pixels, budget=budget)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=options.quality, optimize=True, progressive=True)
    encoded = buffer.getvalue()
    if len(encoded) >= len(data):
        return CompressResult(data, len(data), len(data), *image.size, kept_original=True)
    return CompressResult(encoded, len(data), len(encoded), *image.size, kept_original=False)


class Compressor:
    """:func:`compress_image` for the event loop: on its own threads, within a decode budget.

    Decoding is CPU-bound, so the pool has one thread per CPU (``workers=0``);
    requests beyond it wait holding only their bytes. The pool's threads wait
    for the budget, never the event loop or the default executor.
    """

    def __init__(self, options: CompressOptions, budget: DecodeBudget, workers: int = 0) -> None:
        self.options = options
        self.budget = budget
        self._pool = ThreadPoolExecutor(
            max_workers=workers or os.cpu_count() or 1, thread_name_prefix="compress"
        )

    async def compress(self, data: bytes) -> CompressResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, compress_image, data, self.options, self.budget
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def is_compressible_key(key: str, prefix: str) -> bool:
    """An image under the watched prefix, and never our own output (no event loops)."""
    return (
        key.startswith(prefix)
        and not key.startswith(COMPRESSED_PREFIX)
        and key.lower().endswith(EXTENSIONS)
    )


def compressed_key(key: str) -> str:
    return COMPRESSED_PREFIX + key


def compress_object(
    store: ObjectStore, key: str, options: CompressOptions = CompressOptions()
) -> tuple[str, CompressResult]:
    """Compress the object at ``key`` into ``compressed/<key>`` with size metadata."""
    result = compress_image(store.get(key), options)
    target = compressed_key(key)
    store.put(
        target,
        result.data,
        content_type=media_type(result.data),  # a kept original keeps its own type
        metadata={
            "original-size": str(result.original_size),
            "compressed-size": str(result.compressed_size),
        },
    )
    return target, result
