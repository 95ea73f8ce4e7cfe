"""What fetching gives back: one :class:`FetchResult` per source, :class:`FetchCounts` per run.

They live apart from :mod:`.downloader` so that services and other fetchers
(:mod:`.store_source`) can speak them without importing the downloader.

Example:

>>> result = FetchResult("https://cdn.example/a.jpg", b"\\xff\\xd8\\xff", image_format="jpeg")
>>> result.ok, result.from_cache
(True, False)
>>> FetchCounts(from_cache=3, revalidated=1, downloaded=2).total
6
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FetchCounts", "FetchResult"]


@dataclass(frozen=True)
class FetchResult:
    """The outcome of fetching one source: ``data`` when :attr:`ok`, else ``reason``.

    ``attempts`` counts the requests made: 0 when the source was refused
    without trying (bad URL, unsupported scheme) or served from the cover
    cache without asking the server. ``image_format`` is the sniffed format
    of ``data``. ``from_cache`` means the bytes came from the cover cache,
    either still fresh (``status_code`` None) or confirmed by a 304.
    """

    url: str
    data: bytes | None
    reason: str | None = None
    detail: str = ""
    attempts: int = 1
    status_code: int | None = None
    content_type: str | None = None
    final_url: str = ""
    image_format: str | None = None
    from_cache: bool = False

    @property
    def ok(self) -> bool:
        return self.data is not None and self.reason is None


@dataclass(frozen=True)
class FetchCounts:
    """How the successful http(s) fetches of a downloader got their bytes.

    ``from_cache``: a fresh cache entry, no request. ``revalidated``: the
    server answered 304 to a conditional request. ``downloaded``: a full body.
    """

    from_cache: int = 0
    revalidated: int = 0
    downloaded: int = 0

    @property
    def total(self) -> int:
        return self.from_cache + self.revalidated + self.downloaded
