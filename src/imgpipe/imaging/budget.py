"""A budget of decoded pixels in flight, shared by every decode of one process.

Decoded images, not uploads, are what costs memory: a 243 KB PNG of 7999x7999
RGBA is 256 MB once decoded. A :class:`DecodeBudget` is a counting semaphore
whose unit is a pixel: a decode takes the pixel count it is about to
materialise (read from the header, after any JPEG draft scaling) and gives it
back when the decoded image is gone. Callers beyond the budget wait, holding
only their bytes.

- First come, first served: a waiter is never overtaken by a smaller one
  arriving later, so a large image is not starved by a stream of small ones.
- An image larger than the whole budget is charged the whole budget: it waits
  until nothing else is in flight, then runs alone. It never deadlocks.
- ``limit=0`` turns the bound off; the counters still count.
- Blocking, for threads: decodes run on worker threads, never on the event loop.

Counting pixels bounds memory only if freed pixels leave the process. glibc's
malloc raises its mmap threshold to the size of the last freed large block, so
after the first image Pillow's 16 MB blocks come from per-thread arenas that keep
their high-water mark: two pool threads decoding one 7999x7999 PNG after the other
peaked at 645 MB, against 340 MB with a fixed threshold. :func:`return_freed_blocks`
fixes the threshold for the process (a no-op where there is no glibc).

Example:

>>> budget = DecodeBudget(100)
>>> with budget.hold(60):
...     budget.in_flight
60
>>> with budget.hold(500):  # over the budget: alone, charged the whole budget
...     budget.in_flight
100
>>> budget.in_flight, budget.peak
(0, 100)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["DecodeBudget", "return_freed_blocks"]

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_MMAP_THRESHOLD = 1024 * 1024


def return_freed_blocks() -> bool:
    """Serve allocations of 1 MB and more with mmap, so freeing one unmaps it at once.

    Process-wide; True when glibc accepted it.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
    except (OSError, AttributeError, TypeError):
        return False  # not glibc (macOS, Windows); musl already returns large blocks


class DecodeBudget:
    """At most ``limit`` pixels decoded at once across the threads that share it."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"a decode budget cannot be negative, got {limit}")
        self.limit = limit
        self._lock = threading.Lock()
        self._waiters: deque[tuple[int, threading.Event]] = deque()
        self._in_flight = 0
        self._peak = 0

    @property
    def in_flight(self) -> int:
        """Pixels charged right now."""
        return self._in_flight

    @property
    def peak(self) -> int:
        """The most pixels ever charged at once (see :meth:`reset_peak`)."""
        return self._peak

    @property
    def waiting(self) -> int:
        """Decodes waiting for room."""
        return len(self._waiters)

    def reset_peak(self) -> None:
        with self._lock:
            self._peak = self._in_flight

    def charge(self, pixels: int) -> int:
        """What ``pixels`` costs against this budget: at most the whole budget."""
        pixels = max(pixels, 0)
        return min(pixels, self.limit) if self.limit else pixels

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Wait for room for ``pixels``, keep it for the ``with`` block, give it back."""
        cost = self.acquire(pixels)
        try:
            yield
        finally:
            self.release(cost)

    def acquire(self, pixels: int) -> int:
        """Block until ``pixels`` fit; returns the cost to :meth:`release` later."""
        cost = self.charge(pixels)
        with self._lock:
            if not self._waiters and self._fits(cost):
                self._take(cost)
                return cost
            granted = threading.Event()
            self._waiters.append((cost, granted))
        granted.wait()  # _grant took the pixels on our behalf before setting it
        return cost

    def release(self, cost: int) -> None:
        with self._lock:
            self._in_flight -= cost
            self._grant()

    def _fits(self, cost: int) -> bool:
        return not self.limit or self._in_flight + cost <= self.limit

    def _take(self, cost: int) -> None:
        self._in_flight += cost
        self._peak = max(self._peak, self._in_flight)

    def _grant(self) -> None:
        # In order, and only from the head: a waiter that does not fit yet holds back
        # the ones behind it. The head always fits once nothing is in flight.
        while self._waiters and self._fits(self._waiters[0][0]):
            cost, granted = self._waiters.popleft()
            self._take(cost)
            granted.set()
