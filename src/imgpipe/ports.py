"""Small interfaces between the services and their backends.

They speak bytes, keys and the records of :mod:`imgpipe.domain.records`, never
boto3 or sqlite3 types. One adapter per backend lives in :mod:`imgpipe.adapters`.

Example::

    store: ObjectStore = LocalObjectStore(Path("out"))
    store.put("collages/a.jpg", b"...", content_type="image/jpeg", if_absent=True)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from imgpipe.domain.manifest import CreatorJob, RowProblem
    from imgpipe.domain.records import BatchContext, BatchRecord, CreatorRecord, CreatorStatus


__all__ = [
    "BatchLock",
    "BatchLocks",
    "Delivery",
    "Dispatcher",
    "Metrics",
    "Notifier",
    "ObjectStore",
    "Page",
    "QueueMessage",
    "StagedCsv",
    "Stager",
    "StateStore",
    "StoredObject",
    "WorkQueue",
]


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    url: str  # where a person or browser can fetch it (file URI, presigned URL)


class ObjectStore(Protocol):
    """Keyed bytes: a local folder or an S3 bucket with the same key layout."""

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """Store ``data``; with ``if_absent`` raise KeyCollisionError if the key exists."""
        ...

    def get(self, key: str) -> bytes:
        """Return the object's bytes; StorageError if missing."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object, for the caller to close; StorageError if
        missing. For objects too large to hold, such as a CSV of a million rows::

            with store.open("csv-files/big.csv") as raw:
                staged = stage_manifest(csv_text(raw), path=work / "staging.sqlite3")
        """
        ...

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from offset ``start``: fewer at the end of the object,
        none past it; StorageError if missing (one creator's plan in a chunk object)."""
        ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int:
        """The object's size in bytes without reading it; StorageError if missing."""
        ...

    def delete(self, key: str) -> None: ...

    def move(self, source: str, target: str) -> None:
        """Rename ``source`` to ``target`` (S3: server-side copy, then delete)."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix``, sorted."""
        ...

    def url_for(self, key: str, *, expires_in: int | None = None) -> str:
        """Where a person fetches ``key``: a presigned URL on S3, valid ``expires_in``
        seconds (default: the store's own expiry), a file URI locally."""
        ...


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a long read: pass ``cursor`` as the next call's ``after``; None
    when this was the last page (a page may be empty yet still have one)."""

    items: list[T]
    cursor: str | None


class StateStore(Protocol):
    """Per-creator, per-batch records and batch records.

    Adapters only store and conditionally update; status rules, TTL and dedup
    decisions live in the service layer.
    """

    def put_creator(
        self,
        record: CreatorRecord,
        *,
        expected: tuple[CreatorStatus, ...] | None = None,
        takeover_at: float | None = None,
        owner: str | None = None,
    ) -> None:
        """Write ``record``. With ``expected``, only if the stored status is one of them
        (``()`` means: only if no record exists yet); else ConditionFailedError.

        ``takeover_at`` (epoch seconds) also accepts a PROCESSING record whose claim
        expired before then or is already held by ``record.lease_owner``; ``owner``
        requires the stored claim to be held by that owner (renewals, releases).
        Contention the backend reports (DynamoDB's TransactionConflict, throttling)
        is ConflictError: nothing was written and the write may be retried.
        """
        ...

    def put_creators(self, records: Sequence[CreatorRecord], *, if_absent: bool) -> None:
        """Write many records (planning). ``if_absent`` keeps every stored record as it is
        (a replayed plan must not reset a creator that has moved on); without it the
        records are written blindly, in the backend's bulk form."""
        ...

    def get_creator(self, creator_name: str, batch_id: str) -> CreatorRecord | None:
        """A strongly consistent read of one creator's record in one batch."""
        ...

    def creators_in_batch(self, batch_id: str) -> Iterator[CreatorRecord]:
        """The batch's creator records, streamed, in no set order. On DynamoDB this reads
        an index, which may lag: callers that need every record compare with the
        batch's counters (``BatchLedger.finalize`` does)."""
        ...

    def creators_with_status(
        self, status: CreatorStatus, *, limit: int = 1000, processing_date: str | None = None
    ) -> list[CreatorRecord]:
        """Records in ``status`` across batches, oldest first (the sweep's query).

        With ``processing_date`` (a batch's ``created_at``), only the records of that
        date: the creators in flight of one batch, read by index whatever its size.
        """
        ...

    def creators_page(
        self, status: CreatorStatus, *, after: str | None = None, page_size: int = 500
    ) -> Page[CreatorRecord]:
        """Every record in ``status`` across batches, oldest ``processing_date`` first,
        ``page_size`` at a time (the sweep's read); ``after`` is the previous page's
        opaque cursor. Nothing is skipped or repeated while records keep their status."""
        ...

    def creator_history(self, creator_name: str, limit: int = 50) -> list[CreatorRecord]:
        """Records of one creator across batches, newest first."""
        ...

    def finish_creator(
        self,
        record: CreatorRecord,
        *,
        expected: tuple[CreatorStatus, ...],
        owner: str | None = None,
    ) -> BatchRecord | None:
        """Atomically write the final ``record`` (only if the stored status is one of
        ``expected`` and, with ``owner``, the stored claim is that owner's; else
        ConditionFailedError and nothing changes) and add one to the batch's counter
        for ``record.status`` (completed / failed / skipped).

        Returns the batch record after the increment, or None when the batch has no
        record. Because the write and the count are one transaction, a redelivered
        message can never count a creator twice.
        """
        ...

    def claim_summary(self, batch_id: str, *, now: float, lease_seconds: float) -> bool:
        """True for one caller at a time per batch: that caller writes the batch summary.

        A claim older than ``lease_seconds`` (epoch seconds ``now``) whose batch still
        has no ``summary_key`` can be taken again: its holder died before writing.
        """
        ...

    def release_summary(self, batch_id: str, *, claimed_at: float) -> None:
        """Give up the summary claim made at ``claimed_at`` (its ``now``), so another
        worker may write the summary at once; a claim made since by another stays."""
        ...

    def put_batch(self, batch: BatchRecord) -> None: ...

    def get_batch(self, batch_id: str) -> BatchRecord | None: ...

    def list_batches(self, limit: int = 50) -> list[BatchRecord]:
        """Newest first."""
        ...

    def open_batches(self, *, after: str | None = None, page_size: int = 100) -> Page[str]:
        """The ids of open batches, oldest first: every ``put_batch`` opens its batch,
        ``settle_batch`` closes it. The sweep visits these, not every batch ever (on
        DynamoDB a sparse index, which may lag: read the batch itself before acting)."""
        ...

    def settle_batch(self, batch_id: str) -> None:
        """Close the batch: final, its notice no longer owed, no sweep needs it again."""
        ...

    def set_sweep_backoff(self, batch_id: str, *, failures: int, retry_at: float) -> None:
        """Record on the batch that the sweep failed to finalise it ``failures`` times in
        a row and tries again from ``retry_at`` (epoch seconds); ``failures=0`` clears
        the record. Only these two fields change (``sweep_failures``, ``sweep_retry_at``
        of :class:`BatchRecord`); a batch with no record is left absent::

            state.set_sweep_backoff("b1", failures=3, retry_at=now + 1200)
            state.set_sweep_backoff("b1", failures=0, retry_at=0)   # finalised: cleared
        """
        ...


class StagedCsv(Protocol):
    """A CSV grouped by creator off-heap (a SQLite scratch file): read a chunk at a time."""

    @property
    def creators(self) -> int: ...

    @property
    def rows_read(self) -> int: ...

    @property
    def duplicate_rows(self) -> int: ...

    def jobs(self, start: int = 0) -> Iterator[CreatorJob]:
        """Creators in order of first appearance, from ordinal ``start``."""
        ...

    def problems(self) -> Iterator[RowProblem]: ...

    def close(self) -> None: ...


class Stager(Protocol):
    """Stages a CSV's lines of text into ``path`` (``adapters.sqlite_staging.stage_manifest``)."""

    def __call__(
        self,
        stream: Iterable[str],
        *,
        path: Path,
        creator_column: str | None = None,
        url_column: str | None = None,
    ) -> StagedCsv: ...


class BatchLock(Protocol):
    def release(self) -> None: ...


class BatchLocks(Protocol):
    """Proof of life of the processes of one machine (the local engine's, not AWS's).

    A batch's lock is held exactly while a process runs it; the operating system
    drops it when that process dies, however it dies.
    """

    def acquire(self, batch_id: str) -> BatchLock | None:
        """The lock, or None when another process holds it."""
        ...

    def is_held(self, batch_id: str) -> bool: ...


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    body: str
    receipt: str  # what delete/release need (SQS receipt handle)
    receive_count: int = 1


class WorkQueue(Protocol):
    """At-least-once messages: SQS, or an in-memory fake in tests."""

    def send(self, bodies: Sequence[str]) -> None:
        """Send every body (in batches of 10 where the backend batches); QueueError
        names the bodies that could not be sent."""
        ...

    def receive(self, *, max_messages: int = 10, wait_seconds: int = 20) -> list[QueueMessage]:
        """Up to ``max_messages``, waiting at most ``wait_seconds`` (long polling)."""
        ...

    def delete(self, message: QueueMessage) -> None:
        """Acknowledge: the message is done and must not be delivered again."""
        ...

    def release(self, message: QueueMessage, *, delay_seconds: int = 0) -> None:
        """Give the message back for another delivery after ``delay_seconds``."""
        ...

    def extend(self, message: QueueMessage, *, seconds: int) -> None:
        """Heartbeat: keep the message invisible for ``seconds`` more from now."""
        ...


class Dispatcher(Protocol):
    """Hands the planned creators of a batch to workers, one plan chunk at a time.

    An in-process pool locally (:class:`imgpipe.service.pool.PoolDispatcher`), a work
    queue on AWS (:class:`imgpipe.service.queue_dispatch.QueueDispatcher`). The
    planner (:class:`imgpipe.service.planner.BatchPlanner`) calls, per chunk::

        notes = dispatcher.prepare(context, 3, jobs)   # kept in the pending records
        ledger.add_pending(context, jobs, notes=...)   # before any worker can claim
        handed = dispatcher.dispatch(context, 3, jobs) # < len(jobs): it is stopping
    """

    @property
    def durable(self) -> bool:
        """True when what was dispatched outlives the planner (messages on a queue): a
        continued plan dispatches only the chunks after its checkpoint. False for an
        in-process pool, whose work dies with the process: a continued plan hands it
        every unfinished creator again."""
        ...

    def prepare(
        self, context: BatchContext, chunk: int, jobs: Sequence[CreatorJob]
    ) -> Mapping[str, dict[str, Any]]:
        """What each creator's pending record keeps, by creator key (the queue's message,
        which the sweep can send again); empty when nothing. Called before ``dispatch``
        with the same chunk."""
        ...

    def dispatch(self, context: BatchContext, chunk: int, jobs: Sequence[CreatorJob]) -> int:
        """Hand ``jobs`` (chunk number ``chunk`` of the batch's plan; their pending
        records are written) to workers; the number handed over. Fewer than
        ``len(jobs)`` means the dispatcher is stopping and takes no more."""
        ...


class Metrics(Protocol):
    """Counters and observations; Prometheus locally, CloudWatch EMF on AWS."""

    def incr(self, name: str, value: float = 1.0, **labels: str) -> None: ...

    def observe(self, name: str, value: float, **labels: str) -> None: ...


@dataclass(frozen=True)
class Delivery:
    """How one notice went: a result, never an exception (a notice never fails a batch)."""

    sent: bool
    attempts: int
    status_code: int | None = None  # the last HTTP answer (webhook, or SNS's API)
    error: str | None = None  # why it was not sent, naming the URL or topic
    message_id: str | None = None  # SNS's id of the published message


class Notifier(Protocol):
    """Delivers a finished batch's digest (JSON bytes) to one channel: a webhook, SNS.

    ``idempotency_key`` (the batch id) goes with the message where the channel can
    carry it (a header, a message attribute), so that receivers drop duplicates::

        delivery = notifier.send(b'{"batch_id": "b1", ...}', idempotency_key="b1")
        delivery.sent, delivery.attempts
    """

    @property
    def channel(self) -> str:
        """``"webhook"`` or ``"sns"``: recorded with the delivery."""
        ...

    def send(self, body: bytes, *, idempotency_key: str) -> Delivery: ...
