"""The :class:`~imgpipe.ports.Notifier` that POSTs the digest to a URL (``IMGPIPE_NOTIFY_URL``).

Every connection goes through the downloads' address guard (:mod:`imgpipe.fetch.netguard`):
a notice URL is configuration, but a Lambda must not be talked into posting to
169.254.169.254 any more than into fetching from it. Redirects are never followed:
a receiver answers, it does not send the notice elsewhere.

Attempts are retried with exponential backoff (and at least a ``Retry-After``) on 5xx,
429, timeouts and connection errors; a 4xx or a 3xx is final. Delivery is therefore
at least once: the body and the ``Idempotency-Key`` header carry the batch id, so
the receiver drops a duplicate. With a secret, ``X-Imgpipe-Signature: sha256=<hex>``
is the HMAC-SHA256 of the exact body bytes::

    notifier = WebhookNotifier("https://hooks.example.com/imgpipe", secret="s3cret",
                               guard=AddressGuard())
    notifier.send(b'{"batch_id": "b1"}', idempotency_key="b1").sent
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from imgpipe.errors import BlockedAddressError, ConfigError
from imgpipe.fetch.netguard import AddressGuard, ResolutionError, parse_ip_literal
from imgpipe.fetch.responses import parse_retry_after
from imgpipe.fetch.retrying import with_retries
from imgpipe.ports import Delivery
from imgpipe.version import user_agent as product_token

__all__ = ["SIGNATURE_HEADER", "WebhookNotifier", "shown_url", "signature"]

SIGNATURE_HEADER = "X-Imgpipe-Signature"
_RETRY_STATUSES = frozenset({408, 425, 429})
_T = TypeVar("_T")


def signature(secret: str, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 of the exact body.

    >>> signature("s3cret", b'{"batch_id":"b1"}')[:15]
    'sha256=5619ba27'
    """
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def shown_url(url: str) -> str:
    """The URL as errors and logs name it: without credentials or query string.

    >>> shown_url("https://user:pw@hooks.example.com:8443/in?token=x")
    'https://hooks.example.com:8443/in'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class _Attempt:
    delivery: Delivery
    retryable: bool
    retry_after: float | None = None


class WebhookNotifier:
    """POSTs notices to one URL; ``send`` returns a :class:`Delivery`, never raises."""

    channel = "webhook"

    def __init__(
        self,
        url: str,
        *,
        guard: AddressGuard,
        secret: str = "",
        timeout: float = 10.0,
        retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        user_agent: str | None = None,
    ) -> None:
        self.url = url
        self.shown = shown_url(url)
        self._guard = guard
        self._secret = secret
        self._timeout = timeout
        self._retries = retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        # The same product token as downloads (imgpipe/<version>), read when first needed.
        self._user_agent = user_agent
        self._check_url()

    def _check_url(self) -> None:
        """Refuse at start-up what can never be sent: a bad URL, a literal refused address."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"notice URL {self.url!r}: expected http(s)://host/path")
        literal = parse_ip_literal(parts.hostname)
        why = self._guard.refusal(literal) if literal is not None else None
        if why is not None:
            raise ConfigError(
                f"notice URL {self.shown} is refused: {why} address outside the allowed "
                "networks (allow its network with IMGPIPE_ALLOW_PRIVATE_NETWORKS)"
            )

    def send(self, body: bytes, *, idempotency_key: str) -> Delivery:
        return _run_sync(lambda: self._send(body, idempotency_key))

    async def _send(self, body: bytes, idempotency_key: str) -> Delivery:
        from imgpipe.fetch.transport import GuardedTransport

        headers = {
            "Content-Type": "application/json",
            "User-Agent": self._user_agent or product_token(),
            "Idempotency-Key": idempotency_key,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        async with httpx.AsyncClient(
            transport=GuardedTransport(self._guard),
            timeout=httpx.Timeout(self._timeout),
            follow_redirects=False,  # a hop elsewhere would bypass the URL the operator set
            trust_env=False,  # no proxy from the environment: the guard vets the real peer
        ) as client:
            # The downloads' retry loop: backoff with jitter, at least a capped Retry-After.
            last, _ = await with_retries(
                lambda number: self._attempt(client, body, headers, number),
                retries=self._retries,
                backoff_base=self._backoff_base,
                backoff_max=self._backoff_max,
            )
        return last.delivery

    async def _attempt(
        self, client: httpx.AsyncClient, body: bytes, headers: dict[str, str], attempts: int
    ) -> _Attempt:
        try:
            # One bound for the whole attempt: httpx's timeouts are per read, and a
            # receiver dribbling its answer must not hold the batch's finish.
            async with asyncio.timeout(self._timeout):
                response = await client.post(self.url, content=body, headers=headers)
        except TimeoutError:
            return self._failed(attempts, f"no answer within {self._timeout:g} s", retry=True)
        except BlockedAddressError as exc:
            return self._failed(attempts, exc.detail, retry=False)
        except ResolutionError as exc:
            return self._failed(attempts, exc.detail, retry=exc.transient)
        except httpx.TimeoutException:
            return self._failed(attempts, f"no answer within {self._timeout:g} s", retry=True)
        except httpx.TransportError as exc:
            return self._failed(attempts, f"{type(exc).__name__}: {exc}", retry=True)
        code = response.status_code
        if 200 <= code < 300:
            return _Attempt(Delivery(True, attempts, status_code=code), retryable=False)
        retry = code >= 500 or code in _RETRY_STATUSES
        why = f"answered HTTP {code}"
        if 300 <= code < 400:
            why += " (redirects are not followed: configure the final URL)"
        return _Attempt(
            Delivery(False, attempts, status_code=code, error=f"notice to {self.shown} {why}"),
            retryable=retry,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )

    def _failed(self, attempts: int, why: str, *, retry: bool) -> _Attempt:
        error = f"notice to {self.shown} failed: {why}"
        return _Attempt(Delivery(False, attempts, error=error), retryable=retry)


def _run_sync(make: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine to completion from sync code, inside an event loop or not.

    The summary is written from worker threads (no loop) but also from code that
    runs in one; a loop cannot be re-entered, so there it runs on a thread of its own.
    """

    async def main() -> _T:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with ThreadPoolExecutor(1, thread_name_prefix="imgpipe-notice") as pool:
        return pool.submit(asyncio.run, main()).result()
