"""Progress as plain log lines, for logs and terminals that are not one.

The rich bar for a terminal is :mod:`imgpipe.entrypoints.progress_bar`, apart so
that a ``--json`` or non-terminal run never imports rich (~35 ms of start-up).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from imgpipe.domain.records import CreatorStatus

if TYPE_CHECKING:
    from imgpipe.service.results import CreatorResult

__all__ = ["LogProgress"]

log = logging.getLogger("imgpipe.progress")


class LogProgress:
    """One log line per creator at most every ``interval`` seconds, and a final one."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self._total = 0
        self._done = 0
        self._failed = 0
        self._last = 0.0

    def batch_started(self, batch_id: str, creators: int, covers: int) -> None:
        self._total = creators
        log.info("batch %s: %d creators, up to %d covers", batch_id, creators, covers)

    def creator_started(self, key: str, covers: int) -> None:
        return None

    def cover_done(self, key: str, ok: bool) -> None:
        return None

    def creator_done(self, result: CreatorResult) -> None:
        self._done += 1
        self._failed += result.status is CreatorStatus.FAILED
        now = time.monotonic()
        if now - self._last >= self.interval or self._done == self._total:
            self._last = now
            log.info("creators %d/%d done (%d failed)", self._done, self._total, self._failed)
