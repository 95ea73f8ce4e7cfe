"""What the batch services produce and share: per-creator results, batch context, plan stats.

They live apart from the services that produce them so the summary, the gallery,
the progress display and the API import data, not workers.

Example::

    >>> from imgpipe.domain.records import CreatorStatus
    >>> CreatorResult("Ann", "Ann", CreatorStatus.FAILED, error="0 usable cover(s)").failures
    []
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imgpipe.domain.records import (
    BatchContext,  # here too, where the services have always found it
    CoverOutcome,
    Reason,
)
from imgpipe.logs import EVENTS_LOGGER

if TYPE_CHECKING:
    from imgpipe.domain.records import BatchRecord, CreatorRecord, CreatorStatus

__all__ = ["NOT_FAILURES", "BatchContext", "CreatorResult", "PlanStats", "log_outcome"]

# One record per failed cover and one per creator (log_outcome), for log search.
events = logging.getLogger(EVENTS_LOGGER)

# Reasons that describe a cover we chose not to use rather than one that failed.
_DUPLICATES = frozenset({Reason.DUPLICATE.value, Reason.NEAR_DUPLICATE.value})
NOT_FAILURES = _DUPLICATES | {Reason.NOT_ATTEMPTED.value}


@dataclass(frozen=True)
class PlanStats:
    """What the summary needs of the CSV itself (kept beside the batch, in its plan)."""

    rows_read: int
    duplicate_rows: int
    row_problems: list[dict[str, Any]]  # the first ones (planning.MAX_ROW_PROBLEMS)
    row_problem_count: int = -1  # all of them; -1: as many as listed (older plans)
    row_problem_reasons: dict[str, int] = field(default_factory=dict)  # all, by reason

    @property
    def problems_total(self) -> int:
        return len(self.row_problems) if self.row_problem_count < 0 else self.row_problem_count


@dataclass
class CreatorResult:
    creator: str
    key: str
    status: CreatorStatus
    covers: list[CoverOutcome] = field(default_factory=list)
    images_used: int = 0
    collage_key: str | None = None
    preview_key: str | None = None  # a small copy of the collage, for pages
    collage_size: tuple[int, int] | None = None  # (width, height) px, for pages' layout
    fingerprint: str | None = None
    duration: float = 0.0
    error: str | None = None
    safe_mode: bool = False
    replayed: bool = False  # the record was already final; nothing was done again
    batch: BatchRecord | None = None  # the batch's counts right after this creator finished

    @property
    def failures(self) -> list[CoverOutcome]:
        return [c for c in self.covers if not c.ok and c.reason not in NOT_FAILURES]

    @property
    def duplicates(self) -> int:
        return sum(1 for c in self.covers if c.reason in _DUPLICATES)

    @classmethod
    def from_record(
        cls,
        record: CreatorRecord,
        *,
        creator: str | None = None,
        covers: list[dict[str, Any]] | None = None,
    ) -> CreatorResult:
        """The result as stored in a final record: its covers are ``covers`` when given
        (read by :func:`~imgpipe.service.creator_covers.record_covers`, which finds
        them where the record keeps them), else those of its metadata."""
        known = CoverOutcome.__dataclass_fields__
        listed = record.metadata.get("covers", []) if covers is None else covers
        outcomes = [CoverOutcome(**{k: v for k, v in c.items() if k in known}) for c in listed]
        return cls(
            creator=creator or record.metadata.get("display_name", record.creator_name),
            key=record.creator_name,
            status=record.status,
            covers=outcomes,
            images_used=record.images_processed,
            collage_key=record.collage_key,
            preview_key=record.metadata.get("preview_key"),
            collage_size=_size(record.metadata),
            fingerprint=record.fingerprint,
            duration=record.processing_duration,
            error=record.metadata.get("error"),
            safe_mode=bool(record.metadata.get("safe_mode", False)),
            replayed=True,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "creator": self.creator,
            "key": self.key,
            "status": self.status.value,
            "images_used": self.images_used,
            "collage_key": self.collage_key,
            "preview_key": self.preview_key,
            "width": self.collage_size[0] if self.collage_size else None,
            "height": self.collage_size[1] if self.collage_size else None,
            "fingerprint": self.fingerprint,
            "duration_s": round(self.duration, 3),
            "error": self.error,
            "safe_mode": self.safe_mode,
            "covers": [c.to_dict() for c in self.covers],
        }


def _size(metadata: dict[str, Any]) -> tuple[int, int] | None:
    width, height = metadata.get("width"), metadata.get("height")
    return (int(width), int(height)) if width and height else None


def log_outcome(result: CreatorResult) -> None:
    """One record per failed cover (naming its URL) and one for the creator, for log search."""
    for cover in result.failures:  # duplicates and covers never fetched are not failures
        events.info(
            "cover failed: %s (%s)",
            cover.url,
            cover.reason,
            extra={"url": cover.url, "line": cover.line, "reason": cover.reason,
                   "detail": cover.detail},
        )  # fmt: skip
    events.info(
        "creator %s: %s",
        result.key,
        result.status.value,
        extra={"status": result.status.value, "images_used": result.images_used,
               "failed_covers": len(result.failures), "error": result.error,
               "duration_s": round(result.duration, 3)},
    )  # fmt: skip
