"""One creator, end to end: fetch covers, validate, dedup, render, store, record.

The pipeline never raises for a bad cover or a failed creator: it returns a
:class:`CreatorResult` whose status and per-cover outcomes say what happened.
State transitions follow one rule set, here and nowhere else:

    pending -> processing -> completed | failed | skipped_unchanged

A creator whose record is already final (a redelivered message, a rerun of the
same batch) is returned as it was recorded and not processed again.

Example::

    pipeline = CreatorPipeline(store, state, downloader, executor=pool)
    result = await pipeline.process(job, context, options)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from PIL import Image

from imgpipe.domain.fingerprints import collage_fingerprint, content_hash
from imgpipe.domain.keys import collage_key, metadata_key
from imgpipe.domain.layout import plan_grid
from imgpipe.domain.manifest import CoverRef, CreatorJob
from imgpipe.domain.records import (
    BatchRecord,
    CoverOutcome,
    CreatorRecord,
    CreatorStatus,
    Reason,
)
from imgpipe.errors import ConditionFailedError, ImageError, KeyCollisionError, StorageError
from imgpipe.fetch.downloader import FetchResult
from imgpipe.imaging.collage import render_collage
from imgpipe.imaging.decode import load_cell
from imgpipe.ports import ObjectStore, StateStore
from imgpipe.service.memory import MemoryMonitor, MemoryPressureError
from imgpipe.service.progress import NullProgress, ProgressSink
from imgpipe.settings import RunOptions

__all__ = ["BatchContext", "CreatorPipeline", "CreatorResult", "Fetcher"]

log = logging.getLogger(__name__)

# Reasons that describe a cover we chose not to use rather than one that failed.
NOT_FAILURES = frozenset({Reason.DUPLICATE.value, Reason.NOT_ATTEMPTED.value})
MAX_KEY_SUFFIX = 100


class Fetcher(Protocol):
    async def fetch(self, url: str) -> FetchResult: ...


@dataclass(frozen=True)
class BatchContext:
    """What every creator of one batch shares."""

    batch_id: str
    processing_date: str  # ISO-8601 UTC batch start; the state store's sort key
    ttl: int  # epoch seconds after which records may be forgotten


@dataclass
class CreatorResult:
    creator: str
    key: str
    status: CreatorStatus
    covers: list[CoverOutcome] = field(default_factory=list)
    images_used: int = 0
    collage_key: str | None = None
    fingerprint: str | None = None
    duration: float = 0.0
    error: str | None = None
    safe_mode: bool = False
    replayed: bool = False  # the record was already final; nothing was done again
    batch: BatchRecord | None = None  # the batch's counts right after this creator finished

    @property
    def failures(self) -> list[CoverOutcome]:
        return [c for c in self.covers if not c.ok and c.reason not in NOT_FAILURES]

    @property
    def duplicates(self) -> int:
        return sum(1 for c in self.covers if c.reason == Reason.DUPLICATE)

    def for_summary(self) -> CreatorResult:
        """What a batch summary needs, kept per creator until the batch ends.

        Used covers are in the metadata JSON already; dropping them here (and the
        batch snapshot) keeps a 10,000-creator batch's bookkeeping small.
        """
        failed = [c for c in self.covers if not c.ok and c.reason != Reason.NOT_ATTEMPTED]
        return replace(self, covers=failed, batch=None)

    @classmethod
    def from_record(cls, record: CreatorRecord) -> CreatorResult:
        """The result as stored in a final record (its metadata holds the covers)."""
        known = CoverOutcome.__dataclass_fields__
        covers = [
            CoverOutcome(**{k: v for k, v in c.items() if k in known})
            for c in record.metadata.get("covers", [])
        ]
        return cls(
            creator=record.metadata.get("display_name", record.creator_name),
            key=record.creator_name,
            status=record.status,
            covers=covers,
            images_used=record.images_processed,
            collage_key=record.collage_key,
            fingerprint=record.fingerprint,
            duration=record.processing_duration,
            error=record.metadata.get("error"),
            safe_mode=bool(record.metadata.get("safe_mode", False)),
            replayed=True,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "creator": self.creator,
            "key": self.key,
            "status": self.status.value,
            "images_used": self.images_used,
            "collage_key": self.collage_key,
            "fingerprint": self.fingerprint,
            "duration_s": round(self.duration, 3),
            "error": self.error,
            "safe_mode": self.safe_mode,
            "covers": [c.to_dict() for c in self.covers],
        }


@dataclass
class _Accepted:
    index: int
    sha256: str
    cell: Image.Image


class CreatorPipeline:
    """Processes one creator job against the ports it is given."""

    def __init__(
        self,
        store: ObjectStore,
        state: StateStore,
        fetcher: Fetcher,
        *,
        executor: Executor | None = None,
        monitor: MemoryMonitor | None = None,
        progress: ProgressSink | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.state = state
        self.fetcher = fetcher
        self.executor = executor
        self.monitor = monitor or MemoryMonitor(reader=lambda: 0.0)
        self.progress = progress or NullProgress()
        self.clock = clock

    async def process(
        self, job: CreatorJob, context: BatchContext, options: RunOptions
    ) -> CreatorResult:
        started = time.perf_counter()
        # Store and state calls may be network round trips (S3, DynamoDB): off the loop.
        replay = await asyncio.to_thread(self._claim, job, context)
        if replay is not None:
            return replay
        try:
            result = await self._attempt(job, context, options)
        except MemoryPressureError:
            log.warning("creator %s: memory critical, retrying in safe mode", job.key)
            try:
                result = await self._attempt(job, context, options.safe_mode())
                result.safe_mode = True
            except MemoryPressureError as exc:
                result = CreatorResult(
                    job.creator, job.key, CreatorStatus.FAILED, error=f"memory_critical: {exc}"
                )
        except Exception as exc:  # one creator's bug must never fail the batch
            log.exception("creator %s failed unexpectedly", job.key)
            result = CreatorResult(
                job.creator, job.key, CreatorStatus.FAILED, error=f"internal_error: {exc!r}"
            )
        result.duration = time.perf_counter() - started
        await asyncio.to_thread(self._finish, result, context)
        return result

    # -- state -----------------------------------------------------------------

    def _claim(self, job: CreatorJob, context: BatchContext) -> CreatorResult | None:
        record = CreatorRecord(
            creator_name=job.key,
            processing_date=context.processing_date,
            batch_id=context.batch_id,
            status=CreatorStatus.PROCESSING,
            metadata={"display_name": job.creator},
            ttl=context.ttl,
        )
        try:
            self.state.put_creator(record, expected=(CreatorStatus.PENDING,))
            return None
        except ConditionFailedError:
            existing = self.state.get_creator(job.key, context.batch_id)
            if existing is None:
                # No pending record: the job arrived without a plan (a direct call).
                self.state.put_creator(record, expected=())
                return None
            if existing.status.is_final:
                log.info(
                    "creator %s already %s in batch %s", job.key, existing.status, context.batch_id
                )
                return _result_from_record(job, existing)
            raise

    def _finish(self, result: CreatorResult, context: BatchContext) -> None:
        metadata = {"display_name": result.creator, **result.to_dict()}
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
        )
        result.batch = self.state.finish_creator(record, expected=(CreatorStatus.PROCESSING,))
        document = {"batch_id": context.batch_id, **metadata}
        self.store.put(
            metadata_key(context.batch_id, result.key),
            json.dumps(document, ensure_ascii=False, indent=2).encode(),
            content_type="application/json",
        )

    # -- work ------------------------------------------------------------------

    async def _attempt(
        self, job: CreatorJob, context: BatchContext, options: RunOptions
    ) -> CreatorResult:
        self.monitor.check()
        accepted, outcomes = await self._collect(job.covers, options)
        result = CreatorResult(job.creator, job.key, CreatorStatus.FAILED)
        for position, item in enumerate(accepted):
            outcomes[item.index] = replace(outcomes[item.index], cell=position)
        result.covers = [outcomes[i] for i in sorted(outcomes)]
        result.images_used = len(accepted)
        if len(accepted) < options.min_images:
            reasons = sorted({c.reason or "" for c in result.failures})
            result.error = (
                f"{len(accepted)} usable cover(s), at least {options.min_images} needed"
                + (f" (failures: {', '.join(reasons)})" if reasons else "")
            )
            return result
        result.fingerprint = collage_fingerprint(
            [item.sha256 for item in accepted],
            rows=options.rows,
            cols=options.cols,
            cell=options.cell,
            quality=options.quality,
        )
        previous = (
            None
            if options.force
            else await asyncio.to_thread(self._unchanged, job.key, result.fingerprint, context)
        )
        if previous is not None:
            result.status = CreatorStatus.SKIPPED_UNCHANGED
            result.collage_key = previous.collage_key
            return result
        self.monitor.check()
        grid = plan_grid(len(accepted), rows=options.rows, cols=options.cols, cell=options.cell)
        cells = [item.cell for item in accepted]
        data = await self._run_cpu(render_collage, cells, grid, quality=options.quality)
        result.collage_key = await asyncio.to_thread(self._store_collage, job.key, data, options)
        result.status = CreatorStatus.COMPLETED
        return result

    async def _collect(
        self, covers: Sequence[CoverRef], options: RunOptions
    ) -> tuple[list[_Accepted], dict[int, CoverOutcome]]:
        """Fetch covers in CSV order until the grid is full, backfilling failures."""
        target = options.images_per_collage
        accepted: list[_Accepted] = []
        outcomes: dict[int, CoverOutcome] = {}
        seen: set[str] = set()
        next_index = 0
        while len(accepted) < target and next_index < len(covers):
            wave = range(next_index, min(len(covers), next_index + target - len(accepted)))
            next_index = wave.stop
            results = await asyncio.gather(*(self._fetch_cell(covers[i], options) for i in wave))
            for index, (outcome, cell) in zip(wave, results, strict=True):
                if cell is not None and outcome.sha256 in seen:
                    outcome = replace(outcome, ok=False, reason=Reason.DUPLICATE.value)
                    cell = None
                if cell is not None and outcome.sha256 is not None:
                    seen.add(outcome.sha256)
                    accepted.append(_Accepted(index, outcome.sha256, cell))
                outcomes[index] = outcome
        for index in range(next_index, len(covers)):
            outcomes[index] = CoverOutcome(
                covers[index].line, covers[index].url, ok=False, reason=Reason.NOT_ATTEMPTED.value
            )
        accepted.sort(key=lambda item: item.index)
        return accepted, outcomes

    async def _fetch_cell(
        self, cover: CoverRef, options: RunOptions
    ) -> tuple[CoverOutcome, Image.Image | None]:
        fetched = await self.fetcher.fetch(cover.url)
        base = CoverOutcome(
            cover.line,
            cover.url,
            ok=False,
            reason=fetched.reason,
            detail=fetched.detail,
            attempts=fetched.attempts,
        )
        if fetched.data is None or fetched.reason is not None:
            self.progress.cover_done(False)
            return base, None
        data = fetched.data
        try:
            digest, cell = await self._run_cpu(_hash_and_decode, data, options)
        except ImageError as exc:
            self.progress.cover_done(False)
            return replace(base, reason=exc.reason, detail=exc.detail, bytes=len(data)), None
        self.progress.cover_done(True)
        return replace(base, ok=True, reason=None, sha256=digest, bytes=len(data)), cell

    async def _run_cpu(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: func(*args, **kwargs))

    def _unchanged(self, key: str, fingerprint: str, context: BatchContext) -> CreatorRecord | None:
        """The newest earlier record with the same fingerprint whose collage still exists."""
        now = int(self.clock().timestamp())
        for record in self.state.creator_history(key, limit=20):
            if record.batch_id == context.batch_id or (record.ttl and record.ttl < now):
                continue  # expired records are ignored even if the store still holds them
            if (
                record.status in (CreatorStatus.COMPLETED, CreatorStatus.SKIPPED_UNCHANGED)
                and record.fingerprint == fingerprint
                and record.collage_key
                and self.store.exists(record.collage_key)
            ):
                return record
        return None

    def _store_collage(self, key: str, data: bytes, options: RunOptions) -> str:
        when = self.clock()
        for suffix in range(MAX_KEY_SUFFIX):
            candidate = collage_key(key, when, suffix)
            try:
                self.store.put(
                    candidate, data, content_type="image/jpeg", if_absent=options.collision_check
                )
                return candidate
            except KeyCollisionError:
                continue
        raise StorageError(f"no free collage key for {key} after {MAX_KEY_SUFFIX} tries")


def _hash_and_decode(data: bytes, options: RunOptions) -> tuple[str, Image.Image]:
    cell = load_cell(
        data, options.cell, max_pixels=options.max_pixels, min_size=options.min_image_size
    )
    return content_hash(data), cell


def _result_from_record(job: CreatorJob, record: CreatorRecord) -> CreatorResult:
    result = CreatorResult.from_record(record)
    result.creator, result.key = job.creator, job.key
    return result
