"""Covers named by a path relative to a CSV that lives in an object store (S3).

A CSV uploaded to ``csv-files/team/covers.csv`` may list ``img/a.jpg``: that is
the object ``csv-files/team/img/a.jpg`` of the same bucket. Everything else
(http(s) URLs, refusals) goes to the wrapped downloader::

    fetcher = StoreRelativeFetcher(downloader, inputs, "csv-files/team/covers.csv", max_bytes)
    result = await fetcher.fetch("img/a.jpg")
"""

from __future__ import annotations

import asyncio
import posixpath
from typing import Protocol

from imgpipe.domain.records import Reason
from imgpipe.errors import StorageError
from imgpipe.fetch import sources
from imgpipe.fetch.results import FetchResult
from imgpipe.imaging.formats import SNIFF_BYTES, sniff_format
from imgpipe.ports import ObjectStore

__all__ = ["StoreRelativeFetcher"]


class _Fetcher(Protocol):
    async def fetch(self, url: str) -> FetchResult: ...


class StoreRelativeFetcher:
    """Relative paths read from ``store`` beside ``csv_key``; the rest from ``fallback``."""

    def __init__(
        self, fallback: _Fetcher, store: ObjectStore, csv_key: str, max_bytes: int
    ) -> None:
        self.fallback = fallback
        self.store = store
        self.folder = posixpath.dirname(csv_key)
        self.max_bytes = max_bytes

    async def fetch(self, url: str) -> FetchResult:
        text = url.strip()
        if sources.source_scheme(text) != "" or not text:
            return await self.fallback.fetch(url)  # http(s), file://, other schemes
        key = posixpath.normpath(posixpath.join(self.folder, text.replace("\\", "/")))
        if text.startswith("/") or key.startswith("../") or key == "..":
            detail = f"path {text!r} leaves the CSV's folder"
            return FetchResult(url, None, Reason.INVALID_URL, detail, attempts=0)
        try:
            data = await asyncio.to_thread(self._read, key)
        except StorageError as exc:
            return FetchResult(url, None, Reason.FILE_NOT_FOUND, str(exc))
        if data is None or len(data) > self.max_bytes:
            detail = f"object {key} is over the limit of {self.max_bytes} bytes"
            return FetchResult(url, None, Reason.TOO_LARGE, detail)
        fmt = sniff_format(data[:SNIFF_BYTES])
        if fmt is None:
            detail = f"content is not an image (starts with {data[:16]!r})"
            return FetchResult(url, None, Reason.NOT_AN_IMAGE, detail)
        return FetchResult(url, data, final_url=key, image_format=fmt)

    def _read(self, key: str) -> bytes | None:
        """The object's bytes, or None when it is too large (checked before reading
        where the store can tell the size, as S3 can)."""
        if self.store.size(key) > self.max_bytes:
            return None
        return self.store.get(key)
