"""A whole batch on one machine: plan, fan out over creators, summarize.

Creators run concurrently, at most ``options.max_workers`` at a time, so memory
is bounded by configuration: only the cells of the creators in flight are held.
Downloads across all creators share the downloader's global limit.

Example::

    runner = BatchRunner(store, state, downloader, executor=pool)
    summary = await runner.run(manifest, options, source="covers.csv")
    summary.exit_code  # 0 all good, 3 some creators failed
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from imgpipe.domain.keys import summary_key
from imgpipe.domain.manifest import CreatorJob, Manifest
from imgpipe.domain.records import BatchRecord, BatchStatus, CreatorRecord, CreatorStatus
from imgpipe.ports import ObjectStore, StateStore
from imgpipe.service.gallery import render_gallery
from imgpipe.service.memory import MemoryMonitor
from imgpipe.service.pipeline import BatchContext, CreatorPipeline, CreatorResult, Fetcher
from imgpipe.service.progress import NullProgress, ProgressSink
from imgpipe.settings import RunOptions

__all__ = [
    "BatchRunner",
    "BatchSummary",
    "PlanStats",
    "build_summary",
    "new_batch_id",
    "publish_summary",
    "settings_snapshot",
]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_SOME_FAILED = 3
GALLERY_KEY = "index.html"


def new_batch_id(now: datetime) -> str:
    """Sortable and unique: ``20261123-101500-1a2b3c4d``."""
    return f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"


@dataclass
class BatchSummary:
    batch_id: str
    source: str
    started_at: str
    finished_at: str
    duration_s: float
    status: BatchStatus
    totals: dict[str, int]
    failures_by_reason: dict[str, int]
    failed_urls: list[dict[str, Any]]
    row_problems: list[dict[str, Any]]
    creators: list[dict[str, Any]]
    settings: dict[str, Any]
    images_per_second: float
    peak_memory_percent: float
    summary_key: str = ""
    gallery_key: str = GALLERY_KEY
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.totals.get("failed", 0) else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["exit_code"] = self.exit_code
        return data


class BatchRunner:
    """Runs every creator of a manifest through a :class:`CreatorPipeline`."""

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
        self.monitor = monitor or MemoryMonitor(reader=lambda: 0.0)
        self.progress = progress or NullProgress()
        self.clock = clock
        self.pipeline = CreatorPipeline(
            store,
            state,
            fetcher,
            executor=executor,
            monitor=self.monitor,
            progress=self.progress,
            clock=clock,
        )

    async def run(
        self,
        manifest: Manifest,
        options: RunOptions,
        *,
        source: str,
        batch_id: str | None = None,
    ) -> BatchSummary:
        """Run every creator; ``batch_id`` lets a caller announce the id before the run."""
        started = self.clock()
        t0 = time.perf_counter()
        context, batch = self._plan(manifest, options, source, started, batch_id)
        covers = sum(min(len(job.covers), options.images_per_collage) for job in manifest.jobs)
        self.progress.batch_started(context.batch_id, len(manifest.jobs), covers)

        results: list[CreatorResult] = []
        jobs: Iterator[CreatorJob] = iter(manifest.jobs)

        async def worker() -> None:
            # Pulling from a shared iterator keeps max_workers creators in flight
            # without creating one task per creator up front.
            for job in jobs:
                result = await self._process_safely(job, context, options)
                self.progress.creator_done(result)
                results.append(result.for_summary())

        workers = min(options.max_workers, max(1, len(manifest.jobs)))
        await asyncio.gather(*(worker() for _ in range(workers)))

        order = {job.key: i for i, job in enumerate(manifest.jobs)}
        results.sort(key=lambda r: order[r.key])
        summary = self._summarize(
            manifest, options, batch, results, started, time.perf_counter() - t0
        )
        self._publish(summary, batch)
        return summary

    def _plan(
        self,
        manifest: Manifest,
        options: RunOptions,
        source: str,
        started: datetime,
        batch_id: str | None,
    ) -> tuple[BatchContext, BatchRecord]:
        batch_id = batch_id or new_batch_id(started)
        context = BatchContext(
            batch_id=batch_id,
            processing_date=started.isoformat(timespec="microseconds"),
            ttl=int((started + timedelta(days=options.record_ttl_days)).timestamp()),
        )
        batch = BatchRecord(
            batch_id=batch_id,
            created_at=context.processing_date,
            source=source,
            total_creators=len(manifest.jobs),
            settings=settings_snapshot(options),
        )
        self.state.put_batch(batch)
        for job in manifest.jobs:
            self.state.put_creator(
                CreatorRecord(
                    creator_name=job.key,
                    processing_date=context.processing_date,
                    batch_id=batch_id,
                    status=CreatorStatus.PENDING,
                    metadata={"display_name": job.creator},
                    ttl=context.ttl,
                ),
                expected=(),
            )
        return context, batch

    async def _process_safely(
        self, job: CreatorJob, context: BatchContext, options: RunOptions
    ) -> CreatorResult:
        try:
            return await self.pipeline.process(job, context, options)
        except Exception as exc:  # a store failing for one creator must not end the batch
            log.exception("creator %s could not be recorded", job.key)
            return CreatorResult(
                job.creator, job.key, CreatorStatus.FAILED, error=f"internal_error: {exc!r}"
            )

    def _summarize(
        self,
        manifest: Manifest,
        options: RunOptions,
        batch: BatchRecord,
        results: list[CreatorResult],
        started: datetime,
        duration: float,
    ) -> BatchSummary:
        return build_summary(
            results,
            batch=batch,
            plan=PlanStats.of(manifest),
            started=started,
            finished=self.clock(),
            duration=duration,
            peak_memory_percent=self.monitor.peak_percent,
        )

    def _publish(self, summary: BatchSummary, batch: BatchRecord) -> None:
        publish_summary(self.store, self.state, summary, batch)


def publish_summary(
    store: ObjectStore, state: StateStore, summary: BatchSummary, batch: BatchRecord
) -> None:
    """Write the summary JSON and the gallery, and close the batch record."""
    store.put(
        summary.summary_key,
        json.dumps(summary.to_dict(), ensure_ascii=False, indent=2).encode(),
        content_type="application/json",
    )
    store.put(
        GALLERY_KEY,
        render_gallery(summary).encode(),
        content_type="text/html; charset=utf-8",
    )
    batch.status = summary.status
    batch.completed = summary.totals["completed"]
    batch.failed = summary.totals["failed"]
    batch.skipped = summary.totals["skipped_unchanged"]
    batch.summary_key = summary.summary_key
    batch.finished_at = summary.finished_at
    state.put_batch(batch)


@dataclass(frozen=True)
class PlanStats:
    """What the summary needs of the CSV itself (kept beside a distributed batch)."""

    rows_read: int
    duplicate_rows: int
    row_problems: list[dict[str, Any]]

    @classmethod
    def of(cls, manifest: Manifest) -> PlanStats:
        return cls(
            manifest.rows_read, manifest.duplicate_rows, [p.to_dict() for p in manifest.problems]
        )


def build_summary(
    results: list[CreatorResult],
    *,
    batch: BatchRecord,
    plan: PlanStats,
    started: datetime,
    finished: datetime,
    duration: float,
    peak_memory_percent: float = 0.0,
) -> BatchSummary:
    """The batch summary from per-creator results (live, or rebuilt from state records)."""
    statuses = Counter(r.status for r in results)
    reasons: Counter[str] = Counter()
    failed_urls: list[dict[str, Any]] = []
    for result in results:
        for cover in result.failures:
            reasons[cover.reason or "unknown"] += 1
            failed_urls.append({"creator": result.creator, **cover.to_dict()})
    for problem in plan.row_problems:
        reasons[f"row_{problem['reason']}"] += 1
    images = sum(r.images_used for r in results)
    failed = statuses[CreatorStatus.FAILED]
    totals = {
        "creators": len(results),
        "completed": statuses[CreatorStatus.COMPLETED],
        "skipped_unchanged": statuses[CreatorStatus.SKIPPED_UNCHANGED],
        "failed": failed,
        "images_used": images,
        "images_failed": len(failed_urls),
        "duplicates": sum(r.duplicates for r in results),
        "rows_read": plan.rows_read,
        "row_problems": len(plan.row_problems),
        "duplicate_rows": plan.duplicate_rows,
    }
    return BatchSummary(
        batch_id=batch.batch_id,
        source=batch.source,
        started_at=started.isoformat(timespec="seconds"),
        finished_at=finished.isoformat(timespec="seconds"),
        duration_s=round(duration, 3),
        status=BatchStatus.COMPLETED_WITH_FAILURES if failed else BatchStatus.COMPLETED,
        totals=totals,
        failures_by_reason=dict(reasons.most_common()),
        failed_urls=failed_urls,
        row_problems=plan.row_problems,
        creators=[_creator_entry(r) for r in results],
        settings=batch.settings,
        images_per_second=round(images / duration, 2) if duration > 0 else 0.0,
        peak_memory_percent=round(peak_memory_percent, 1),
        summary_key=summary_key(batch.batch_id),
    )


def _creator_entry(result: CreatorResult) -> dict[str, Any]:
    failures = Counter(c.reason for c in result.failures)
    return {
        "creator": result.creator,
        "key": result.key,
        "status": result.status.value,
        "images_used": result.images_used,
        "collage_key": result.collage_key,
        "failures": dict(failures),
        "duplicates": result.duplicates,
        "error": result.error,
        "safe_mode": result.safe_mode,
        "duration_s": round(result.duration, 3),
    }


def settings_snapshot(options: RunOptions) -> dict[str, Any]:
    keep = (
        "rows", "cols", "cell", "quality", "max_images", "min_images", "concurrency",
        "max_workers", "timeout", "retries", "force",
    )  # fmt: skip
    return {name: getattr(options, name) for name in keep}
