"""The cover cache as a :class:`~.downloader.Downloader` uses it: under today's limits.

A cache entry was fetched under the policy of its day. Using it must not
get around anything the policy checks now:

* an entry larger than today's ``max_bytes`` is not used at all (not even
  to revalidate: the plain GET then stops at the limit, as it would have);
* a fresh entry is served without a request only if a request could be made
  now: every hop it came through passes today's address guard (resolved
  as at connect time) and the redirect chain fits ``max_redirects``.
  Otherwise the request is made, and the guard refuses or allows it as usual.

Disk work runs in worker threads so the event loop never waits on it.

Example::

    reuse = CoverReuse(cache, guard, max_bytes=policy.max_bytes, max_redirects=5, slots=slots)
    cover = await reuse.entry(url)
    data = await reuse.fresh(cover) if cover else None   # bytes: no request needed
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from imgpipe.errors import FetchError
from imgpipe.fetch import revalidation

if TYPE_CHECKING:
    from imgpipe.fetch.cover_cache import CachedCover, CoverCache
    from imgpipe.fetch.netguard import AddressGuard

__all__ = ["CoverReuse"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class CoverReuse:
    """Finds, serves, renews and keeps cache entries for one downloader.

    ``slots`` bounds how many bodies are read at once, like the downloader's
    requests, so a batch of fresh hits cannot pull the whole cache into RAM.
    """

    def __init__(
        self,
        cache: CoverCache,
        guard: AddressGuard,
        *,
        max_bytes: int,
        max_redirects: int,
        slots: asyncio.Semaphore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cache = cache
        self._guard = guard
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects
        self._slots = slots
        self._clock = clock

    async def entry(self, url: str) -> CachedCover | None:
        """The usable entry of ``url`` (header only), or None."""
        cover = await asyncio.to_thread(self._cache.lookup, url)
        if cover is None or cover.size > self._max_bytes:
            return None
        return cover

    async def fresh(self, cover: CachedCover) -> bytes | None:
        """The bytes of ``cover`` if it may be used without any request now, else None."""
        if not revalidation.is_fresh(cover, self._clock()) or not await self._reachable(cover):
            return None
        return await self._load(cover)

    async def revalidated(self, cover: CachedCover, headers: Mapping[str, str]) -> bytes | None:
        """The bytes of ``cover`` after a 304 with ``headers``; None if the entry went away."""
        data = await self._load(cover)
        if data is not None:
            renewed = revalidation.renewed(cover, headers, self._clock())
            if renewed != cover:  # a new lifetime or validator: worth a rewrite
                await asyncio.to_thread(self._cache.store, renewed, data)
        return data

    async def keep(
        self,
        url: str,
        data: bytes,
        *,
        image_format: str,
        content_type: str | None,
        hops: tuple[str, ...],
        headers: Mapping[str, str],
    ) -> None:
        """Store a 200 image response, or drop the old entry if this one must not be kept."""
        cover = revalidation.cover_for(
            url,
            len(data),
            image_format=image_format,
            content_type=content_type,
            hops=hops,
            headers=headers,
            now=self._clock(),
        )
        if cover is None:
            # An old entry would keep its stale validators and maybe a
            # lifetime the server no longer grants.
            await asyncio.to_thread(self._cache.discard, url)
        else:
            await asyncio.to_thread(self._cache.store, cover, data)

    async def _load(self, cover: CachedCover) -> bytes | None:
        async with self._slots:
            return await asyncio.to_thread(self._cache.load, cover)

    async def _reachable(self, cover: CachedCover) -> bool:
        """Whether today's policy lets a request reach every hop ``cover`` came through."""
        if not cover.hops or len(cover.hops) > self._max_redirects + 1:
            return False
        import httpx  # here: a run of local files never imports it (see Downloader)

        for hop in cover.hops:
            try:
                url = httpx.URL(hop)
            except (httpx.InvalidURL, ValueError):
                return False
            port = url.port or _DEFAULT_PORTS.get(url.scheme)
            if port is None or not url.host:
                return False
            try:
                # The same guard and resolver a connection would use: a DNS
                # lookup, no HTTP. A name that now resolves to a refused
                # address, or no longer resolves, is not served unasked.
                await self._guard.vet(url.host, port)
            except FetchError:
                return False
        return True
