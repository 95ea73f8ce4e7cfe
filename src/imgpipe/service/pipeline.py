"""One creator, end to end: claim, collect covers, render, store, finish.

The pipeline never raises for a bad cover or a failed creator: it returns a
:class:`CreatorResult` whose status and per-cover outcomes say what happened.
State transitions go through the :class:`BatchLedger`, the one place that writes them:

    pending -> processing (a lease, renewed while working) -> completed | failed | skipped

A creator whose record is already final (a redelivered message, a resumed batch)
is returned as it was recorded and not processed again. A render retried after a
crash writes the same collage key (the batch's start time), so a creator has one
collage object per batch however often it is attempted. Which covers go into the
grid (fetch, decode, duplicates, backfill) is decided in :mod:`.collect`.

Example::

    pipeline = CreatorPipeline(store, ledger, downloader, executor=pool)
    result = await pipeline.process(job, context, options, owner="host:1:ab")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from imgpipe.domain.fingerprints import collage_fingerprint
from imgpipe.domain.keys import collage_key, metadata_key, preview_key
from imgpipe.domain.layout import plan_grid
from imgpipe.domain.records import CreatorStatus
from imgpipe.errors import KeyCollisionError, StorageError
from imgpipe.imaging.collage import render_collage
from imgpipe.imaging.preview import PREVIEW_CONTENT_TYPE, PREVIEW_WIDTH, render_preview
from imgpipe.imaging.smartcrop import detector_name
from imgpipe.logs import log_context
from imgpipe.service.claim_beat import ClaimBeat, CoverTally
from imgpipe.service.collect import CoverCollector, Fetcher
from imgpipe.service.memory import MemoryMonitor, MemoryPressureError
from imgpipe.service.progress import NullProgress
from imgpipe.service.results import CreatorResult, log_outcome

if TYPE_CHECKING:
    from PIL import Image

    from imgpipe.domain.layout import Grid
    from imgpipe.domain.manifest import CreatorJob
    from imgpipe.domain.records import CreatorRecord
    from imgpipe.ports import ObjectStore
    from imgpipe.service.ledger import BatchLedger
    from imgpipe.service.progress import ProgressSink
    from imgpipe.service.results import BatchContext
    from imgpipe.settings import BatchSpec

__all__ = ["CreatorPipeline", "Fetcher", "Heartbeat"]

log = logging.getLogger(__name__)

MAX_KEY_SUFFIX = 100
# Called at every renewal of a claim, e.g. to extend the SQS message's visibility.
Heartbeat = Callable[[], Awaitable[None]]


class CreatorPipeline:
    """Processes one creator job against the store and ledger it is given."""

    def __init__(
        self,
        store: ObjectStore,
        ledger: BatchLedger,
        fetcher: Fetcher,
        *,
        executor: Executor | None = None,
        monitor: MemoryMonitor | None = None,
        progress: ProgressSink | None = None,
        progress_seconds: float | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``progress_seconds``: also write a creator's cover counts to its claim when
        they changed, at most this often (pages of other processes read them there);
        None: only the lease renewals carry them (see :mod:`.claim_beat`)."""
        self.store = store
        self.ledger = ledger
        self.fetcher = fetcher
        self.executor = executor
        self.monitor = monitor or MemoryMonitor(reader=lambda: 0.0)
        self.progress = progress or NullProgress()
        self.progress_seconds = progress_seconds
        self.clock = clock
        self.collector = CoverCollector(fetcher, self.progress, run_cpu=self._run_cpu)

    async def process(
        self,
        job: CreatorJob,
        context: BatchContext,
        options: BatchSpec,
        *,
        owner: str,
        owner_is_gone: bool = False,
        heartbeat: Heartbeat | None = None,
        note: dict[str, Any] | None = None,
    ) -> CreatorResult:
        """Claim, work while renewing the claim, finish. ClaimBusyError: another owner's."""
        # Every record logged for this creator, here and in the threads it starts,
        # carries its batch and key (imgpipe.logs): one place for the CLI and Lambda.
        with log_context(batch_id=context.batch_id, creator=job.key):
            return await self._process(job, context, options, owner, owner_is_gone, heartbeat, note)

    async def _process(
        self,
        job: CreatorJob,
        context: BatchContext,
        options: BatchSpec,
        owner: str,
        owner_is_gone: bool,
        heartbeat: Heartbeat | None,
        note: dict[str, Any] | None,
    ) -> CreatorResult:
        started = time.perf_counter()
        # Store and state calls may be network round trips (S3, DynamoDB): off the loop.
        claiming = asyncio.ensure_future(
            asyncio.to_thread(
                self.ledger.claim, job, context, owner, owner_is_gone=owner_is_gone, note=note
            )
        )
        try:
            replay = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            # Stopped while the claim was on its way: the thread still makes it, so
            # wait for it and give it back, or the creator would stay "processing".
            if await claiming is None:
                await asyncio.to_thread(self.ledger.release, job, context, owner)
            raise
        if replay is not None:
            return replay
        tally = CoverTally()
        beating = asyncio.create_task(self._keep_claim(job, context, owner, heartbeat, note, tally))
        try:
            result = await self._work(job, context, options, tally)
        except asyncio.CancelledError:
            # A graceful stop: the claim goes back to pending for the rerun.
            await asyncio.to_thread(self.ledger.release, job, context, owner)
            raise
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        result.duration = time.perf_counter() - started
        # Shielded: once the final write starts it completes, even during a stop.
        finishing = asyncio.ensure_future(
            asyncio.to_thread(self._finish, result, context, owner, options.output_prefix)
        )
        try:
            await asyncio.shield(finishing)
        except asyncio.CancelledError:
            await finishing
            raise
        log_outcome(result)
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # A stop that arrived while the collage was stored (see _attempt): the
            # creator is finished, now the stop is honoured.
            raise asyncio.CancelledError
        return result

    async def _keep_claim(
        self,
        job: CreatorJob,
        context: BatchContext,
        owner: str,
        heartbeat: Heartbeat | None,
        note: dict[str, Any] | None,
        tally: CoverTally,
    ) -> None:
        """Renew the claim at a third of its lease, so it never lapses while we work;
        between renewals, write changed cover counts when ``progress_seconds`` asks to."""
        beat = ClaimBeat(self.ledger.lease_seconds / 3, self.progress_seconds)
        while True:
            await asyncio.sleep(beat.tick)
            counts = tally.counts()
            due = beat.due(counts)
            if due is None:
                continue
            try:
                renewed = await asyncio.to_thread(
                    self.ledger.renew, job, context, owner, note, progress=counts
                )
                if not renewed:
                    log.warning("creator %s: claim lost to another worker", job.key)
                    return
                beat.wrote(due, counts)
                if due.renewal and heartbeat is not None:
                    await heartbeat()
            except Exception:  # a missed beat is not fatal: the next one may land
                log.warning("creator %s: heartbeat failed", job.key, exc_info=True)

    async def _work(
        self, job: CreatorJob, context: BatchContext, options: BatchSpec, tally: CoverTally
    ) -> CreatorResult:
        try:
            return await self._attempt(job, context, options, tally)
        except MemoryPressureError:
            log.warning("creator %s: memory critical, retrying in safe mode", job.key)
            try:
                result = await self._attempt(job, context, options.safe_mode(), tally)
                result.safe_mode = True
                return result
            except MemoryPressureError as exc:
                return CreatorResult(
                    job.creator, job.key, CreatorStatus.FAILED, error=f"memory_critical: {exc}"
                )
        except Exception as exc:  # one creator's bug must never fail the batch
            log.exception("creator %s failed unexpectedly", job.key)
            return CreatorResult(
                job.creator, job.key, CreatorStatus.FAILED, error=f"internal_error: {exc!r}"
            )

    def _finish(
        self, result: CreatorResult, context: BatchContext, owner: str, prefix: str
    ) -> None:
        # The metadata document first: a crash after it and before the record only
        # means the retry writes the same document again.
        # It is also where a record too large for the state store keeps its covers.
        fields = result.to_dict()  # once: the document and the record both hold it
        document = {"batch_id": context.batch_id, "display_name": result.creator, **fields}
        key = metadata_key(context.batch_id, result.key, prefix=prefix)
        data = _json_bytes(document)
        self.store.put(key, data, content_type="application/json")
        result.batch = self.ledger.finish(
            result, context, owner, document_key=key, fields=fields, size_bound=len(data)
        )

    # -- work ------------------------------------------------------------------

    async def _attempt(
        self, job: CreatorJob, context: BatchContext, options: BatchSpec, tally: CoverTally
    ) -> CreatorResult:
        self.monitor.check()
        wanted = min(len(job.covers), options.images_per_collage)
        tally.started(wanted)
        self.progress.creator_started(job.key, wanted)
        accepted, outcomes = await self.collector.collect(job.key, job.covers, options, tally)
        result = CreatorResult(job.creator, job.key, CreatorStatus.FAILED)
        for position, item in enumerate(accepted):
            outcomes[item.index] = replace(outcomes[item.index], cell=position)
        result.covers = [outcomes[i] for i in sorted(outcomes)]
        result.images_used = len(accepted)
        if len(accepted) < options.collect.min_images:
            reasons = sorted({c.reason or "" for c in result.failures})
            result.error = (
                f"{len(accepted)} usable cover(s), at least {options.collect.min_images} needed"
                + (f" (failures: {', '.join(reasons)})" if reasons else "")
            )
            return result
        result.fingerprint = collage_fingerprint(
            [item.sha256 for item in accepted],
            rows=options.render.rows,
            cols=options.render.cols,
            cell_size=options.render.cell_size,
            quality=options.render.quality,
            crop=options.render.crop,
            detector=detector_name() if options.render.crop == "smart" else "",
            near_duplicates=options.collect.near_duplicates,
        )
        grid = plan_grid(
            len(accepted),
            rows=options.render.rows,
            cols=options.render.cols,
            cell_size=options.render.cell_size,
        )
        # The same fingerprint means the same grid, so an unchanged collage has this size too.
        result.collage_size = (grid.width, grid.height)
        previous = (
            None
            if options.collect.force
            else await asyncio.to_thread(
                self._unchanged, job.key, result.fingerprint, context, options.output_prefix
            )
        )
        if previous is not None and previous.collage_key:
            result.status = CreatorStatus.SKIPPED_UNCHANGED
            result.collage_key = previous.collage_key
            # A collage stored before previews existed gets its preview now.
            result.preview_key = await self._ensure_preview(previous.collage_key, None)
            return result
        self.monitor.check()
        tiles = [item.tile for item in accepted]
        # From here on a stop waits (tens of ms) and the creator is finished: stopped
        # between storing its collage and its record, it left a collage no record
        # names, and a batch started anew with --new-batch then made a second one.
        # _process honours the stop once the record is written.
        rendering = asyncio.ensure_future(
            self._render_and_store(job, tiles, grid, context, options, result)
        )
        try:
            await asyncio.shield(rendering)
        except asyncio.CancelledError:
            await rendering
        return result

    async def _render_and_store(
        self,
        job: CreatorJob,
        tiles: list[Image.Image],
        grid: Grid,
        context: BatchContext,
        options: BatchSpec,
        result: CreatorResult,
    ) -> None:
        data = await self._run_cpu(render_collage, tiles, grid, quality=options.render.quality)
        result.collage_key = await asyncio.to_thread(
            self._store_collage, job.key, data, context, options
        )
        result.preview_key = await self._ensure_preview(result.collage_key, data)
        result.status = CreatorStatus.COMPLETED

    async def _ensure_preview(self, collage: str, data: bytes | None) -> str | None:
        """The key of the collage's preview, made and stored when missing.

        A preview is a convenience of pages: when it cannot be made the creator is
        still done, and pages show the collage itself (preview key None).
        """
        key = preview_key(collage, PREVIEW_WIDTH)
        try:
            if data is None:
                if await asyncio.to_thread(self.store.exists, key):
                    return key
                data = await asyncio.to_thread(self.store.get, collage)
            preview = await self._run_cpu(render_preview, data)
            await asyncio.to_thread(self.store.put, key, preview, content_type=PREVIEW_CONTENT_TYPE)
        except (StorageError, OSError, ValueError) as exc:
            log.warning("collage %s: no preview (%s)", collage, exc)
            return None
        return key

    async def _run_cpu(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: func(*args, **kwargs))

    def _unchanged(
        self, key: str, fingerprint: str, context: BatchContext, prefix: str
    ) -> CreatorRecord | None:
        """The newest earlier record with the same fingerprint whose collage still exists
        under this batch's output prefix (another prefix is another place to publish to)."""
        now = int(self.clock().timestamp())
        for record in self.ledger.state.creator_history(key, limit=20):
            if record.batch_id == context.batch_id or (record.ttl and record.ttl < now):
                continue  # expired records are ignored even if the store still holds them
            if (
                record.status in (CreatorStatus.COMPLETED, CreatorStatus.SKIPPED_UNCHANGED)
                and record.fingerprint == fingerprint
                and record.collage_key
                and record.collage_key.startswith(f"{prefix}collages/")
                and self.store.exists(record.collage_key)
            ):
                return record
        return None

    def _store_collage(
        self, key: str, data: bytes, context: BatchContext, options: BatchSpec
    ) -> str:
        """Under the batch's start time: a retried render finds its own earlier object
        (same bytes: rendering is deterministic) and keeps it instead of adding one."""
        when = datetime.fromisoformat(context.processing_date)
        for suffix in range(MAX_KEY_SUFFIX):
            candidate = collage_key(key, when, suffix, prefix=options.output_prefix)
            try:
                self.store.put(
                    candidate,
                    data,
                    content_type="image/jpeg",
                    if_absent=options.collect.collision_check,
                )
                return candidate
            except KeyCollisionError:
                if self.store.get(candidate) == data:
                    return candidate
                continue
        raise StorageError(f"no free collage key for {key} after {MAX_KEY_SUFFIX} tries")


# Compact, by one reused encoder: with an indent Python's encoder runs in pure Python,
# and the metadata documents of a million-row batch are a million covers.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json_bytes(document: dict[str, Any]) -> bytes:
    return _ENCODE(document).encode()
