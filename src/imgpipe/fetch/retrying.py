"""The retry loop of outbound HTTP: cover downloads and webhook notices retry alike.

An attempt returns a result that says whether it may be retried (``retryable``)
and how long the server asked to wait at least (``retry_after``, from a
``Retry-After`` header). Between attempts the wait is exponential backoff with
"equal jitter", at least that ``Retry-After``, both capped. Out of attempts, the
last result comes back, never tenacity's RetryError, with how many attempts ran::

    outcome, attempts = await with_retries(
        lambda number: attempt_once(url), retries=3, backoff_base=0.5, backoff_max=20.0
    )

The delay before the n-th retry, with the random half at its largest:

    >>> [backoff_delay(n, base=0.5, cap=3.0, jitter=lambda lo, hi: hi) for n in (1, 2, 3, 4)]
    [0.5, 1.0, 2.0, 3.0]
    >>> backoff_delay(1, base=0.5, cap=3.0, retry_after=60.0)  # Retry-After, capped
    3.0
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt

__all__ = ["Retryable", "backoff_delay", "with_retries"]


class Retryable(Protocol):
    """What an attempt's result says about retrying it."""

    @property
    def retryable(self) -> bool: ...

    @property
    def retry_after(self) -> float | None: ...


R = TypeVar("R", bound=Retryable)


def backoff_delay(
    attempt_number: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    jitter: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait after attempt ``attempt_number`` (1-based) failed."""
    ceiling = min(cap, base * 2.0 ** (attempt_number - 1))
    # Half fixed, half random: retries from many tasks spread out, yet
    # never collapse to an immediate retry.
    delay = ceiling / 2 + jitter(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


async def with_retries(
    attempt: Callable[[int], Awaitable[R]],
    *,
    retries: int,
    backoff_base: float,
    backoff_max: float,
) -> tuple[R, int]:
    """Run ``attempt(number)`` until its result is not retryable or ``retries`` retries
    ran; the last result and the number of attempts. An exception is not retried."""
    attempts = 0

    async def counted() -> R:
        nonlocal attempts
        attempts += 1
        return await attempt(attempts)

    def wait(state: RetryCallState) -> float:
        last = state.outcome
        retry_after = None if last is None or last.failed else last.result().retry_after
        return backoff_delay(
            state.attempt_number, base=backoff_base, cap=backoff_max, retry_after=retry_after
        )

    retrying = AsyncRetrying(
        stop=stop_after_attempt(retries + 1),
        wait=wait,
        retry=retry_if_result(lambda result: result.retryable),
        retry_error_callback=_last_result,
    )
    result: R = await retrying(counted)
    return result, attempts


def _last_result(state: RetryCallState) -> object:
    # Out of attempts: hand back the last result instead of tenacity's RetryError.
    assert state.outcome is not None
    return state.outcome.result()
