"""The HTTP caching rules the cover cache follows: the small private-cache part of RFC 9111.

Pure functions over header values and a ``now``; the downloader does the I/O.

* A response is worth storing only if it can be reused: it has a validator
  (``ETag``, ``Last-Modified``) to revalidate with, or an explicit freshness
  lifetime (``Cache-Control: max-age``). ``no-store`` is never stored.
* Freshness comes only from ``max-age`` (less the ``Age`` the response had
  already spent in other caches). No heuristics from ``Last-Modified``:
  a cover the server gave no lifetime to is always asked about again.
  ``immutable`` alone grants nothing: it only says a response will not
  change *while fresh* (RFC 8246), so it rides on ``max-age``.
  ``s-maxage`` is for shared caches and ignored; ``private`` is us.
* ``no-cache`` stores, but every use asks the server first.

Example:

>>> lifetime("public, max-age=31536000, immutable", age="60")
31535940.0
>>> lifetime("max-age=600, no-cache"), lifetime("immutable"), lifetime(None)
(0.0, 0.0, 0.0)
>>> cover = CachedCover("u", 3, "jpeg", "u", etag='"v1"', last_modified="Tue, 01 Apr 2025")
>>> conditional_headers(cover)
{'If-None-Match': '"v1"', 'If-Modified-Since': 'Tue, 01 Apr 2025'}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from imgpipe.fetch.cover_cache import CachedCover

__all__ = [
    "conditional_headers",
    "cover_for",
    "directives",
    "is_fresh",
    "lifetime",
    "renewed",
]


def directives(cache_control: str | None) -> dict[str, str | None]:
    """``Cache-Control`` as ``{name: value or None}``, names lowercased.

    >>> directives('public, max-age="600", No-Cache')
    {'public': None, 'max-age': '600', 'no-cache': None}
    """
    found: dict[str, str | None] = {}
    for part in (cache_control or "").split(","):
        name, sep, value = part.strip().partition("=")
        if name:
            found.setdefault(name.strip().lower(), value.strip().strip('"') if sep else None)
    return found


def _seconds(value: str | None) -> float | None:
    text = (value or "").strip()
    return float(text) if text.isdigit() else None


def lifetime(cache_control: str | None, age: str | None = None) -> float:
    """Seconds a response stays fresh from now on; 0 means "ask the server every time"."""
    found = directives(cache_control)
    if "no-cache" in found or "no-store" in found:
        return 0.0
    # A malformed max-age makes the response stale (RFC 9111 4.2.1), never fresh.
    max_age = _seconds(found.get("max-age"))
    if max_age is None:
        return 0.0
    return max(0.0, max_age - (_seconds(age) or 0.0))


def _validators(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    etag = (headers.get("etag") or "").strip() or None
    modified = (headers.get("last-modified") or "").strip() or None
    return etag, modified


def cover_for(
    url: str,
    size: int,
    *,
    image_format: str,
    content_type: str | None,
    hops: tuple[str, ...],
    headers: Mapping[str, str],
    now: float,
) -> CachedCover | None:
    """The entry to store for a 200 response, or None when it must not (or need not) be kept.

    ``headers`` are the final response's, with lowercase names (``httpx.Headers`` is fine).
    """
    cache_control = headers.get("cache-control")
    if "no-store" in directives(cache_control):
        return None
    etag, modified = _validators(headers)
    fresh_for = lifetime(cache_control, headers.get("age"))
    if etag is None and modified is None and fresh_for <= 0:
        return None  # it could never be used: no way to revalidate, never fresh
    return CachedCover(
        url=url,
        size=size,
        image_format=image_format,
        final_url=hops[-1] if hops else url,
        content_type=content_type,
        hops=hops,
        etag=etag,
        last_modified=modified,
        lifetime=fresh_for,
        fresh_until=now + fresh_for if fresh_for > 0 else 0.0,
    )


def renewed(cover: CachedCover, headers: Mapping[str, str], now: float) -> CachedCover:
    """``cover`` after a 304 with ``headers``: validators and lifetime as the 304 updates them.

    A 304 carries the headers that would have come with a 200 (RFC 9111 4.3.4);
    without a ``Cache-Control`` of its own the stored lifetime applies anew.

    >>> old = CachedCover("u", 3, "jpeg", "u", etag='"v1"', lifetime=60.0, fresh_until=100.0)
    >>> renewed(old, {}, now=1000.0).fresh_until
    1060.0
    >>> renewed(old, {"cache-control": "no-cache", "etag": '"v1"'}, now=1000.0).fresh_until
    0.0
    """
    cache_control = headers.get("cache-control")
    if cache_control is None:
        fresh_for = cover.lifetime
    else:
        fresh_for = lifetime(cache_control, headers.get("age"))
    etag, modified = _validators(headers)
    return replace(
        cover,
        etag=etag or cover.etag,
        last_modified=modified or cover.last_modified,
        lifetime=fresh_for,
        fresh_until=now + fresh_for if fresh_for > 0 else 0.0,
    )


def is_fresh(cover: CachedCover, now: float) -> bool:
    """Whether ``cover`` may be used without asking the server."""
    return now < cover.fresh_until


def conditional_headers(cover: CachedCover) -> dict[str, str]:
    """The headers that ask the server "has this changed?" (empty: nothing to ask with)."""
    headers: dict[str, str] = {}
    if cover.etag is not None:
        headers["If-None-Match"] = cover.etag
    if cover.last_modified is not None:
        headers["If-Modified-Since"] = cover.last_modified
    return headers
