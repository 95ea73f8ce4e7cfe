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

Example::

    policy = FetchPolicy.from_options(options)
    async with Downloader(policy, base_dir=csv_path.parent) as downloader:
        results = await asyncio.gather(*(downloader.fetch(u) for u in urls))
    good = [r.data for r in results if r.ok]
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
import weakref
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import TracebackType

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt

from imgpipe.domain.records import Reason, http_reason
from imgpipe.errors import BlockedAddressError, FetchError
from imgpipe.fetch import sources
from imgpipe.fetch.netguard import AddressGuard, GuardedTransport, ResolutionError, Resolver
from imgpipe.imaging.formats import SNIFF_BYTES, sniff_format
from imgpipe.settings import IPNetwork, RunOptions

__all__ = ["Downloader", "FetchPolicy", "FetchResult"]

log = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
POOL_SIZE = 8  # connections per httpx pool (see Downloader.__init__)


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for fetching: time, retries, size, redirects, concurrency, networks."""

    timeout: float = 30.0  # seconds per request: connect + headers + whole body
    retries: int = 3  # retries after the first attempt
    backoff_base: float = 0.5
    backoff_max: float = 20.0  # also caps Retry-After
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    concurrency: int = 8  # requests in flight, all hosts together
    per_host_concurrency: int = 8
    allowed_networks: tuple[IPNetwork, ...] = ()  # private ranges that may be fetched
    allow_local_files: bool = True
    user_agent: str = "imgpipe/0.1"

    @classmethod
    def from_options(cls, options: RunOptions) -> FetchPolicy:
        """The fetch-related fields of a run's options (every field has its namesake there)."""
        return cls(**{spec.name: getattr(options, spec.name) for spec in fields(cls)})


@dataclass(frozen=True)
class FetchResult:
    """The outcome of fetching one source: ``data`` when :attr:`ok`, else ``reason``.

    ``attempts`` is 0 when the source was refused without trying (bad URL,
    unsupported scheme). ``image_format`` is the sniffed format of ``data``.
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

    @property
    def ok(self) -> bool:
        return self.data is not None and self.reason is None


@dataclass(frozen=True)
class _Outcome:
    """What one attempt produced; ``retryable`` and ``retry_after`` steer tenacity."""

    data: bytes | None = None
    reason: str | None = None
    detail: str = ""
    retryable: bool = False
    retry_after: float | None = None
    status_code: int | None = None
    content_type: str | None = None
    final_url: str = ""
    image_format: str | None = None

    def result(self, url: str, attempts: int, detail: str) -> FetchResult:
        return FetchResult(
            url=url,
            data=self.data,
            reason=self.reason,
            detail=detail,
            attempts=attempts,
            status_code=self.status_code,
            content_type=self.content_type,
            final_url=self.final_url,
            image_format=self.image_format,
        )


def _retryable(outcome: _Outcome) -> bool:
    return outcome.retryable


def _last_outcome(state: RetryCallState) -> _Outcome:
    # Out of attempts: hand back the last outcome instead of tenacity's RetryError.
    assert state.outcome is not None
    result: _Outcome = state.outcome.result()
    return result


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _image_outcome(data: bytes, base: _Outcome) -> _Outcome:
    """``base`` with the data if its magic bytes are an image's, else not_an_image."""
    fmt = sniff_format(data[:SNIFF_BYTES])
    if fmt is None:
        detail = f"content is not an image (starts with {data[:16]!r})"
        return replace(base, reason=Reason.NOT_AN_IMAGE, detail=detail)
    return replace(base, data=data, image_format=fmt)


def _describe(exc: BaseException) -> str:
    """``ReadError: [Errno 104] Connection reset by peer``: the first message in the chain."""
    cause: BaseException | None = exc
    while cause is not None and not str(cause).strip():
        cause = cause.__cause__ or cause.__context__
    text = str(cause).strip() if cause is not None else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Downloader:
    """Fetches sources under a :class:`FetchPolicy`; safe to share between tasks.

    ``base_dir`` anchors relative local paths (the CSV's folder). ``resolver``
    replaces system DNS for the address guard (tests, custom resolvers).
    """

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        base_dir: Path | None = None,
        resolver: Resolver | None = None,
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
        self._clients = [self._make_client(guard, size) for size in lanes]
        self._lanes: asyncio.Queue[int] = asyncio.Queue()
        for index, size in enumerate(lanes):
            for _ in range(size):
                self._lanes.put_nowait(index)

    def _make_client(self, guard: AddressGuard, connections: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(
            transport=GuardedTransport(guard, limits=limits),
            headers={"User-Agent": self._policy.user_agent, "Accept": "image/*"},
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
                url, None, reason=Reason.CONNECTION_ERROR, detail=f"unexpected {_describe(exc)}"
            )

    async def aclose(self) -> None:
        """Close pooled connections."""
        await asyncio.gather(*(client.aclose() for client in self._clients))

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
        try:
            start = httpx.URL(text)
        except (httpx.InvalidURL, ValueError) as exc:
            return FetchResult(url, None, Reason.INVALID_URL, f"invalid URL: {exc}", attempts=0)
        if not start.host:
            return FetchResult(url, None, Reason.INVALID_URL, "URL has no host", attempts=0)
        return await self._fetch_remote(url, start)

    async def _fetch_local(self, url: str, text: str) -> FetchResult:
        if not self._policy.allow_local_files:
            detail = "local files are disabled (allow_local_files is off)"
            return FetchResult(url, None, Reason.UNSUPPORTED_SCHEME, detail, attempts=0)
        try:
            path = sources.local_path(text, self._base_dir)
        except FetchError as exc:
            return FetchResult(url, None, exc.reason, exc.detail, attempts=0)
        base = _Outcome(final_url=path.as_uri())
        try:
            # The global slot bounds memory too: at most `concurrency` bodies at once.
            async with self._slots:
                read = sources.read_local_file
                data = await asyncio.to_thread(read, path, self._policy.max_bytes)
        except FetchError as exc:
            base = replace(base, reason=exc.reason, detail=exc.detail)
        else:
            base = _image_outcome(data, base)
        return base.result(url, 1, base.detail)

    async def _fetch_remote(self, url: str, start: httpx.URL) -> FetchResult:
        attempts = 0

        async def attempt() -> _Outcome:
            nonlocal attempts
            attempts += 1
            return await self._attempt(start)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._policy.retries + 1),
            wait=self._backoff,
            retry=retry_if_result(_retryable),
            retry_error_callback=_last_outcome,
        )
        outcome: _Outcome = await retrying(attempt)
        tries = f"{attempts} attempt" + ("" if attempts == 1 else "s")
        return outcome.result(url, attempts, outcome.detail and f"{outcome.detail} after {tries}")

    def _backoff(self, state: RetryCallState) -> float:
        """Exponential backoff with "equal jitter", at least a capped Retry-After."""
        policy = self._policy
        ceiling = min(policy.backoff_max, policy.backoff_base * 2.0 ** (state.attempt_number - 1))
        # Half fixed, half random: retries from many tasks spread out, yet
        # never collapse to an immediate retry.
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if state.outcome is not None and not state.outcome.failed:
            last: _Outcome = state.outcome.result()
            if last.retry_after is not None:
                delay = max(delay, min(last.retry_after, policy.backoff_max))
        return delay

    async def _attempt(self, start: httpx.URL) -> _Outcome:
        """One attempt: the request and the redirect hops it leads to."""
        url = start
        for _ in range(self._policy.max_redirects + 1):
            step = await self._request(url)
            if isinstance(step, _Outcome):
                return step
            if step.scheme not in ("http", "https"):
                return _Outcome(
                    reason=Reason.UNSUPPORTED_SCHEME,
                    detail=f"redirected to unsupported scheme {step.scheme!r}",
                    final_url=str(step),
                )
            url = step
        return _Outcome(
            reason=Reason.TOO_MANY_REDIRECTS,
            detail=f"more than {self._policy.max_redirects} redirects",
            final_url=str(url),
        )

    def _host_slot(self, host: str) -> asyncio.Semaphore:
        slot = self._host_slots.get(host)
        if slot is None:
            slot = self._host_slots[host] = asyncio.Semaphore(self._policy.per_host_concurrency)
        return slot

    async def _request(self, url: httpx.URL) -> _Outcome | httpx.URL:
        """One HTTP request: an outcome, or the absolute URL a redirect points to."""
        failed = _Outcome(final_url=str(url))
        # Per-host slot first: a task waiting for a busy host must not sit on
        # one of the global slots that requests to other hosts could use.
        async with self._host_slot(url.host), self._slots:
            lane = self._lanes.get_nowait()  # a free lane always exists: see __init__
            try:
                async with asyncio.timeout(self._policy.timeout):
                    async with self._clients[lane].stream("GET", url) as response:
                        return await self._read(url, response)
            except (TimeoutError, httpx.TimeoutException):
                detail = f"no complete response within {self._policy.timeout:g} s"
                return replace(failed, reason=Reason.TIMEOUT, detail=detail, retryable=True)
            except BlockedAddressError as exc:
                return replace(failed, reason=exc.reason, detail=exc.detail)
            except ResolutionError as exc:
                retry = exc.transient
                return replace(failed, reason=exc.reason, detail=exc.detail, retryable=retry)
            except httpx.TransportError as exc:
                detail = f"connection failed ({_describe(exc)})"
                return replace(
                    failed, reason=Reason.CONNECTION_ERROR, detail=detail, retryable=True
                )
            finally:
                self._lanes.put_nowait(lane)

    async def _read(self, url: httpx.URL, response: httpx.Response) -> _Outcome | httpx.URL:
        status = response.status_code
        base = _Outcome(
            status_code=status,
            content_type=response.headers.get("content-type"),
            final_url=str(url),
        )
        location = response.headers.get("location")
        if status in _REDIRECTS and location:
            try:
                return url.join(location.strip())
            except httpx.InvalidURL as exc:
                detail = f"redirected to an invalid URL: {exc}"
                return replace(base, reason=Reason.INVALID_URL, detail=detail)
        if not 200 <= status < 300:
            retry_after = None
            if status in (429, 503):
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            return replace(
                base,
                reason=http_reason(status),
                detail=f"HTTP {status} {response.reason_phrase}".rstrip(),
                retryable=status == 429 or status >= 500,
                retry_after=retry_after,
            )
        limit = self._policy.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            detail = f"Content-Length {declared} exceeds the limit of {limit} bytes"
            return replace(base, reason=Reason.TOO_LARGE, detail=detail)
        body = bytearray()
        try:
            # aiter_bytes decodes gzip/deflate, so the limit applies to what
            # we keep in memory: a compression bomb stops at max_bytes too.
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    detail = f"body exceeds the limit of {limit} bytes"
                    return replace(base, reason=Reason.TOO_LARGE, detail=detail)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            # The peer closed (or reset) the connection before the body was
            # complete: worth a retry, reported as a connection error.
            expected = f" of {declared}" if declared else ""
            received = response.num_bytes_downloaded
            return replace(
                base,
                reason=Reason.CONNECTION_ERROR,
                detail=f"truncated body: received {received}{expected} bytes",
                retryable=True,
            )
        return _image_outcome(bytes(body), base)
