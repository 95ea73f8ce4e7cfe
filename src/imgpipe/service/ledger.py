"""The batch's rules, written once for both backends: records, TTL, leases, finish.

The local engine (:mod:`.batch`) and the queue engine (:mod:`.fanout`) differ only
in how creators reach a worker; everything that touches the state store goes
through one :class:`BatchLedger`::

    ledger = BatchLedger(state, outputs, plans, lease_seconds=300)
    context = ledger.open_batch("b1", source="x.csv", total=2, settings={}, stats=stats)
    ledger.add_pending(context, jobs)
    replay = ledger.claim(job, context, owner="host:1:ab")   # None: ours to work on
    ledger.finish(result, context, owner="host:1:ab", document_key=key)  # key: its metadata
    summary = ledger.finalize("b1")   # once, by whoever is last (then the notice, once)

A claim is a lease: ``processing`` with an owner and an expiry. An expired claim is
taken over; a live one raises :class:`ClaimBusyError` with the time to wait. Writes
the backend refused for contention (:class:`ConflictError`) are retried with jitter.

Two parts have modules of their own, reached through the ledger: closing a batch
(the summary's claim, its catch-up with a lagging index, the completion notice) in
:mod:`.closing`, and the plan document (source, CSV statistics, spec) in
:mod:`.batch_plans`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from imgpipe.domain.records import BatchRecord, BatchStatus, CreatorRecord, CreatorStatus
from imgpipe.errors import (
    ClaimBusyError,
    ConditionFailedError,
    ConflictError,
)
from imgpipe.service.batch_plans import BatchPlans
from imgpipe.service.closing import BatchClosing
from imgpipe.service.creator_covers import record_covers, record_metadata
from imgpipe.service.owners import local_owner
from imgpipe.service.results import BatchContext, CreatorResult

if TYPE_CHECKING:
    from imgpipe.domain.manifest import CreatorJob
    from imgpipe.ports import ObjectStore, StateStore
    from imgpipe.service.notice import BatchNotices
    from imgpipe.service.results import PlanStats
    from imgpipe.service.summary import BatchSummary

__all__ = ["BatchLedger", "local_owner"]

log = logging.getLogger(__name__)

T = TypeVar("T")

PENDING_CHUNK = 500  # pending records written per bulk call
# Where a processing claim keeps its creator's cover counts (metadata, for pages).
PROGRESS_FIELD = "progress"
# Creators in flight read for live counts: far above any worker count one machine runs.
LIVE_LIMIT = 1000


class BatchLedger:
    """Creator and batch records of every batch, on one state store."""

    def __init__(
        self,
        state: StateStore,
        outputs: ObjectStore,
        plans: ObjectStore,
        *,
        lease_seconds: float = 300.0,
        ttl_days: int = 30,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        conflict_attempts: int = 8,
        notices: BatchNotices | None = None,
    ) -> None:
        self.state = state
        self.notices = notices  # the completion notice, sent by the summary's writer
        self.outputs = outputs
        self.plans = plans
        self.lease_seconds = lease_seconds
        self.ttl_days = ttl_days
        self.clock = clock
        self.sleep = sleep
        # How long a finalize that lost the summary claim waits for the winner's summary.
        self.summary_wait_seconds = 30.0
        self.batch_plans = BatchPlans(plans)  # plans: also the planner's markers
        self._retrying = Retrying(
            retry=retry_if_exception_type(ConflictError),
            wait=wait_random_exponential(multiplier=0.05, max=2.0),
            stop=stop_after_attempt(conflict_attempts),
            sleep=sleep,
            reraise=True,
        )
        self.closing = BatchClosing(self)

    def retry(self, call: Callable[[], T]) -> T:
        """Run a state write, again with jitter while the backend refuses it for contention."""
        return self._retrying(call)

    def now(self) -> float:
        return self.clock().timestamp()

    # -- planning ----------------------------------------------------------------

    def open_batch(
        self,
        batch_id: str,
        *,
        source: str,
        total: int,
        settings: dict[str, Any],
        stats: PlanStats,
        spec: dict[str, Any] | None = None,
        owner: str = "",
        created_at: datetime | None = None,
    ) -> BatchContext:
        """Record a new batch (status running, TTL set), its statistics and its spec:
        the resolved options every worker of the batch renders with."""
        started = created_at or self.clock()
        context = self.context_for(batch_id, started.isoformat(timespec="microseconds"))
        self.batch_plans.write(batch_id, source=source, stats=stats, spec=spec or {})
        batch = BatchRecord(
            batch_id=batch_id,
            created_at=context.processing_date,
            source=source,
            total_creators=total,
            settings=settings,
            ttl=context.ttl,
            owner=owner,
        )
        self.retry(lambda: self.state.put_batch(batch))
        return context

    def context_for(self, batch_id: str, processing_date: str) -> BatchContext:
        started = datetime.fromisoformat(processing_date)
        ttl = int((started + timedelta(days=self.ttl_days)).timestamp())
        return BatchContext(batch_id=batch_id, processing_date=processing_date, ttl=ttl)

    def add_pending(
        self,
        context: BatchContext,
        jobs: Iterable[CreatorJob],
        *,
        replay: bool = False,
        notes: Callable[[CreatorJob], dict[str, Any]] | None = None,
    ) -> int:
        """Pending records for ``jobs`` in bulk; a ``replay`` keeps records that moved on."""
        written = 0
        chunk: list[CreatorRecord] = []
        for job in jobs:
            note = notes(job) if notes else None
            chunk.append(self._record(job.key, job.creator, context, CreatorStatus.PENDING, note))
            if len(chunk) >= PENDING_CHUNK:
                written += self._put_pending(chunk, replay)
                chunk = []
        if chunk:
            written += self._put_pending(chunk, replay)
        return written

    def _put_pending(self, chunk: list[CreatorRecord], replay: bool) -> int:
        self.retry(lambda: self.state.put_creators(chunk, if_absent=replay))
        return len(chunk)

    def resume(self, batch: BatchRecord, owner: str) -> BatchContext:
        """Mark an interrupted (or orphaned) batch running again under ``owner``."""
        batch.status, batch.owner = BatchStatus.RUNNING, owner
        self.retry(lambda: self.state.put_batch(batch))
        return self.context_for(batch.batch_id, batch.created_at)

    def interrupt(self, batch_id: str) -> BatchRecord | None:
        """A batch no one works on any more, with creators left: resumable by a rerun."""
        batch = self.state.get_batch(batch_id)
        if batch is None or batch.status.is_final or batch.summary_key:
            return batch
        batch.status = BatchStatus.INTERRUPTED
        self.retry(lambda: self.state.put_batch(batch))
        return batch

    # -- one creator -------------------------------------------------------------

    def claim(
        self,
        job: CreatorJob,
        context: BatchContext,
        owner: str,
        *,
        owner_is_gone: bool = False,
        note: dict[str, Any] | None = None,
    ) -> CreatorResult | None:
        """Take the creator for ``owner``: None when it is ours to work on.

        Returns the stored result when the creator is final already (a redelivery);
        raises ClaimBusyError while another owner's claim is live. ``owner_is_gone``
        (the local engine holds the batch's lock, so any claim is a dead process's)
        takes over a claim before its lease ends. ``note`` is kept in the claim's
        metadata (the queue engine keeps the message there, for the sweep).
        """
        now = self.now()
        record = self._record(job.key, job.creator, context, CreatorStatus.PROCESSING, note)
        record.lease_owner, record.lease_expires = owner, now + self.lease_seconds
        takeover_at = math.inf if owner_is_gone else now
        try:
            self.retry(
                lambda: self.state.put_creator(
                    record, expected=(CreatorStatus.PENDING,), takeover_at=takeover_at
                )
            )
            return None
        except ConditionFailedError:
            existing = self.state.get_creator(job.key, context.batch_id)
        if existing is None:  # no plan: the job arrived on its own (a direct call)
            self.retry(lambda: self.state.put_creator(record, expected=()))
            return None
        if existing.status.is_final:
            log.info("creator %s already %s in batch %s", job.key, existing.status, job.key)
            return self.result_of(existing, creator=job.creator)
        wait = max(1.0, existing.lease_expires - now)
        raise ClaimBusyError(
            f"creator {job.key!r} of batch {context.batch_id} is claimed by "
            f"{existing.lease_owner} for {wait:.0f} s more",
            retry_after=wait,
        )

    def renew(
        self,
        job: CreatorJob,
        context: BatchContext,
        owner: str,
        note: dict[str, Any] | None = None,
        *,
        progress: dict[str, int] | None = None,
    ) -> bool:
        """Heartbeat: extend our claim; False when it was lost (taken over).

        ``progress`` (the creator's cover counts) is kept in the claim's metadata,
        where :meth:`live_progress` finds it for pages in any process.
        """
        if progress is not None:
            note = {**(note or {}), PROGRESS_FIELD: progress}
        record = self._record(job.key, job.creator, context, CreatorStatus.PROCESSING, note)
        record.lease_owner, record.lease_expires = owner, self.now() + self.lease_seconds
        try:
            self.retry(
                lambda: self.state.put_creator(
                    record, expected=(CreatorStatus.PROCESSING,), owner=owner
                )
            )
            return True
        except ConditionFailedError:
            return False

    def live_progress(self, batch: BatchRecord) -> dict[str, dict[str, int]]:
        """Cover counts of the batch's processing creators, by key, as their claims
        last recorded them (one indexed read of the creators in flight)."""
        live: dict[str, dict[str, int]] = {}
        processing = self.state.creators_with_status(
            CreatorStatus.PROCESSING, processing_date=batch.created_at, limit=LIVE_LIMIT
        )
        for record in processing:
            counts = record.metadata.get(PROGRESS_FIELD)
            if record.batch_id == batch.batch_id and isinstance(counts, dict):
                live[record.creator_name] = counts
        return live

    def release(self, job: CreatorJob, context: BatchContext, owner: str) -> None:
        """Give an unfinished claim back (a graceful stop): pending again, for a rerun."""
        record = self._record(job.key, job.creator, context, CreatorStatus.PENDING)
        try:
            self.retry(
                lambda: self.state.put_creator(
                    record, expected=(CreatorStatus.PROCESSING,), owner=owner
                )
            )
        except ConditionFailedError:
            pass  # finished or taken over meanwhile: nothing of ours to give back

    def finish(
        self,
        result: CreatorResult,
        context: BatchContext,
        owner: str,
        *,
        document_key: str,
        fields: dict[str, Any] | None = None,
        size_bound: int | None = None,
    ) -> BatchRecord | None:
        """Write the final record and count it, once; returns the batch after the count.

        ``document_key`` is the creator's metadata document, already written: a record
        whose covers would not fit keeps them there (``fields``, ``size_bound``: see
        :func:`.creator_covers.record_metadata`). A retry after an ambiguous failure may
        find our own final record already there: that is success. A claim another owner
        took over raises ClaimBusyError (its work will finish the creator).
        """
        metadata = record_metadata(result, document_key, fields=fields, size_bound=size_bound)
        record = CreatorRecord(
            creator_name=result.key,
            processing_date=context.processing_date,
            batch_id=context.batch_id,
            status=result.status,
            images_processed=result.images_used,
            collage_key=result.collage_key,
            processing_duration=round(result.duration, 3),
            error_count=len(result.failures) + (1 if result.error else 0),
            fingerprint=result.fingerprint,
            metadata=metadata,
            ttl=context.ttl,
            lease_owner=owner,
        )
        try:
            return self.retry(
                lambda: self.state.finish_creator(
                    record, expected=(CreatorStatus.PROCESSING,), owner=owner
                )
            )
        except ConditionFailedError:
            stored = self.state.get_creator(result.key, context.batch_id)
        if stored is not None and stored.status.is_final:
            if stored.lease_owner != owner:
                log.info("creator %s was finished by %s", result.key, stored.lease_owner)
            return self.state.get_batch(context.batch_id)
        holder = stored.lease_owner if stored else None
        raise ClaimBusyError(
            f"creator {result.key!r}: the claim passed to {holder} before this finish",
            retry_after=self.lease_seconds,
        )

    def result_of(self, record: CreatorRecord, *, creator: str | None = None) -> CreatorResult:
        """The result a final record holds, covers included wherever the record keeps them."""
        covers = record_covers(record, self.outputs)
        return CreatorResult.from_record(record, creator=creator, covers=covers)

    def _record(
        self,
        key: str,
        display: str,
        context: BatchContext,
        status: CreatorStatus,
        note: dict[str, Any] | None = None,
    ) -> CreatorRecord:
        return CreatorRecord(
            creator_name=key,
            processing_date=context.processing_date,
            batch_id=context.batch_id,
            status=status,
            metadata={"display_name": display, **(note or {})},
            ttl=context.ttl,
        )

    # -- the summary -------------------------------------------------------------

    def finalize(
        self,
        batch_id: str,
        *,
        peak_memory_percent: float = 0.0,
        takeover: bool = False,
        wait: bool = True,
    ) -> BatchSummary | None:
        """Write the summary if every creator is final and nobody else has claimed it,
        then send the completion notice (see :mod:`.closing`).

        Returns the summary this call wrote, else None (not finished, or written by
        another). ``takeover``: the caller knows any earlier claimant is dead (the
        local batch lock), so its claim is void. ``wait=False``: a summary another
        has claimed is left to it at once (the sweep).
        """
        return self.closing.finalize(
            batch_id, peak_memory_percent=peak_memory_percent, takeover=takeover, wait=wait
        )

    def resume_notice(self, batch: BatchRecord, *, owner_is_gone: bool = False) -> bool:
        """Send the notice of a finished batch whose sender died before it went out
        (see :meth:`.closing.BatchClosing.resume_notice`). True when this call sent it."""
        return self.closing.resume_notice(batch, owner_is_gone=owner_is_gone)

    def notice_owed(self, batch: BatchRecord) -> float | None:
        """While a finished batch's notice may still have to be sent (the sweep keeps
        the batch open until then): when its sender's claim ends; else None."""
        return self.closing.notice_owed(batch)

    # -- the plan ----------------------------------------------------------------

    def planned_spec(self, batch_id: str) -> dict[str, Any]:
        """The options the batch was planned with (see :meth:`.BatchPlans.spec`)."""
        return self.batch_plans.spec(batch_id)

    def plan_stats(self, batch_id: str) -> PlanStats | None:
        """The CSV statistics (rows read, skipped rows) of a planned batch, if readable."""
        return self.batch_plans.stats(batch_id)
