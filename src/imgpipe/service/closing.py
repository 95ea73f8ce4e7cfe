"""The batch's closing act: its summary, written once, then its completion notice, sent once.

Whoever finishes a batch's last creator calls :meth:`BatchLedger.finalize
<imgpipe.service.ledger.BatchLedger.finalize>`, which lands here. Several callers
may see the batch complete at once (two creators finishing together, a sweep, a
local rerun), any of them may die half-way, and the state index the summary reads
may lag; so closing a batch is a protocol of its own, kept apart from the ledger's
per-creator records:

1. The summary is claimed (a lease of :data:`SUMMARY_LEASE_SECONDS`). A caller that
   loses the claim waits for the winner's summary, or fails so that it is retried.
2. The notice is claimed (``pending``) before the summary exists, its lease ending
   with the summary claim's: a crash between the two leaves a claim that whoever
   takes the summary over (or a sweep, or a local rerun) sends.
3. The summary is streamed from the creators' records, re-read while the index lags
   the batch's counters, and published.
4. The notice goes out, sent only by the summary's writer; its outcome never changes
   the batch's. A notice whose sender died is sent by :meth:`BatchClosing.resume_notice`.

A failure before the summary is published gives both claims back, so the next try
writes the summary at once instead of after the lease::

    closing = BatchClosing(ledger)           # the ledger builds its own
    summary = closing.finalize("b1")         # None: not finished, or another wrote it
    closing.resume_notice(batch)             # the sweep's and status's catch-up
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from imgpipe.domain.keys import summary_key
from imgpipe.errors import SummaryPendingError
from imgpipe.service.notice import Reservation
from imgpipe.service.summary import SummaryWriter

if TYPE_CHECKING:  # the ledger builds its closing: a type-only import back
    from imgpipe.domain.records import BatchRecord
    from imgpipe.service.ledger import BatchLedger
    from imgpipe.service.notice import NoticeRecord
    from imgpipe.service.results import PlanStats
    from imgpipe.service.summary import BatchSummary

__all__ = [
    "INDEX_CATCH_UP_SECONDS",
    "INDEX_CATCH_UP_TRIES",
    "SUMMARY_LEASE_SECONDS",
    "BatchClosing",
]

log = logging.getLogger(__name__)

# A summary claim older than this without a summary is a dead one (the longest a
# summary takes to write, with room to spare).
SUMMARY_LEASE_SECONDS = 900.0
SUMMARY_POLL_SECONDS = 0.25
# An index (DynamoDB's batch-id-index) may lag behind the table for a moment:
# read it again this many times before giving the summary up to a later retry.
INDEX_CATCH_UP_TRIES = 6
INDEX_CATCH_UP_SECONDS = 0.5


class BatchClosing:
    """Summary and completion notice of the batches of one ledger.

    Reads the ledger's state, stores, notices, clock and retry policy at each call,
    not once: they are the ledger's settings (tests change some after it is built).
    """

    def __init__(self, ledger: BatchLedger) -> None:
        self.ledger = ledger

    def finalize(
        self,
        batch_id: str,
        *,
        peak_memory_percent: float = 0.0,
        takeover: bool = False,
        wait: bool = True,
    ) -> BatchSummary | None:
        """Write the summary if every creator is final and nobody else has claimed it.

        Returns the summary this call wrote, else None (not finished, or written by
        another). The summary is built from the state records, streamed: the same for
        a local run, a resumed run and a distributed one. ``takeover``: the caller knows
        any earlier claimant is dead (the local batch lock), so its claim is void.
        ``wait=False`` (the sweep): a summary claimed by another is left to it at once,
        instead of waiting for it and failing if it is not written in time.
        """
        batch = self.ledger.state.get_batch(batch_id)
        if batch is None or batch.summary_key:
            return None
        if not batch.all_counted:
            return None
        now = self.ledger.now()
        lease = 0.0 if takeover else SUMMARY_LEASE_SECONDS
        claimed = self.ledger.retry(
            lambda: self.ledger.state.claim_summary(batch_id, now=now, lease_seconds=lease)
        )
        if not claimed:
            if wait:
                self._await_summary(batch_id)
            return None
        reservation, key = Reservation.NONE, ""
        try:
            stats, batch.source, prefix = self.ledger.batch_plans.for_summary(
                batch_id, batch.source
            )
            # The notice is claimed before the summary exists, with a lease that ends
            # with our summary claim: a crash between the two leaves a claim that
            # whoever takes the summary over (or a sweep, or a local rerun) sends.
            key = summary_key(batch_id, prefix=prefix)
            reservation = self._reserve_notice(batch_id, key, now)
            writer = self._write_summary(batch, stats, peak_memory_percent, prefix)
            # Retried like every write of ours: a refused closing write would leave
            # the summary claimed and unwritten until its lease ends.
            summary = self.ledger.retry(lambda: writer.publish(self.ledger.state, batch))
        except Exception:
            # Failed, not dead (a lagging index, a store error): give the claims back so
            # the next try writes the summary at once instead of after the lease.
            if reservation is Reservation.HELD and self.ledger.notices is not None:
                self.ledger.notices.release(batch_id, key)
            self.ledger.state.release_summary(batch_id, claimed_at=now)
            raise
        log.info("batch %s complete: %s", batch_id, summary.totals)
        self._announce(summary, reservation, takeover=takeover)
        return summary

    def _reserve_notice(self, batch_id: str, key: str, now: float) -> Reservation:
        if self.ledger.notices is None:
            return Reservation.NONE
        try:
            return self.ledger.notices.reserve(
                batch_id, key, lease_expires=now + SUMMARY_LEASE_SECONDS
            )
        except Exception:  # a notice must never fail the batch; announce claims it then
            log.exception("batch %s: the completion notice could not be claimed", batch_id)
            return Reservation.UNRECORDED

    def _announce(self, summary: BatchSummary, reservation: Reservation, *, takeover: bool) -> None:
        """Send the completion notice: only here, so only the summary's writer sends.

        Its outcome goes beside the summary and into ``summary.extra["notice"]`` for
        the caller to show; whatever happens, the batch stays finished. A notice an
        earlier writer claimed (it died, we took the summary over) is sent once its
        claim is dead: at once here, since its lease ended with its summary claim.
        """
        if self.ledger.notices is None or reservation is Reservation.NONE:
            return
        try:
            if reservation is Reservation.TAKEN:
                record = self.ledger.notices.resume(
                    summary.batch_id,
                    summary.summary_key,
                    now=self.ledger.now(),
                    owner_is_gone=takeover,
                )
            else:
                record = self.ledger.notices.announce(summary, reservation)
        except Exception:
            log.exception("batch %s: the completion notice could not be sent", summary.batch_id)
            return
        if record is not None:
            summary.extra["notice"] = record.to_dict()

    def resume_notice(self, batch: BatchRecord, *, owner_is_gone: bool = False) -> bool:
        """Send the notice of a finished batch whose sender died before it went out
        (after writing the summary, or mid-send): once its claim expired, or with
        ``owner_is_gone`` at once. True when this call sent it."""
        if self.ledger.notices is None or not batch.summary_key:
            return False
        try:
            record: NoticeRecord | None = self.ledger.notices.resume(
                batch.batch_id,
                batch.summary_key,
                now=self.ledger.now(),
                owner_is_gone=owner_is_gone,
            )
        except Exception:  # one batch's notice must not stop a sweep or a status
            log.exception("batch %s: the stranded notice could not be sent", batch.batch_id)
            return False
        return record is not None

    def notice_owed(self, batch: BatchRecord) -> float | None:
        """While the notice of a finished batch may still have to be sent: when its
        sender's claim ends (a resume may send it from then on); else None."""
        if self.ledger.notices is None or not batch.summary_key:
            return None
        return self.ledger.notices.owed_until(batch.batch_id, batch.summary_key)

    def _write_summary(
        self, batch: BatchRecord, stats: PlanStats, peak_memory_percent: float, prefix: str
    ) -> SummaryWriter:
        """Stream the records into a summary (under the batch's output ``prefix``);
        re-read while the index lags the counters."""
        expected = batch.completed + batch.failed + batch.skipped
        for attempt in range(INDEX_CATCH_UP_TRIES):
            writer = SummaryWriter(
                self.ledger.outputs,
                batch,
                stats,
                finished=self.ledger.clock(),
                peak_memory_percent=peak_memory_percent,
                prefix=prefix,
            )
            for record in self.ledger.state.creators_in_batch(batch.batch_id):
                if record.status.is_final:
                    writer.add(self.ledger.result_of(record))
            if writer.creators >= expected:
                return writer
            writer.discard()
            log.info(
                "batch %s: %d of %d final records visible; reading again",
                batch.batch_id,
                writer.creators,
                expected,
            )
            self.ledger.sleep(INDEX_CATCH_UP_SECONDS * (attempt + 1))
        raise SummaryPendingError(
            f"batch {batch.batch_id}: the state index still lags the counters; "
            "the summary is written on a later try"
        )

    def _await_summary(self, batch_id: str) -> None:
        """Return once another worker's claimed summary is written, else raise.

        Two creators finishing together both see the batch complete; the one that
        lost the claim waits the few seconds the winner needs. If the summary does
        not appear, the winner may have died: SummaryPendingError fails this message
        so it comes back, and once the dead claim's lease is over the retry writes it.
        """
        deadline = time.monotonic() + self.ledger.summary_wait_seconds
        while True:
            current = self.ledger.state.get_batch(batch_id)
            if current is not None and current.summary_key:
                return
            if time.monotonic() >= deadline:
                raise SummaryPendingError(
                    f"the summary of batch {batch_id} was claimed but is not written yet"
                )
            self.ledger.sleep(SUMMARY_POLL_SECONDS)
