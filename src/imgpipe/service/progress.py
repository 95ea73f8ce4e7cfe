"""Progress events the services emit; entry points decide how to show them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from imgpipe.service.results import CreatorResult

__all__ = ["NullProgress", "ProgressSink"]


class ProgressSink(Protocol):
    """Receives progress; implementations must be cheap (called once per cover)."""

    def batch_started(self, batch_id: str, creators: int, covers: int) -> None: ...

    def cover_done(self, ok: bool) -> None: ...

    def creator_done(self, result: CreatorResult) -> None: ...


class NullProgress:
    """Shows nothing (``--quiet``, tests, Lambda)."""

    def batch_started(self, batch_id: str, creators: int, covers: int) -> None:
        return None

    def cover_done(self, ok: bool) -> None:
        return None

    def creator_done(self, result: CreatorResult) -> None:
        return None
