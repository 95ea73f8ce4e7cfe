"""One HTTP response -> an :class:`Outcome`: the downloader's view of a single request.

:func:`read_response` decides what a response means: a redirect to follow,
a 304 that confirms a cached cover, a retryable or final error, or a body
streamed under the byte limit and accepted only if its magic bytes are an
image's (never by ``Content-Type``).

Example:

>>> parse_retry_after("120")
120.0
>>> outcome = image_outcome(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(24), Outcome(status_code=200))
>>> outcome.image_format, outcome.reason
('png', None)
>>> image_outcome(b"<html>", Outcome()).reason == "not_an_image"
True
>>> import httpx
>>> failed = request_failure(httpx.InvalidURL("no host"), Outcome())
>>> failed.reason == "invalid_url", failed.retryable
(True, False)
"""

from __future__ import annotations

import email.utils
import ssl
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from imgpipe.domain.records import Reason, http_reason
from imgpipe.fetch.results import FetchResult
from imgpipe.imaging.formats import SNIFF_BYTES, sniff_format

if TYPE_CHECKING:  # imported where a response is read: local files never need httpx
    import httpx

__all__ = [
    "Outcome",
    "describe",
    "image_outcome",
    "parse_retry_after",
    "read_response",
    "request_failure",
]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Outcome:
    """What one attempt produced; ``retryable`` and ``retry_after`` steer the retries.

    ``headers`` are the final response's when it was a success or a 304
    (``not_modified``); ``hops`` every URL requested, start to final.
    """

    data: bytes | None = None
    reason: str | None = None
    detail: str = ""
    retryable: bool = False
    retry_after: float | None = None
    status_code: int | None = None
    content_type: str | None = None
    final_url: str = ""
    image_format: str | None = None
    not_modified: bool = False
    headers: httpx.Headers | None = None
    hops: tuple[str, ...] = ()

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


def image_outcome(data: bytes, base: Outcome) -> Outcome:
    """``base`` with the data if its magic bytes are an image's, else not_an_image."""
    fmt = sniff_format(data[:SNIFF_BYTES])
    if fmt is None:
        detail = f"content is not an image (starts with {data[:16]!r})"
        return replace(base, reason=Reason.NOT_AN_IMAGE, detail=detail)
    return replace(base, data=data, image_format=fmt)


def describe(exc: BaseException) -> str:
    """``ReadError: [Errno 104] Connection reset by peer``: the first message in the chain."""
    cause: BaseException | None = exc
    while cause is not None and not str(cause).strip():
        cause = cause.__cause__ or cause.__context__
    text = str(cause).strip() if cause is not None else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def read_response(
    url: httpx.URL, response: httpx.Response, *, max_bytes: int, conditional: bool
) -> Outcome | httpx.URL:
    """The outcome of ``response`` to a GET of ``url``, or the URL a redirect points to.

    ``conditional``: the request asked "changed?"; only then is a 304 an answer.
    """
    import httpx

    status = response.status_code
    base = Outcome(
        status_code=status,
        content_type=response.headers.get("content-type"),
        final_url=str(url),
    )
    location = response.headers.get("location")
    if status in _REDIRECTS and location:
        try:
            target = url.join(location.strip())
            _ = target.host  # decodes an IDNA host: "xn--a" raises here, not in the next hop
        except (httpx.InvalidURL, UnicodeError) as exc:
            detail = f"redirected to an invalid URL: {exc}"
            return replace(base, reason=Reason.INVALID_URL, detail=detail)
        return target
    if status == 304 and conditional:
        return replace(base, not_modified=True, headers=response.headers)
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
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        detail = f"Content-Length {declared} exceeds the limit of {max_bytes} bytes"
        return replace(base, reason=Reason.TOO_LARGE, detail=detail)
    body = bytearray()
    try:
        # aiter_bytes decodes gzip/deflate, so the limit applies to what
        # we keep in memory: a compression bomb stops at max_bytes too.
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                detail = f"body exceeds the limit of {max_bytes} bytes"
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
    return image_outcome(bytes(body), replace(base, headers=response.headers))


def request_failure(
    exc: httpx.TransportError | httpx.InvalidURL | UnicodeError, failed: Outcome
) -> Outcome:
    """The outcome of a request that raised ``exc`` before its response could be read.

    * A malformed ``Location``: httpx reads it itself (to offer ``next_request``)
      even when it does not follow redirects, and raises InvalidURL, an IDNA
      UnicodeError, or RemoteProtocolError wrapping InvalidURL, before
      :func:`read_response` sees the response. The URL will not get better:
      ``invalid_url``, not retried.
    * A failed TLS handshake (an untrusted certificate, one for another host
      name, no common protocol): ``tls_error``, not retried, since the next
      attempt meets the same certificate. A peer that hangs up mid-handshake
      (SSLEOFError) is a connection error like any other.
    * Any other transport error: ``connection_error``, retried.
    """
    import httpx

    if isinstance(exc, httpx.InvalidURL | UnicodeError) or (
        isinstance(exc, httpx.RemoteProtocolError) and isinstance(exc.__context__, httpx.InvalidURL)
    ):
        detail = f"redirected to an invalid URL ({describe(exc)})"
        return replace(failed, reason=Reason.INVALID_URL, detail=detail)
    tls = _tls_error(exc)
    if tls is not None:
        why = getattr(tls, "verify_message", "") or tls.reason or str(tls)
        return replace(failed, reason=Reason.TLS_ERROR, detail=f"TLS handshake failed: {why}")
    detail = f"connection failed ({describe(exc)})"
    return replace(failed, reason=Reason.CONNECTION_ERROR, detail=detail, retryable=True)


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The ssl error behind a transport error (httpx <- httpcore <- ssl), if any."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLError):
            return None if isinstance(cause, ssl.SSLEOFError | ssl.SSLZeroReturnError) else cause
        cause = cause.__cause__ or cause.__context__
    return None
