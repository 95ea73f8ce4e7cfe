"""The scheduled sweep of the queue engine: nothing stays stuck once no one works on it.

Run on a schedule (an EventBridge rule invokes the Lambda handler's sweep) through
:meth:`.fanout.FanOut.sweep`::

    counts = sweep(state, queue, ledger, fanout.finalize, budget=SweepBudget(requeues=100))
    counts  # {"stuck": 0, "requeued": 0, "finalized": 1, "notices_resent": 0,
            #  "settled": 3, "more": 0}

It looks at everything that may need it, a page at a time: every ``processing``
record (not the oldest thousand, which may all be live claims ahead of a dead one),
and every open batch (not the newest hundred: a busy deployment's 101st batch would
never be finalised). What it *does* per run is bounded by :class:`SweepBudget`, so
one run stays inside its function's timeout; ``more`` says work was left for the
next run, which starts again from the oldest.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from imgpipe.domain.records import BatchRecord, CreatorRecord, CreatorStatus
from imgpipe.ports import StateStore, WorkQueue
from imgpipe.service.ledger import BatchLedger
from imgpipe.service.summary import BatchSummary

__all__ = ["SweepBudget", "sweep"]

log = logging.getLogger(__name__)

PAGE_SIZE = 500  # records per read: one DynamoDB query page stays well under 1 MB


@dataclass(frozen=True)
class SweepBudget:
    """The most one sweep does; the rest is the next run's (``IMGPIPE_SWEEP_MAX_*``).

    ``requeues``: messages sent again (SendMessageBatch, 10 a call: 1,000 take a few
    seconds). ``finalizations``: summaries written, or tried, and notices sent again;
    each may stream a large batch's records or wait out a dead webhook's retries (about
    50 s with the default timeout and retries), so 5 stay inside the sweep's 300 s.
    ``settlements``: finished batches closed (a read, the notice's record, a write).
    """

    requeues: int = 1000
    finalizations: int = 5
    settlements: int = 1000
    page_size: int = PAGE_SIZE


def sweep(
    state: StateStore,
    queue: WorkQueue,
    ledger: BatchLedger,
    finalize: Callable[[str], BatchSummary | None],
    *,
    budget: SweepBudget | None = None,
    grace_seconds: float | None = None,
) -> dict[str, int]:
    """Re-queue creators whose claim expired without a message coming back, finalise
    batches whose summary is owed (with ``finalize``, which also archives the CSV),
    send the notices whose sender died before they went out (their claim expired;
    one sweep takes each over), and settle the batches that need nothing more.

    A claim counts as stuck once it expired more than ``grace_seconds`` ago
    (default: one lease): until then its own message may still come back. A
    re-sent message that meets a finished creator is a harmless replay. Every stuck
    claim is counted (the ``StuckCreators`` metric), even past the budget.
    """
    budget = budget or SweepBudget()
    grace = ledger.lease_seconds if grace_seconds is None else grace_seconds
    counts = dict.fromkeys(
        ("stuck", "requeued", "finalized", "notices_resent", "settled", "more"), 0
    )
    now = ledger.now()
    for record in _processing(state, budget.page_size):
        if record.lease_expires + grace >= now:
            continue  # live, or just expired: its own redelivery will take it over
        counts["stuck"] += 1
        message = record.metadata.get("message")
        if not isinstance(message, dict):
            continue
        if counts["requeued"] >= budget.requeues:
            counts["more"] = 1
            continue
        queue.send([json.dumps(message)])
        counts["requeued"] += 1
    _batches(state, ledger, finalize, budget, counts)
    if counts["more"]:
        log.warning("sweep: its budget is spent (%s); the rest is left for the next run", counts)
    return counts


def _batches(
    state: StateStore,
    ledger: BatchLedger,
    finalize: Callable[[str], BatchSummary | None],
    budget: SweepBudget,
    counts: dict[str, int],
) -> None:
    """Visit every open batch, oldest first, until a budget it needs is spent."""
    finalizations = 0
    for batch_id in _open_batch_ids(state, budget.page_size):
        batch = state.get_batch(batch_id)  # the index may lag: act on the batch itself
        if batch is None:
            continue
        if not batch.status.is_final and not batch.all_counted:
            continue  # creators still at work (or stuck: re-queued above)
        if batch.status.is_final and not ledger.notice_owed(batch):
            if counts["settled"] >= budget.settlements:
                counts["more"] = 1
                return
            state.settle_batch(batch_id)
            counts["settled"] += 1
            continue
        if finalizations >= budget.finalizations:
            counts["more"] = 1
            return
        finalizations += 1
        _close(batch, ledger, finalize, counts)


def _close(
    batch: BatchRecord,
    ledger: BatchLedger,
    finalize: Callable[[str], BatchSummary | None],
    counts: dict[str, int],
) -> None:
    """Write the owed summary, or send the owed notice; the next run settles the batch."""
    if batch.summary_key:
        counts["notices_resent"] += ledger.resume_notice(batch)
        return
    try:
        if finalize(batch.batch_id) is not None:
            counts["finalized"] += 1
    except Exception:  # one batch's trouble must not stop the sweep
        log.exception("sweep: batch %s could not be finalised", batch.batch_id)


def _processing(state: StateStore, page_size: int) -> Iterator[CreatorRecord]:
    after: str | None = None
    while True:
        page = state.creators_page(CreatorStatus.PROCESSING, after=after, page_size=page_size)
        yield from page.items
        if page.cursor is None:
            return
        after = page.cursor


def _open_batch_ids(state: StateStore, page_size: int) -> Iterator[str]:
    after: str | None = None
    while True:
        page = state.open_batches(after=after, page_size=page_size)
        yield from page.items
        if page.cursor is None:
            return
        after = page.cursor
