"""The sweep's backoff: a batch it failed to finalise waits before it is tried again.

A finalisation the sweep tries (the summary, the CSV's archive, a stranded notice)
may fail on every run: a summary that cannot be written, an archive refused, a
notice that cannot be sent yet. Each failure is recorded on the batch
(``sweep_failures``, ``sweep_retry_at``: two numbers, through
``StateStore.set_sweep_backoff``), and the next try waits longer each time::

    >>> [retry_delay(n) for n in (1, 2, 3, 4, 9, 10, 30)]
    [270.0, 570.0, 1170.0, 2370.0, 76770.0, 86370.0, 86370.0]

Why this schedule: the first retry comes with the next run (a passing fault, a
throttled write or a store's blip, costs one run); doubling makes a batch that needs
an operator cost a handful of tries a day, not 288; the cap of a day means a fault
fixed without anyone touching the batch (a webhook back, a permission granted) is
picked up within a day. Each delay is :data:`JITTER_SECONDS` short of a whole number
of runs, so the run that many intervals later finds the batch due even if the
schedule starts it a little early. After :data:`ALERT_AFTER` failures in a row every
further failure is logged at ERROR with its count, and the batch is counted in the
sweep's ``failing`` (the ``BatchesFailingToFinalise`` metric). A success clears it.
"""

from __future__ import annotations

import logging

from imgpipe.domain.records import BatchRecord
from imgpipe.ports import StateStore
from imgpipe.service.ledger import BatchLedger

__all__ = [
    "ALERT_AFTER",
    "BASE_SECONDS",
    "CAP_SECONDS",
    "JITTER_SECONDS",
    "is_due",
    "record_failure",
    "record_success",
    "retry_delay",
]

log = logging.getLogger("imgpipe.service.sweep")  # the sweep's own log: one place to read

BASE_SECONDS = 300.0  # the sweep's schedule: rate(5 minutes) (template.yaml, functions.tf)
CAP_SECONDS = 24 * 3600.0
JITTER_SECONDS = 30.0  # how early a scheduled run may start and still find the batch due
ALERT_AFTER = 10  # failures in a row after which each one is an ERROR (about 2 days)


def retry_delay(failures: int) -> float:
    """Seconds from a run whose try was failure number ``failures`` (1, 2, ...) to the
    next try."""
    doubled = BASE_SECONDS * 2.0 ** min(max(failures - 1, 0), 20)  # 2**20 runs: past the cap
    return min(doubled, CAP_SECONDS) - JITTER_SECONDS


def is_due(batch: BatchRecord, now: float) -> bool:
    """The sweep may try to finalise ``batch`` at ``now`` (never failed, or its wait is over)."""
    return batch.sweep_failures == 0 or batch.sweep_retry_at <= now


def record_failure(
    state: StateStore,
    ledger: BatchLedger,
    batch: BatchRecord,
    now: float,
    reason: str,
    *,
    error: BaseException | None = None,
) -> int:
    """Count one more failure of ``batch`` (tried by the run that started at ``now``),
    log it with its reason, and schedule the next try; the new count."""
    failures = batch.sweep_failures + 1
    delay = retry_delay(failures)
    level = logging.ERROR if failures >= ALERT_AFTER else logging.WARNING
    log.log(
        level,
        "sweep: batch %s could not be finalised (failure %d in a row; next try in %.0f s): %s",
        batch.batch_id,
        failures,
        delay,
        reason,
        exc_info=error,
    )
    try:
        ledger.retry(
            lambda: state.set_sweep_backoff(batch.batch_id, failures=failures, retry_at=now + delay)
        )
    except Exception:  # the next run tries it again, sooner: no harm beyond one try
        log.exception("sweep: the backoff of batch %s could not be recorded", batch.batch_id)
    return failures


def record_success(state: StateStore, ledger: BatchLedger, batch: BatchRecord) -> None:
    """Clear the failures of a batch the sweep has now finalised (if it had any)."""
    if not batch.sweep_failures:
        return
    log.info(
        "sweep: batch %s finalised after %d failed tries", batch.batch_id, batch.sweep_failures
    )
    try:
        ledger.retry(lambda: state.set_sweep_backoff(batch.batch_id, failures=0, retry_at=0.0))
    except Exception:  # a stale record only delays a batch that is done anyway
        log.exception("sweep: the backoff of batch %s could not be cleared", batch.batch_id)
