"""Planning a batch, written once for both engines: marker, batch record, then chunk by
chunk the pending records, the dispatch and a checkpoint.

The local run (:mod:`.batch`, an in-process pool) and the queue engine (:mod:`.fanout`,
SQS) both call :meth:`BatchPlanner.fan_out` with their :class:`~imgpipe.ports.Dispatcher`::

    planner = BatchPlanner(ledger)
    batch_id, planned_before = planner.mark("3f2a...", "20261123-101500-1a2b3c4d")
    context = planner.open(batch_id, staged, stats, options, source="x.csv")
    sent = planner.fan_out(context, staged, dispatcher, continuing=planned_before)

What is the same: the marker that maps an input to its batch, the batch record (its
settings snapshot, statistics and resolved spec), and the loop. A chunk's pending
records are written before its creators are dispatched, so no worker claims a creator
that a late pending write would reset; the checkpoint after the dispatch names the
chunks whose records exist (and, for a queue, whose messages were sent). A continued
plan writes the chunk it died in again with ``replay`` (records that moved on stay) and
the chunks after it in bulk.

What differs, and stays with each engine:

- *Continuing.* A queue's messages outlive the planner, so a replayed planner sends
  only what comes after its checkpoint (``durable``). An in-process pool's work dies
  with its process, so a rerun hands every creator that is not final to the pool again
  (``skip`` holds the final ones).
- *Which batch an input continues.* Locally the marker is written under the input's
  planning lock and a rerun continues only an *unfinished* batch (a finished one is
  rerun as a new batch that skips unchanged creators by fingerprint); the local engine
  then marks the batch running under its own owner, which its batch lock makes safe.
  On AWS the marker is a conditional put (two planners of one event race for it) and
  a replayed event always means the batch it reserved, whose record workers may be
  counting in: it is never rewritten.
- *When the batch ends.* The pool runs to the end in this process, which then writes
  the summary or marks the batch interrupted; on a queue the last worker finishes it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Container, Iterator, Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

from imgpipe.errors import KeyCollisionError, StorageError
from imgpipe.service.planning import plan_marker_key, settings_snapshot

if TYPE_CHECKING:
    from imgpipe.domain.manifest import CreatorJob
    from imgpipe.domain.records import BatchRecord
    from imgpipe.ports import Dispatcher
    from imgpipe.service.ledger import BatchLedger
    from imgpipe.service.results import BatchContext, PlanStats
    from imgpipe.settings import BatchSpec

__all__ = ["PLAN_CHUNK", "BatchPlanner", "PlannedJobs", "checkpoint_key", "chunks"]

log = logging.getLogger(__name__)

PLAN_CHUNK = 500  # creators per pending-record batch, dispatch and checkpoint


class PlannedJobs(Protocol):
    """The creators of a planned CSV: in memory, or staged on disk (a million rows)."""

    @property
    def creators(self) -> int: ...

    def jobs(self, start: int = 0) -> Iterator[CreatorJob]: ...


def checkpoint_key(batch_id: str) -> str:
    """Where a batch's planning progress lives in the plans store."""
    return f"processing/{batch_id}/checkpoint.json"


def chunks(jobs: Iterator[CreatorJob], size: int) -> Iterator[list[CreatorJob]]:
    """Lists of ``size`` jobs (the last one shorter), read lazily.

    >>> from imgpipe.domain.manifest import CreatorJob
    >>> [len(c) for c in chunks(iter([CreatorJob(str(i), str(i), ()) for i in range(5)]), 2)]
    [2, 2, 1]
    """
    while chunk := list(islice(jobs, size)):
        yield chunk


class BatchPlanner:
    """Opens batches and fans their creators out through a dispatcher."""

    def __init__(self, ledger: BatchLedger, *, chunk_size: int = PLAN_CHUNK) -> None:
        self.ledger = ledger
        self.chunk_size = chunk_size

    # -- which batch an input is -------------------------------------------------

    def marked(self, identity: str) -> str | None:
        """The batch id this input was last planned as, if any."""
        try:
            marker = json.loads(self.ledger.plans.get(plan_marker_key(identity)))
        except (StorageError, ValueError):
            return None
        batch_id = marker.get("batch_id") if isinstance(marker, dict) else None
        return str(batch_id) if batch_id else None

    def mark(self, identity: str, batch_id: str, *, if_absent: bool = True) -> tuple[str, bool]:
        """Map the input to ``batch_id``; returns the batch id it maps to and whether it
        was marked before. ``if_absent``: the first marker wins (a redelivered event gets
        the batch reserved before); without it the marker is overwritten (the caller
        holds the input's planning lock)."""
        marker = plan_marker_key(identity)
        body = json.dumps({"batch_id": batch_id}).encode()
        try:
            self.ledger.plans.put(marker, body, if_absent=if_absent)
            return batch_id, False
        except KeyCollisionError:
            marked = self.marked(identity)
            if marked is None:  # unreadable: ours is as good as any, and readable
                self.ledger.plans.put(marker, body)
                return batch_id, False
            return marked, True

    def unfinished(self, identity: str) -> BatchRecord | None:
        """The batch this input was last planned as, when it has work left."""
        batch_id = self.marked(identity)
        batch = self.ledger.state.get_batch(batch_id) if batch_id else None
        if batch is None or batch.status.is_final or batch.summary_key:
            return None
        return batch

    # -- the batch record --------------------------------------------------------

    def open(
        self,
        batch_id: str,
        planned: PlannedJobs,
        stats: PlanStats,
        options: BatchSpec,
        *,
        source: str,
        owner: str = "",
    ) -> BatchContext:
        """Record a new batch of ``planned``'s creators, with its resolved spec."""
        return self.ledger.open_batch(
            batch_id,
            source=source,
            total=planned.creators,
            settings=settings_snapshot(options),
            stats=stats,
            spec=options.to_spec(),
            owner=owner,
        )

    # -- the loop ----------------------------------------------------------------

    def fan_out(
        self,
        context: BatchContext,
        planned: PlannedJobs,
        dispatcher: Dispatcher,
        *,
        continuing: bool = False,
        skip: Container[str] = frozenset(),
        heartbeat: Callable[[], None] | None = None,
    ) -> int:
        """Chunk by chunk: pending records, dispatch, checkpoint; the creators handed over.

        ``continuing``: the batch was planned before (a rerun, a replayed planner), so
        its checkpoint counts. ``skip``: keys of creators not to dispatch (final ones).
        ``heartbeat`` is called after every chunk (the planner extends its message).
        Stops early when the dispatcher takes fewer than it was given (it is stopping).
        """
        done = self._checkpoint(context.batch_id) if continuing else 0
        first = done if dispatcher.durable else 0
        handed = 0
        size = self.chunk_size
        for number, jobs in enumerate(chunks(planned.jobs(first * size), size), start=first):
            if number >= done:  # records of the chunks before exist already
                notes = dispatcher.prepare(context, number, jobs)
                self.ledger.add_pending(
                    context,
                    jobs,
                    # The chunk an earlier attempt died in may have moved on: keep what is there.
                    replay=continuing and number == done,
                    notes=_notes(notes) if notes else None,
                )
            todo = [job for job in jobs if job.key not in skip]
            given = dispatcher.dispatch(context, number, todo)
            handed += given
            if given < len(todo):
                return handed  # stopping: the rest stays pending, the batch resumable
            if number >= done:
                self._save_checkpoint(context.batch_id, number + 1)
            if heartbeat is not None:
                try:
                    heartbeat()
                except Exception:  # a missed beat is not fatal: the next one may land
                    log.warning("planning %s: heartbeat failed", context.batch_id, exc_info=True)
        return handed

    def _checkpoint(self, batch_id: str) -> int:
        try:
            return int(json.loads(self.ledger.plans.get(checkpoint_key(batch_id)))["chunks"])
        except (StorageError, ValueError, KeyError, TypeError):
            return 0

    def _save_checkpoint(self, batch_id: str, chunks_done: int) -> None:
        body = json.dumps({"chunks": chunks_done}).encode()
        self.ledger.plans.put(checkpoint_key(batch_id), body, content_type="application/json")


def _notes(notes: Mapping[str, dict[str, Any]]) -> Callable[[CreatorJob], dict[str, Any]]:
    return lambda job: notes.get(job.key, {})
