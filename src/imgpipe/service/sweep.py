"""The scheduled sweep of the queue engine: nothing stays stuck once no one works on it.

Run on a schedule (an EventBridge rule invokes the Lambda handler's sweep) through
:meth:`.fanout.FanOut.sweep`::

    counts = sweep(state, queue, ledger, fanout.finalize)
    counts  # {"stuck": 0, "requeued": 0, "finalized": 1, "notices_resent": 0}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from imgpipe.domain.records import CreatorStatus
from imgpipe.ports import StateStore, WorkQueue
from imgpipe.service.ledger import BatchLedger
from imgpipe.service.summary import BatchSummary

__all__ = ["sweep"]

log = logging.getLogger(__name__)


def sweep(
    state: StateStore,
    queue: WorkQueue,
    ledger: BatchLedger,
    finalize: Callable[[str], BatchSummary | None],
    *,
    limit: int = 1000,
    grace_seconds: float | None = None,
) -> dict[str, int]:
    """Re-queue creators whose claim expired without a message coming back, finalise
    batches whose summary is owed (with ``finalize``, which also archives the CSV),
    and send the notices whose sender died before they went out (their claim
    expired; one sweep takes each over).

    A claim counts as stuck once it expired more than ``grace_seconds`` ago
    (default: one lease): until then its own message may still come back. A
    re-sent message that meets a finished creator is a harmless replay.
    """
    grace = ledger.lease_seconds if grace_seconds is None else grace_seconds
    now = ledger.now()
    stuck = requeued = finalized = resent = 0
    for record in state.creators_with_status(CreatorStatus.PROCESSING, limit=limit):
        if record.lease_expires + grace >= now:
            continue  # live, or just expired: its own redelivery will take it over
        stuck += 1
        message = record.metadata.get("message")
        if isinstance(message, dict):
            queue.send([json.dumps(message)])
            requeued += 1
    for batch in state.list_batches(limit=100):
        if batch.summary_key:
            resent += ledger.resume_notice(batch)
            continue
        if batch.status.is_final:
            continue
        try:
            if finalize(batch.batch_id) is not None:
                finalized += 1
        except Exception:  # one batch's trouble must not stop the sweep
            log.exception("sweep: batch %s could not be finalised", batch.batch_id)
    return {
        "stuck": stuck,
        "requeued": requeued,
        "finalized": finalized,
        "notices_resent": resent,
    }
