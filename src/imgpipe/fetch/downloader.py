"""Async downloads with retries, limits and an SSRF guard.

:meth:`Downloader.fetch` turns one source string into a :class:`FetchResult`:
the bytes of an image, or a reason code (:class:`imgpipe.domain.records.Reason`,
``http_<status>``) and a short human ``detail``. It never raises for a problem
with one URL, so a batch can ``asyncio.gather`` hundreds of fetches.

Per request: a per-host slot, then a global slot, then one deadline of
``policy.timeout`` seconds covering connect, headers and the whole body (a body
that trickles in forever still ends as ``timeout``). Redirects are followed by
hand so every hop goes through the address guard (see :mod:`.netguard`).
Connection errors, timeouts, 429 and 5xx are retried with exponential backoff
and jitter, honouring ``Retry-After``. Whether the body is an image is decided
by its magic bytes, never by ``Content-Type``.

With a :class:`~.cover_cache.CoverCache`, http(s) covers are kept on disk by
URL: a fresh entry is served without a request, one with validators is asked
about with ``If-None-Match`` / ``If-Modified-Since`` (a 304 serves the cached
bytes), and a 200 image replaces it (see :mod:`.cover_reuse`, :mod:`.revalidation`).

Example::

    policy = spec.fetch
    cache = CoverCache(data_dir / "cache" / "covers", settings.cache_max_bytes)
    async with Downloader(policy, base_dir=csv_path.parent, cache=cache) as downloader:
        results = await asyncio.gather(*(downloader.fetch(u) for u in urls))
    good = [r.data for r in results if r.ok]
    downloader.counts  # FetchCounts(from_cache=..., revalidated=..., downloaded=...)
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import weakref
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from imgpipe.domain.records import Reason
from imgpipe.domain.spec import FetchPolicy
from imgpipe.errors import BlockedAddressError, FetchError
from imgpipe.fetch import revalidation, sources
from imgpipe.fetch.cover_reuse import CoverReuse
from imgpipe.fetch.netguard import AddressGuard, ResolutionError
from imgpipe.fetch.responses import (
    Outcome,
    describe,
    image_outcome,
    read_response,
    request_failure,
)
from imgpipe.fetch.results import FetchCounts, FetchResult
from imgpipe.fetch.retrying import with_retries

if TYPE_CHECKING:
    import httpx

    from imgpipe.fetch.cover_cache import CachedCover, CoverCache
    from imgpipe.fetch.netguard import Resolver

# FetchResult and FetchCounts live in .results; re-exported for existing imports.
__all__ = ["Downloader", "FetchCounts", "FetchPolicy", "FetchResult"]

log = logging.getLogger(__name__)

POOL_SIZE = 8  # connections per httpx pool (see Downloader.__init__)


def _cached_result(
    url: str, cover: CachedCover, data: bytes, attempts: int, status_code: int | None
) -> FetchResult:
    return FetchResult(
        url,
        data,
        attempts=attempts,
        status_code=status_code,
        content_type=cover.content_type,
        final_url=cover.final_url,
        image_format=cover.image_format,
        from_cache=True,
    )


class Downloader:
    """Fetches sources under a :class:`FetchPolicy`; safe to share between tasks.

    ``base_dir`` anchors relative local paths (the CSV's folder). ``resolver``
    replaces system DNS for the address guard (tests, custom resolvers).
    ``cache`` keeps http(s) covers between runs (None or a 0-byte cache: off).
    """

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        base_dir: Path | None = None,
        resolver: Resolver | None = None,
        cache: CoverCache | None = None,
    ) -> None:
        self._policy = policy
        self._base_dir = base_dir
        self._slots = asyncio.Semaphore(policy.concurrency)
        # Weak values: a host's slot lives while a request holds or awaits it, so a
        # long-lived downloader (the worker, the API) does not keep every host it met.
        self._host_slots: weakref.WeakValueDictionary[str, asyncio.Semaphore] = (
            weakref.WeakValueDictionary()
        )
        guard = AddressGuard(policy.allowed_networks, resolver)
        self._guard = guard
        self._literal_verdicts: dict[str, str | None] = {}  # origin -> _literal_refusal
        self._reuse: CoverReuse | None = None
        if cache is not None and cache.enabled:
            self._reuse = CoverReuse(
                cache,
                guard,
                max_bytes=policy.max_bytes,
                max_redirects=policy.max_redirects,
                slots=self._slots,
            )
        self._tally: Counter[str] = Counter()
        # httpcore's pool scans every queued request against every connection
        # on each request and response (quadratic in the pool size): at 64
        # connections that cost more CPU than decoding the images. Several
        # small pools keep the scan short; a request takes a free "lane" (a
        # pool with a free connection) while it holds a global slot, and there
        # are exactly as many lanes as slots, so taking one never waits.
        lanes = [
            min(POOL_SIZE, policy.concurrency - start)
            for start in range(0, policy.concurrency, POOL_SIZE)
        ]
        # Made on the first http(s) request: a run of local files never imports
        # httpx (about 0.1 s) nor loads CA certificates (about 0.05 s a client).
        self._lane_sizes = lanes
        self._clients: list[httpx.AsyncClient] | None = None
        self._lanes: asyncio.Queue[int] = asyncio.Queue()
        for index, size in enumerate(lanes):
            for _ in range(size):
                self._lanes.put_nowait(index)

    def _client(self, lane: int) -> httpx.AsyncClient:
        if self._clients is None:  # no await in between: one task makes them
            import httpx

            # One TLS context for every lane: loading the CA bundle takes ~45 ms,
            # and a context is meant to be shared by many connections.
            tls = httpx.create_ssl_context()
            self._clients = [self._make_client(self._guard, n, tls) for n in self._lane_sizes]
        return self._clients[lane]

    def _make_client(
        self, guard: AddressGuard, connections: int, tls: ssl.SSLContext
    ) -> httpx.AsyncClient:
        import httpx

        from imgpipe.fetch.transport import GuardedTransport
        from imgpipe.version import user_agent

        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(
            transport=GuardedTransport(guard, limits=limits, ssl_context=tls),
            headers={"User-Agent": self._policy.user_agent or user_agent(), "Accept": "image/*"},
            # Our deadline per request is asyncio.timeout below; httpx's
            # per-operation timeouts stay as a backstop.
            timeout=httpx.Timeout(self._policy.timeout),
            follow_redirects=False,  # every hop must pass the guard: see _attempt
            trust_env=False,  # an environment proxy would bypass the address guard
        )

    async def fetch(self, url: str) -> FetchResult:
        """Fetch one source (http(s) URL, ``file://`` URL or path); never raises for it."""
        try:
            return await self._fetch(url)
        except Exception as exc:  # the contract: one bad URL never breaks a batch
            log.exception("unexpected error fetching %s", url)
            return FetchResult(
                url, None, reason=Reason.CONNECTION_ERROR, detail=f"unexpected {describe(exc)}"
            )

    @property
    def counts(self) -> FetchCounts:
        """How the successful http(s) fetches so far got their bytes."""
        tally = self._tally
        return FetchCounts(tally["from_cache"], tally["revalidated"], tally["downloaded"])

    async def aclose(self) -> None:
        """Close pooled connections."""
        clients, self._clients = self._clients or [], None
        await asyncio.gather(*(client.aclose() for client in clients))

    async def __aenter__(self) -> Downloader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _fetch(self, url: str) -> FetchResult:
        text = url.strip()
        if not text:
            return FetchResult(url, None, Reason.INVALID_URL, "empty source", attempts=0)
        kind = sources.classify_source(text)
        if kind is sources.SourceKind.LOCAL:
            return await self._fetch_local(url, text)
        if kind is sources.SourceKind.UNSUPPORTED:
            detail = f"scheme {sources.source_scheme(text)!r} is not supported (http, https, file)"
            return FetchResult(url, None, Reason.UNSUPPORTED_SCHEME, detail, attempts=0)
        refused = self._literal_refusal(text)
        if refused is not None:
            return FetchResult(url, None, Reason.BLOCKED_ADDRESS, refused, attempts=0)
        import httpx  # here, not at the top: see _client

        try:
            start = httpx.URL(text)
            host = start.host  # decodes an IDNA host: "xn--a" raises UnicodeError here
        except (httpx.InvalidURL, ValueError) as exc:
            return FetchResult(url, None, Reason.INVALID_URL, f"invalid URL: {exc}", attempts=0)
        if not host:
            return FetchResult(url, None, Reason.INVALID_URL, "URL has no host", attempts=0)
        return await self._fetch_remote(url, start)

    def _literal_refusal(self, text: str) -> str | None:
        """Why a URL whose host is written as an IP address may not be fetched, before I/O.

        The transport would refuse it at connect time anyway; deciding here costs
        microseconds instead of a trip through httpx (0.8 ms a URL, and httpx.URL
        alone checks a 250-character URL char by char), measured on a CSV whose
        every URL pointed at 10.0.0.1. Names still go through DNS in the transport.
        """
        # Keyed by what comes before the path ("https://10.0.0.1"): a batch's URLs share
        # a few hosts, and splitting every 250-character URL was most of the cost.
        start = text.find("//") + 2
        end = text.find("/", start) if start > 1 else -1
        origin = text[:end] if end > 0 else text
        if origin in self._literal_verdicts:
            return self._literal_verdicts[origin]
        try:
            host = urlsplit(origin).hostname or ""
        except ValueError:
            return None
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            verdict = None
        else:
            why = self._guard.refusal(ip)
            verdict = (
                None
                if why is None
                else (f"refused to connect to {ip}: {why} address outside the allowed networks")
            )
        if len(self._literal_verdicts) >= 4096:
            self._literal_verdicts.clear()
        self._literal_verdicts[origin] = verdict
        return verdict

    async def _fetch_local(self, url: str, text: str) -> FetchResult:
        if not self._policy.allow_local_files:
            detail = "local files are disabled (allow_local_files is off)"
            return FetchResult(url, None, Reason.UNSUPPORTED_SCHEME, detail, attempts=0)
        try:
            path = sources.local_path(text, self._base_dir)
        except FetchError as exc:
            return FetchResult(url, None, exc.reason, exc.detail, attempts=0)
        base = Outcome(final_url=path.as_uri())
        try:
            # The global slot bounds memory too: at most `concurrency` bodies at once.
            async with self._slots:
                read = sources.read_local_file
                data = await asyncio.to_thread(read, path, self._policy.max_bytes)
        except FetchError as exc:
            base = replace(base, reason=exc.reason, detail=exc.detail)
        else:
            base = image_outcome(data, base)
        return base.result(url, 1, base.detail)

    async def _fetch_remote(self, url: str, start: httpx.URL) -> FetchResult:
        reuse = self._reuse
        cover = await reuse.entry(url) if reuse is not None else None
        if reuse is not None and cover is not None:
            data = await reuse.fresh(cover)
            if data is not None:
                self._tally["from_cache"] += 1
                return _cached_result(url, cover, data, attempts=0, status_code=None)
            if not revalidation.conditional_headers(cover):
                cover = None  # nothing to ask "changed?" with: a plain GET
        outcome, attempts = await self._attempts(start, cover)
        if reuse is not None and cover is not None and outcome.not_modified:
            data = await reuse.revalidated(cover, outcome.headers or {})
            if data is not None:
                self._tally["revalidated"] += 1
                return _cached_result(url, cover, data, attempts, status_code=304)
            # The entry went away while we asked (another process evicted or
            # replaced it): ask again for the whole body.
            outcome, more = await self._attempts(start, None)
            attempts += more
        tries = f"{attempts} attempt" + ("" if attempts == 1 else "s")
        result = outcome.result(url, attempts, outcome.detail and f"{outcome.detail} after {tries}")
        if result.ok:
            self._tally["downloaded"] += 1
            if reuse is not None and result.data is not None and outcome.status_code == 200:
                await reuse.keep(
                    url,
                    result.data,
                    image_format=result.image_format or "",
                    content_type=result.content_type,
                    hops=outcome.hops,
                    headers=outcome.headers or {},
                )
        return result

    async def _attempts(self, start: httpx.URL, cover: CachedCover | None) -> tuple[Outcome, int]:
        """The retry loop (:mod:`imgpipe.fetch.retrying`): the last attempt's outcome
        and how many attempts there were."""
        policy = self._policy
        return await with_retries(
            lambda _number: self._attempt(start, cover),
            retries=policy.retries,
            backoff_base=policy.backoff_base,
            backoff_max=policy.backoff_max,
        )

    async def _attempt(self, start: httpx.URL, cover: CachedCover | None) -> Outcome:
        """One attempt: the request and the redirect hops it leads to.

        With a ``cover``, the hop that reached it last time asks whether it
        changed; only that hop, so a 304 can only vouch for that resource.
        """
        url = start
        hops: list[str] = []
        for _ in range(self._policy.max_redirects + 1):
            hops.append(str(url))
            ask = cover is not None and str(url) == cover.final_url
            conditions = revalidation.conditional_headers(cover) if ask and cover else {}
            step = await self._request(url, conditions)
            if isinstance(step, Outcome):
                return replace(step, hops=tuple(hops))
            if step.scheme not in ("http", "https"):
                return Outcome(
                    reason=Reason.UNSUPPORTED_SCHEME,
                    detail=f"redirected to unsupported scheme {step.scheme!r}",
                    final_url=str(step),
                )
            url = step
        return Outcome(
            reason=Reason.TOO_MANY_REDIRECTS,
            detail=f"more than {self._policy.max_redirects} redirects",
            final_url=str(url),
        )

    def _host_slot(self, host: str) -> asyncio.Semaphore:
        slot = self._host_slots.get(host)
        if slot is None:
            slot = self._host_slots[host] = asyncio.Semaphore(self._policy.per_host_concurrency)
        return slot

    async def _request(self, url: httpx.URL, conditions: Mapping[str, str]) -> Outcome | httpx.URL:
        """One HTTP request: an outcome, or the absolute URL a redirect points to.

        ``conditions`` are conditional headers; only then is a 304 an answer.
        """
        import httpx

        failed = Outcome(final_url=str(url))
        # Per-host slot first: a task waiting for a busy host must not sit on
        # one of the global slots that requests to other hosts could use.
        async with self._host_slot(url.host), self._slots:
            lane = self._lanes.get_nowait()  # a free lane always exists: see __init__
            try:
                async with asyncio.timeout(self._policy.timeout):
                    client = self._client(lane)
                    async with client.stream("GET", url, headers=conditions) as response:
                        limit = self._policy.max_bytes
                        return await read_response(
                            url, response, max_bytes=limit, conditional=bool(conditions)
                        )
            except (TimeoutError, httpx.TimeoutException):
                detail = f"no complete response within {self._policy.timeout:g} s"
                return replace(failed, reason=Reason.TIMEOUT, detail=detail, retryable=True)
            except BlockedAddressError as exc:
                return replace(failed, reason=exc.reason, detail=exc.detail)
            except ResolutionError as exc:
                retry = exc.transient
                return replace(failed, reason=exc.reason, detail=exc.detail, retryable=retry)
            except (httpx.TransportError, httpx.InvalidURL, UnicodeError) as exc:
                # A malformed Location (httpx parses it before we see the response)
                # or a failed TLS handshake: a reason, quietly; see request_failure.
                return request_failure(exc, failed)
            finally:
                self._lanes.put_nowait(lane)
