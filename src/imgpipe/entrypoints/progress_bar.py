"""Progress for people: two rich bars on a terminal (plain log lines: ``progress``)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from imgpipe.service.results import CreatorResult

__all__ = ["RichProgress"]


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
