"""Progress events the services emit; entry points decide how to show them.

:class:`LiveProgress` keeps them for pages: which creators are fetching covers
right now and how far each has got (the dashboard shows "12/35 covers")::

    >>> live = LiveProgress()
    >>> live.creator_started("Ann", 3)
    >>> live.cover_done("Ann", True); live.cover_done("Ann", False)
    >>> live.snapshot()
    {'Ann': {'covers_ok': 1, 'covers_failed': 1, 'covers_total': 3}}
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from imgpipe.service.results import CreatorResult

__all__ = ["LiveProgress", "NullProgress", "ProgressSink"]


class ProgressSink(Protocol):
    """Receives progress; implementations must be cheap (called once per cover)."""

    def batch_started(self, batch_id: str, creators: int, covers: int) -> None: ...

    def creator_started(self, key: str, covers: int) -> None:
        """Creator ``key`` starts fetching; ``covers`` is how many its collage can use."""
        ...

    def cover_done(self, key: str, ok: bool) -> None: ...

    def creator_done(self, result: CreatorResult) -> None: ...


class NullProgress:
    """Shows nothing (``--quiet``, tests, Lambda)."""

    def batch_started(self, batch_id: str, creators: int, covers: int) -> None:
        return None

    def creator_started(self, key: str, covers: int) -> None:
        return None

    def cover_done(self, key: str, ok: bool) -> None:
        return None

    def creator_done(self, result: CreatorResult) -> None:
        return None


class LiveProgress:
    """Cover counts of the creators in flight, readable from other threads.

    Written by the batch's event loop, read by the API's request threads; a
    creator leaves the table when it is done (its record then has the counts).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._creators: dict[str, list[int]] = {}  # key -> [ok, failed, total]

    def batch_started(self, batch_id: str, creators: int, covers: int) -> None:
        return None

    def creator_started(self, key: str, covers: int) -> None:
        with self._lock:
            self._creators[key] = [0, 0, covers]

    def cover_done(self, key: str, ok: bool) -> None:
        with self._lock:
            counts = self._creators.get(key)
            if counts is not None:
                counts[0 if ok else 1] += 1

    def creator_done(self, result: CreatorResult) -> None:
        with self._lock:
            self._creators.pop(result.key, None)

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                key: {"covers_ok": ok, "covers_failed": failed, "covers_total": total}
                for key, (ok, failed, total) in self._creators.items()
            }
