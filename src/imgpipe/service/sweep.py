"""The scheduled sweep of the queue engine: nothing stays stuck once no one works on it.

Run on a schedule (an EventBridge rule invokes the Lambda handler's sweep) through
:meth:`.fanout.FanOut.sweep`::

    counts = sweep(state, queue, ledger, fanout.finalize, budget=SweepBudget(requeues=100))
    counts  # {"stuck": 0, "requeued": 0, "finalized": 1, "notices_resent": 0,
            #  "settled": 3, "backing_off": 1, "failing": 0, "more": 0}

It looks at everything that may need it, a page at a time: every ``processing``
record (not the oldest thousand, which may all be live claims ahead of a dead one),
and every open batch (not the newest hundred: a busy deployment's 101st batch would
never be finalised). What it *does* per run is bounded by :class:`SweepBudget`, so
one run stays inside its function's timeout; ``more`` says work was left for the
next run, which starts again from the oldest.

Failing batches do not starve the rest. A finalisation that fails (a summary that
cannot be written, an archive refused, a notice that cannot go out) still spends its
unit of the budget, and the oldest batches come first: without more, five old
batches failing on every run would take every run's budget, and no newer batch would
ever be finalised. So a failure backs its batch off (:mod:`.sweep_backoff`: recorded
on the batch, next try after one run, doubling up to a day), and a batch that failed
before is tried only after every never-tried batch of the run has had its turn. A
batch never tried is reached within ``ceil((n + 1) / finalizations)`` runs, ``n``
being the never-tried batches ahead of it, however many others keep failing.

Backoff rather than rotating the starting point from run to run: rotation needs a
position stored between runs and still spends a whole try (a dead webhook's 50 s)
on every failing batch each lap; backoff puts the cost on the failing batches only
and names them to an operator (``backing_off``, ``failing`` in the counts; each
failure logged with its reason, at ERROR from the tenth in a row on).
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
from imgpipe.service.sweep_backoff import ALERT_AFTER, is_due, record_failure, record_success

__all__ = ["COUNTS", "SweepBudget", "sweep"]

log = logging.getLogger(__name__)

PAGE_SIZE = 500  # records per read: one DynamoDB query page stays well under 1 MB
# What a run reports (all 0 when it had nothing to do): see :func:`sweep`.
COUNTS = (
    "stuck",
    "requeued",
    "finalized",
    "notices_resent",
    "settled",
    "backing_off",
    "failing",
    "more",
)


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

    ``backing_off`` counts the batches seen whose earlier failure makes them wait;
    ``failing`` those seen that failed :data:`.sweep_backoff.ALERT_AFTER` times in a
    row or more (the ``BatchesFailingToFinalise`` metric).
    """
    budget = budget or SweepBudget()
    grace = ledger.lease_seconds if grace_seconds is None else grace_seconds
    counts = dict.fromkeys(COUNTS, 0)
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
    _batches(state, ledger, finalize, budget, counts, now)
    if counts["more"]:
        log.warning("sweep: its budget is spent (%s); the rest is left for the next run", counts)
    return counts


def _batches(
    state: StateStore,
    ledger: BatchLedger,
    finalize: Callable[[str], BatchSummary | None],
    budget: SweepBudget,
    counts: dict[str, int],
    now: float,
) -> None:
    """Visit every open batch, oldest first, until a budget it needs is spent: those
    never failed are tried as they come; those that failed before and are due again
    wait for what budget is left (at most a budget's worth is kept in memory)."""
    finalizations = 0
    retries: list[BatchRecord] = []
    for batch_id in _open_batch_ids(state, budget.page_size):
        batch = state.get_batch(batch_id)  # the index may lag: act on the batch itself
        if batch is None:
            continue
        if not batch.status.is_final and not batch.all_counted:
            continue  # creators still at work (or stuck: re-queued above)
        owed_until = ledger.notice_owed(batch)  # one read of the notice's claim
        if batch.status.is_final and owed_until is None:
            if counts["settled"] >= budget.settlements:
                counts["more"] = 1
                return
            state.settle_batch(batch_id)
            counts["settled"] += 1
            continue
        if batch.summary_key and (owed_until is None or owed_until > now):
            continue  # its notice's sender may still be at work: not a try, not a failure
        if not is_due(batch, now):
            counts["backing_off"] += 1
            counts["failing"] += batch.sweep_failures >= ALERT_AFTER
            continue
        if batch.sweep_failures:
            if len(retries) < budget.finalizations:
                retries.append(batch)
            else:
                counts["more"] = 1
                counts["failing"] += batch.sweep_failures >= ALERT_AFTER
            continue
        if finalizations >= budget.finalizations:
            counts["more"] = 1
            return
        finalizations += 1
        _close(state, batch, ledger, finalize, counts, now)
    for batch in retries:
        if finalizations >= budget.finalizations:
            counts["more"] = 1
            counts["failing"] += batch.sweep_failures >= ALERT_AFTER
            continue
        finalizations += 1
        _close(state, batch, ledger, finalize, counts, now)


def _close(
    state: StateStore,
    batch: BatchRecord,
    ledger: BatchLedger,
    finalize: Callable[[str], BatchSummary | None],
    counts: dict[str, int],
    now: float,
) -> None:
    """Write the owed summary, or send the owed notice; the next run settles the batch.
    A failure backs the batch off (:mod:`.sweep_backoff`); a success clears that."""
    if batch.summary_key:
        if ledger.resume_notice(batch):
            counts["notices_resent"] += 1
            record_success(state, ledger, batch)
            return
        # resume_notice logged why (a claim taken by another sweep at once lands here
        # too: a run's wait for a notice someone else sent costs nothing)
        failures = record_failure(
            state, ledger, batch, now, "its notice is owed and was not sent this run"
        )
    else:
        try:
            summary = finalize(batch.batch_id)  # None: not finished, or written by another
        except Exception as exc:  # one batch's trouble must not stop the sweep
            reason = f"{type(exc).__name__}: {exc}"
            failures = record_failure(state, ledger, batch, now, reason, error=exc)
        else:
            counts["finalized"] += summary is not None
            record_success(state, ledger, batch)
            return
    counts["failing"] += failures >= ALERT_AFTER


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
