"""Progress for people: a rich bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import time
from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from imgpipe.domain.records import CreatorStatus
from imgpipe.service.results import CreatorResult

__all__ = ["LogProgress", "RichProgress"]

log = logging.getLogger("imgpipe.progress")


class RichProgress:
    """Two bars (creators, covers) on stderr; use as a context manager."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._creators: TaskID | None = None
        self._covers: TaskID | None = None
        self._failed = 0

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def batch_started(self, batch_id: str, creators: int, covers: int) -> None:
        self._creators = self._progress.add_task("creators", total=creators, note="")
        self._covers = self._progress.add_task("covers", total=covers, note="")

    def creator_started(self, key: str, covers: int) -> None:
        return None

    def cover_done(self, key: str, ok: bool) -> None:
        if self._covers is not None:
            self._failed += not ok
            self._progress.update(self._covers, advance=1, note=f"[red]{self._failed} failed")

    def creator_done(self, result: CreatorResult) -> None:
        if self._creators is not None:
            # The note is markup (the covers' note is red); a name is data, so escaped.
            # Cut before escaping: a cut through an escape would unescape its bracket.
            note = f"last: {escape(result.creator[:24])}"
            self._progress.update(self._creators, advance=1, note=note)


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
