"""A whole batch on one machine: plan (or resume), run creators in-process, summarize.

Creators run concurrently, at most ``options.max_workers`` at a time, so memory
is bounded by configuration: only the cells of the creators in flight are held.
Downloads across all creators share the downloader's global limit. Planning
(:class:`.planner.BatchPlanner`), records, leases and the summary are the queue
engine's (:mod:`.fanout`); what is local is the dispatcher (an in-process
:class:`.pool.PoolDispatcher`, fed chunk by chunk while it works) and the batch lock.

A rerun of the same input (CSV content and output-shaping settings) continues
the unfinished batch: finished creators are skipped, claims of the dead process
are taken over at once (its lock proves it gone), and the rest run.

Example::

    runner = BatchRunner(store, ledger, downloader, locks=locks, executor=pool)
    summary = await runner.run(manifest, options, source="covers.csv", identity=ident)
    summary.exit_code  # 0 all good, 3 some creators failed
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from imgpipe.errors import (
    BatchLockedError,
    ClaimBusyError,
    ImgpipeError,
    StateError,
    StorageError,
)
from imgpipe.logs import log_context
from imgpipe.service.ledger import local_owner
from imgpipe.service.memory import MemoryMonitor
from imgpipe.service.pipeline import CreatorPipeline
from imgpipe.service.planner import BatchPlanner, PlannedJobs
from imgpipe.service.planning import new_batch_id, plan_stats
from imgpipe.service.pool import PoolDispatcher
from imgpipe.service.progress import NullProgress

if TYPE_CHECKING:
    from imgpipe.domain.manifest import CreatorJob, Manifest
    from imgpipe.ports import BatchLock, BatchLocks
    from imgpipe.service.ledger import BatchLedger
    from imgpipe.service.pipeline import Fetcher
    from imgpipe.service.progress import ProgressSink
    from imgpipe.service.results import BatchContext, CreatorResult, PlanStats
    from imgpipe.service.summary import BatchSummary
    from imgpipe.settings import BatchSpec

__all__ = ["BatchInterruptedError", "BatchRunner", "InMemoryJobs", "PlannedJobs"]

log = logging.getLogger(__name__)


class BatchInterruptedError(ImgpipeError):
    """The run stopped before every creator was final; the batch is resumable."""

    def __init__(self, batch_id: str, done: int, total: int, reason: str) -> None:
        super().__init__(
            f"batch {batch_id} interrupted ({reason}): {done} of {total} creators done; "
            "run the same command again to continue"
        )
        self.batch_id, self.done, self.total, self.reason = batch_id, done, total, reason
        self.signal: int | None = None  # the signal that stopped the run, when one did


class InMemoryJobs:
    """A parsed :class:`Manifest` as :class:`PlannedJobs`."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest

    @property
    def creators(self) -> int:
        return len(self.manifest.jobs)

    def jobs(self, start: int = 0) -> Iterator[CreatorJob]:
        return iter(self.manifest.jobs[start:])

    def stats(self) -> PlanStats:
        m = self.manifest
        return plan_stats(m.rows_read, m.duplicate_rows, m.problems)


@dataclass(frozen=True)
class _Request:
    """What a run was asked to do (see :meth:`BatchRunner.run`)."""

    planned: PlannedJobs
    stats: PlanStats
    options: BatchSpec
    source: str
    identity: str
    batch_id: str | None
    new_batch: bool


@dataclass
class _Started:
    context: BatchContext
    lock: BatchLock
    done: set[str]  # keys of creators already final (a resumed batch)
    resumed: bool


class BatchRunner:
    """Runs every creator of a manifest through a :class:`CreatorPipeline`.

    ``progress_seconds``: how often, at most, a creator's changed cover counts are
    written to its claim for pages of other processes (None: only at renewals).
    """

    def __init__(
        self,
        ledger: BatchLedger,
        fetcher: Fetcher,
        *,
        locks: BatchLocks,
        executor: Executor | None = None,
        monitor: MemoryMonitor | None = None,
        progress: ProgressSink | None = None,
        progress_seconds: float | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = ledger
        self.locks = locks
        self.monitor = monitor or MemoryMonitor(reader=lambda: 0.0)
        self.progress = progress or NullProgress()
        self.clock = clock
        self.owner = local_owner()
        self.planner = BatchPlanner(ledger)
        self.pipeline = CreatorPipeline(
            ledger.outputs,
            ledger,
            fetcher,
            executor=executor,
            monitor=self.monitor,
            progress=self.progress,
            progress_seconds=progress_seconds,
            clock=clock,
        )

    async def run(
        self,
        planned: PlannedJobs,
        stats: PlanStats,
        options: BatchSpec,
        *,
        source: str,
        identity: str,
        batch_id: str | None = None,
        new_batch: bool = False,
        stop: asyncio.Event | None = None,
    ) -> BatchSummary:
        """Run (or continue) the batch; BatchInterruptedError when ``stop`` is set first."""
        request = _Request(planned, stats, options, source, identity, batch_id, new_batch)
        started = await asyncio.to_thread(self._start, request)
        try:
            with log_context(batch_id=started.context.batch_id):  # on the batch's own records
                return await self._run_started(started, planned, options, stop)
        finally:
            started.lock.release()

    async def _run_started(
        self,
        started: _Started,
        planned: PlannedJobs,
        options: BatchSpec,
        stop: asyncio.Event | None,
    ) -> BatchSummary:
        context = started.context
        left, covers = await asyncio.to_thread(
            _count_left, planned, started.done, options.images_per_collage
        )
        self.progress.batch_started(context.batch_id, left, covers)
        if started.resumed:
            log.info(
                "continuing batch %s: %d of %d creators left",
                context.batch_id,
                left,
                planned.creators,
            )
        owner_is_gone = started.resumed  # our batch lock proves any claim's owner dead

        async def work(context: BatchContext, job: CreatorJob) -> None:
            result = await self._process_safely(job, context, options, owner_is_gone)
            if result is not None:
                self.progress.creator_done(result)

        pool = PoolDispatcher(work, workers=options.max_workers, stop=stop)
        planning = asyncio.to_thread(
            self.planner.fan_out,
            context,
            planned,
            pool,
            continuing=started.resumed,
            skip=started.done,
        )
        stopped = await pool.run(planning)
        return await asyncio.to_thread(self._conclude, context.batch_id, stopped)

    def _start(self, request: _Request) -> _Started:
        # Two processes started on the same input at once must not both plan it:
        # whoever holds the input's planning lock decides, the other one is told.
        planning = self.locks.acquire(f"plan-{request.identity}")
        if planning is None:
            raise BatchLockedError("this input is being planned by another process right now")
        try:
            return self._plan_or_resume(request)
        finally:
            planning.release()

    def _plan_or_resume(self, request: _Request) -> _Started:
        planned, stats, options = request.planned, request.stats, request.options
        source, identity, batch_id = request.source, request.identity, request.batch_id
        new_batch = request.new_batch
        previous = None if new_batch or batch_id else self.planner.unfinished(identity)
        if previous is not None:
            lock = self.locks.acquire(previous.batch_id)
            if lock is None:
                raise BatchLockedError(
                    f"batch {previous.batch_id} of this input is running in another process; "
                    "wait for it, or pass --new-batch to start a separate one"
                )
            context = self.ledger.resume(previous, self.owner)
            done = {
                r.creator_name
                for r in self.ledger.state.creators_in_batch(previous.batch_id)
                if r.status.is_final
            }
            return _Started(context, lock, done, resumed=True)
        batch_id = batch_id or new_batch_id(self.clock())
        lock = self.locks.acquire(batch_id)
        if lock is None:
            raise BatchLockedError(f"batch {batch_id} is running in another process")
        try:
            # The marker before the batch record: killed after it, the rerun finds the
            # batch (or, if its record is not written yet, nothing, and plans anew); a
            # creator whose pending record is missing is claimed on its own. Written
            # last, a kill after the batch record left a batch no rerun would continue.
            # The planning lock is ours: the marker is overwritten, not raced for.
            self.planner.mark(identity, batch_id, if_absent=False)
            context = self.planner.open(
                batch_id, planned, stats, options, source=source, owner=self.owner
            )
        except BaseException:
            lock.release()
            raise
        return _Started(context, lock, set(), resumed=False)

    async def _process_safely(
        self, job: CreatorJob, context: BatchContext, options: BatchSpec, owner_is_gone: bool
    ) -> CreatorResult | None:
        try:
            return await self.pipeline.process(
                job, context, options, owner=self.owner, owner_is_gone=owner_is_gone
            )
        except (StateError, StorageError, ClaimBusyError) as exc:
            # The store could not record this creator: it stays unfinished and the
            # batch resumable; the other creators go on.
            log.error("creator %s could not be recorded: %s", job.key, exc)
            return None

    def _conclude(self, batch_id: str, stopped: bool) -> BatchSummary:
        if not stopped:
            summary = self.ledger.finalize(
                batch_id, peak_memory_percent=self.monitor.peak_percent, takeover=True
            )
            if summary is not None:
                return summary
        batch = self.ledger.interrupt(batch_id)
        done = (batch.completed + batch.failed + batch.skipped) if batch else 0
        total = batch.total_creators if batch else 0
        reason = "stopped" if stopped else "some creators could not be recorded"
        raise BatchInterruptedError(batch_id, done, total, reason)


def _count_left(planned: PlannedJobs, done: set[str], per_collage: int) -> tuple[int, int]:
    """Creators left and the covers they will use at most (for the progress bar)."""
    creators = covers = 0
    for job in planned.jobs():
        if job.key not in done:
            creators += 1
            covers += min(len(job.covers), per_collage)
    return creators, covers
