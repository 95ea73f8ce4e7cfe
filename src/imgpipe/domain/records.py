"""Records the pipeline produces and stores: reason codes, statuses, per-creator records.

Pure data, no I/O. Field names of :class:`CreatorRecord` follow the original
system's DynamoDB table so both state stores speak the same record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "BatchContext",
    "BatchRecord",
    "BatchStatus",
    "CoverOutcome",
    "CreatorRecord",
    "CreatorStatus",
    "Reason",
    "http_reason",
]


class Reason(StrEnum):
    """Why one cover was not used. HTTP statuses use :func:`http_reason` (``http_404``)."""

    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    NOT_AN_IMAGE = "not_an_image"
    TOO_LARGE = "too_large"
    TOO_SMALL = "too_small"
    BLOCKED_ADDRESS = "blocked_address"
    DECODE_ERROR = "decode_error"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    FILE_NOT_FOUND = "file_not_found"
    DUPLICATE = "duplicate"
    NEAR_DUPLICATE = "near_duplicate"  # a re-encode, resize or slight crop of an earlier one
    INVALID_URL = "invalid_url"
    TLS_ERROR = "tls_error"  # the TLS handshake failed (certificate, host name): not retried
    NOT_ATTEMPTED = "not_attempted"


def http_reason(status_code: int) -> str:
    """Reason code for an HTTP error status: ``http_reason(404) == "http_404"``."""
    return f"http_{status_code}"


class CreatorStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED_UNCHANGED = "skipped_unchanged"

    @property
    def is_final(self) -> bool:
        return self in (
            CreatorStatus.COMPLETED,
            CreatorStatus.FAILED,
            CreatorStatus.SKIPPED_UNCHANGED,
        )

    @property
    def batch_counter(self) -> str:
        """The :class:`BatchRecord` counter a final status adds to (``completed``...)."""
        counters = {
            CreatorStatus.COMPLETED: "completed",
            CreatorStatus.FAILED: "failed",
            CreatorStatus.SKIPPED_UNCHANGED: "skipped",
        }
        if self not in counters:
            raise ValueError(f"only a final status counts toward a batch, not {self.value!r}")
        return counters[self]


class BatchStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    FAILED = "failed"  # every creator failed, or the batch could not be planned at all
    INTERRUPTED = "interrupted"  # stopped by a signal or a crash; a rerun continues it

    @property
    def is_final(self) -> bool:
        """No one will work on the batch again (an interrupted one is resumable)."""
        return self in (
            BatchStatus.COMPLETED,
            BatchStatus.COMPLETED_WITH_FAILURES,
            BatchStatus.FAILED,
        )


@dataclass(frozen=True)
class CoverOutcome:
    """What happened to one cover URL of a creator."""

    line: int
    url: str
    ok: bool
    reason: str | None = None
    detail: str = ""
    sha256: str | None = None
    cell: int | None = None  # index in the grid when used
    bytes: int = 0
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "url": self.url,
            "ok": self.ok,
            "reason": self.reason,
            "detail": self.detail,
            "sha256": self.sha256,
            "cell": self.cell,
            "bytes": self.bytes,
            "attempts": self.attempts,
        }


@dataclass
class CreatorRecord:
    """State of one creator within one batch (the original system's table row)."""

    creator_name: str  # the sanitized key; the display name lives in metadata
    processing_date: str  # ISO-8601 UTC of the batch start; sort key
    batch_id: str
    status: CreatorStatus
    images_processed: int = 0
    collage_key: str | None = None
    processing_duration: float = 0.0
    error_count: int = 0
    fingerprint: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    ttl: int = 0  # epoch seconds after which the record may be forgotten
    # A processing claim: who works on the creator and until when (epoch seconds).
    # An expired claim may be taken over; a live one makes a redelivery wait.
    lease_owner: str | None = None
    lease_expires: float = 0.0


@dataclass
class BatchRecord:
    """One run over one CSV."""

    batch_id: str
    created_at: str
    source: str
    status: BatchStatus = BatchStatus.RUNNING
    total_creators: int = 0
    completed: int = 0
    failed: int = 0
    skipped: int = 0
    summary_key: str | None = None
    finished_at: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    ttl: int = 0  # epoch seconds after which the record may be forgotten
    # The process that runs the batch (local: "host:pid:token"); empty on AWS,
    # where every message has its own owner.
    owner: str = ""
    # The sweep's failed attempts in a row to finalise the batch (write its summary or
    # send its notice), and when it may try again (epoch seconds): it backs off instead
    # of retrying ahead of other batches (service/sweep_backoff.py). Only
    # ``StateStore.set_sweep_backoff`` writes them; ``put_batch`` keeps them.
    sweep_failures: int = 0
    sweep_retry_at: float = 0.0

    @property
    def all_counted(self) -> bool:
        """Every creator is counted final: the summary is owed (if not written yet)."""
        return self.completed + self.failed + self.skipped >= self.total_creators


@dataclass(frozen=True)
class BatchContext:
    """What every creator of one batch shares (and a dispatcher hands on with them)."""

    batch_id: str
    processing_date: str  # ISO-8601 UTC batch start; the state store's sort key
    ttl: int  # epoch seconds after which records may be forgotten
