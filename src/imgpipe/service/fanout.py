"""A batch spread over a work queue: plan once, one message per creator, summarize once.

Used by the Lambda handler and ``imgpipe worker`` (AWS), on the same
:class:`CreatorPipeline` and summary code as the local run::

    fanout = FanOut(ports, settings)
    planned = fanout.plan("csv-files/spring.csv")        # S3 event: record + send
    result = await fanout.process(json.loads(body))      # one per-creator message
    # the invocation that finishes the last creator writes the summary, once

Idempotency: a CSV (key + content) maps to one batch through a plan marker
written with a conditional put, so a redelivered S3 event re-sends the same
messages instead of starting a second batch; creator records move
pending -> processing -> final only once (conditional writes), and a finished
creator is counted in the same transaction that records it.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from imgpipe.domain.fingerprints import content_hash
from imgpipe.domain.manifest import CoverRef, CreatorJob, Manifest, parse_manifest
from imgpipe.domain.records import BatchRecord, CreatorRecord, CreatorStatus
from imgpipe.errors import (
    ConditionFailedError,
    InputError,
    KeyCollisionError,
    MessageError,
    StorageError,
    SummaryPendingError,
)
from imgpipe.ports import ObjectStore, StateStore, WorkQueue
from imgpipe.service.batch import (
    BatchSummary,
    PlanStats,
    build_summary,
    new_batch_id,
    publish_summary,
    settings_snapshot,
)
from imgpipe.service.pipeline import BatchContext, CreatorPipeline, CreatorResult, Fetcher
from imgpipe.settings import RunOptions, Settings

__all__ = [
    "CREATOR_MESSAGE",
    "DistributedPorts",
    "FanOut",
    "PlanOutcome",
    "options_from_config",
    "parse_csv_bytes",
]

log = logging.getLogger(__name__)

CREATOR_MESSAGE = "imgpipe.creator"
ARCHIVE_PROCESSED = "archived/processed/"
ARCHIVE_FAILED = "archived/failed/"
# Extra covers a message carries beyond what the grid holds, for backfilling
# failures; the rest are recorded as not attempted. Bounds the message size.
BACKFILL_FACTOR = 3
# How long a summary claim protects its holder: Lambda's longest run (and the
# queue's visibility timeout). An older claim without a summary is a dead one.
SUMMARY_LEASE_SECONDS = 900.0
SUMMARY_POLL_SECONDS = 0.25

# The original system's processing_config names (and ours) -> RunOptions fields.
_CONFIG_FIELDS = {
    "rows": ("rows", int),
    "cols": ("cols", int),
    "cell": ("cell", int),
    "quality": ("quality", int),
    "max_images_per_creator": ("max_images", int),
    "max_images": ("max_images", int),
    "min_images": ("min_images", int),
    "max_workers": ("max_workers", int),
    "timeout": ("timeout", float),
    "max_retries": ("retries", int),
    "retries": ("retries", int),
    "force": ("force", bool),
}


def options_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """RunOptions overrides from a message's ``processing_config``.

    Unknown keys (``group_by_creator``...) are ignored; a known key with a value
    of the wrong type is a MessageError naming it. Network allowances never come
    from a message: only the operator's settings can open private ranges.
    """
    overrides: dict[str, Any] = {}
    for name, value in config.items():
        if name not in _CONFIG_FIELDS:
            continue
        target, kind = _CONFIG_FIELDS[name]
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, int | float):
            raise MessageError(f"processing_config.{name}: expected {kind.__name__}, got {value!r}")
        overrides[target] = kind(value)
    return overrides


@dataclass
class DistributedPorts:
    inputs: ObjectStore  # CSVs and uploads (INPUT_BUCKET)
    outputs: ObjectStore  # collages and results (OUTPUT_BUCKET)
    work: ObjectStore  # plans (TEMP_BUCKET, processing/ expires after 7 days)
    state: StateStore
    queue: WorkQueue


@dataclass
class PlanOutcome:
    batch_id: str | None
    csv_key: str
    creators: int = 0
    messages_sent: int = 0
    replayed: bool = False  # the same CSV was planned before (a redelivered event)
    error: str | None = None  # the CSV was unusable and archived under archived/failed/
    summary: BatchSummary | None = None  # set when the batch finished at once (no creators)
    row_problems: list[dict[str, Any]] = field(default_factory=list)


FetcherFactory = Callable[[RunOptions, str], Any]  # -> async context manager of a Fetcher


class FanOut:
    """Plans batches onto the queue and processes their per-creator messages."""

    def __init__(
        self,
        ports: DistributedPorts,
        settings: Settings,
        fetcher_factory: FetcherFactory,
        *,
        executor: Executor | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ports = ports
        self.settings = settings
        self.fetcher_factory = fetcher_factory
        self.executor = executor
        self.clock = clock
        # How long a worker that lost the summary claim waits for the summary.
        self.summary_wait_seconds = 30.0

    # -- planning ----------------------------------------------------------------

    def plan(self, csv_key: str, overrides: Mapping[str, Any] | None = None) -> PlanOutcome:
        """Record a batch for the CSV at ``csv_key`` and send one message per creator."""
        try:
            data = self.ports.inputs.get(csv_key)
        except StorageError as exc:
            raise MessageError(f"CSV {csv_key!r} cannot be read: {exc}") from exc
        options = self.settings.run_options(**dict(overrides or {}))
        try:
            manifest = parse_csv_bytes(data, options, csv_key)
        except InputError as exc:
            log.warning("CSV %s is unusable: %s", csv_key, exc)
            self._archive(csv_key, ARCHIVE_FAILED)
            return PlanOutcome(None, csv_key, error=str(exc))

        identity = content_hash(csv_key.encode() + b"\0" + data)[:32]
        marker = f"processing/plans/{identity}.json"
        now = self.clock()
        batch_id = new_batch_id(now)
        try:
            self.ports.work.put(marker, json.dumps({"batch_id": batch_id}).encode(), if_absent=True)
            replayed = False
        except KeyCollisionError:
            batch_id = json.loads(self.ports.work.get(marker))["batch_id"]
            replayed = True
        return self._record_and_send(
            manifest, options, dict(overrides or {}), csv_key, batch_id, now, replayed
        )

    def _record_and_send(
        self,
        manifest: Manifest,
        options: RunOptions,
        overrides: dict[str, Any],
        csv_key: str,
        batch_id: str,
        now: datetime,
        replayed: bool,
    ) -> PlanOutcome:
        existing = self.ports.state.get_batch(batch_id)
        batch = existing or BatchRecord(
            batch_id=batch_id,
            created_at=now.isoformat(timespec="microseconds"),
            source=csv_key,
            total_creators=len(manifest.jobs),
            settings=settings_snapshot(options),
        )
        started = datetime.fromisoformat(batch.created_at)
        context = BatchContext(
            batch_id=batch_id,
            processing_date=batch.created_at,
            ttl=int((started + timedelta(days=options.record_ttl_days)).timestamp()),
        )
        plan = {
            "batch_id": batch_id,
            "csv_key": csv_key,
            "created_at": batch.created_at,
            "overrides": overrides,
            "stats": PlanStats.of(manifest).__dict__,
        }
        self.ports.work.put(
            f"processing/{batch_id}/plan.json",
            json.dumps(plan, ensure_ascii=False).encode(),
            content_type="application/json",
        )
        if existing is None:
            self.ports.state.put_batch(batch)
        for job in manifest.jobs:
            try:
                self.ports.state.put_creator(_pending(job, context), expected=())
            except ConditionFailedError:
                pass  # recorded by an earlier delivery of the same event
        bodies = [
            json.dumps(_creator_message(job, context, csv_key, overrides, options))
            for job in manifest.jobs
        ]
        self.ports.queue.send(bodies)
        outcome = PlanOutcome(
            batch_id,
            csv_key,
            creators=len(manifest.jobs),
            messages_sent=len(bodies),
            replayed=replayed,
            row_problems=[p.to_dict() for p in manifest.problems],
        )
        if not manifest.jobs:  # nothing to fan out: the batch is complete already
            outcome.summary = self.finalize(batch_id)
        return outcome

    # -- per-creator messages ----------------------------------------------------

    async def process(self, message: Mapping[str, Any]) -> CreatorResult:
        """Render one creator of a planned batch; the last one writes the summary."""
        job, context, csv_key, overrides = _parse_creator_message(message)
        options = self.settings.run_options(**options_from_config(overrides))
        options = replace(options, allow_local_files=False)  # never read the worker's disk
        async with self.fetcher_factory(options, csv_key) as fetcher:
            pipeline = self._pipeline(fetcher)
            result = await pipeline.process(job, context, options)
        await asyncio.to_thread(self.finalize, context.batch_id)
        return result

    def _pipeline(self, fetcher: Fetcher) -> CreatorPipeline:
        return CreatorPipeline(
            self.ports.outputs, self.ports.state, fetcher, executor=self.executor, clock=self.clock
        )

    def finalize(self, batch_id: str) -> BatchSummary | None:
        """Write the summary if every creator is final and nobody else has claimed it."""
        batch = self.ports.state.get_batch(batch_id)
        if batch is None:
            return None
        if batch.completed + batch.failed + batch.skipped < batch.total_creators:
            return None
        now = self.clock().timestamp()
        if not self.ports.state.claim_summary(
            batch_id, now=now, lease_seconds=SUMMARY_LEASE_SECONDS
        ):
            self._await_summary(batch_id)
            return None
        plan = json.loads(self.ports.work.get(f"processing/{batch_id}/plan.json"))
        records = self.ports.state.creators_in_batch(batch_id)
        results = [CreatorResult.from_record(r) for r in records if r.status.is_final]
        started = datetime.fromisoformat(batch.created_at)
        finished = self.clock()
        summary = build_summary(
            results,
            batch=batch,
            plan=PlanStats(**plan["stats"]),
            started=started,
            finished=finished,
            duration=(finished - started).total_seconds(),
        )
        publish_summary(self.ports.outputs, self.ports.state, summary, batch)
        self._archive(plan["csv_key"], ARCHIVE_PROCESSED)
        log.info("batch %s complete: %s", batch_id, summary.totals)
        return summary

    def _await_summary(self, batch_id: str) -> None:
        """Return once another worker's claimed summary is written, else raise.

        Two creators finishing together both see the batch complete; the one that
        lost the claim waits the few seconds the winner needs. If the summary does
        not appear, the winner may have died: SummaryPendingError fails this message
        so it comes back, and once the dead claim's lease is over the retry writes it.
        """
        deadline = time.monotonic() + self.summary_wait_seconds
        while True:
            current = self.ports.state.get_batch(batch_id)
            if current is not None and current.summary_key:
                return
            if time.monotonic() >= deadline:
                raise SummaryPendingError(
                    f"the summary of batch {batch_id} was claimed but is not written yet"
                )
            time.sleep(SUMMARY_POLL_SECONDS)

    def _archive(self, csv_key: str, folder: str) -> None:
        name = csv_key.removeprefix(self.settings.csv_prefix)
        target = folder + name
        try:
            move = getattr(self.ports.inputs, "move", None)
            if callable(move):
                move(csv_key, target)
            else:
                self.ports.inputs.put(target, self.ports.inputs.get(csv_key))
                self.ports.inputs.delete(csv_key)
        except StorageError as exc:  # the batch is done; a stuck CSV must not undo that
            log.warning("could not archive %s to %s: %s", csv_key, target, exc)


def parse_csv_bytes(data: bytes, options: RunOptions, csv_key: str) -> Manifest:
    """A CSV read from an object store -> manifest; InputError names the key."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{csv_key}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        return parse_manifest(
            io.StringIO(text, newline=""),
            creator_column=options.creator_column,
            url_column=options.url_column,
        )
    except InputError as exc:
        raise InputError(f"{csv_key}: {exc}") from exc


def _pending(job: CreatorJob, context: BatchContext) -> CreatorRecord:
    return CreatorRecord(
        creator_name=job.key,
        processing_date=context.processing_date,
        batch_id=context.batch_id,
        status=CreatorStatus.PENDING,
        metadata={"display_name": job.creator},
        ttl=context.ttl,
    )


def _creator_message(
    job: CreatorJob,
    context: BatchContext,
    csv_key: str,
    overrides: dict[str, Any],
    options: RunOptions,
) -> dict[str, Any]:
    keep = options.images_per_collage * BACKFILL_FACTOR
    return {
        "type": CREATOR_MESSAGE,
        "batch_id": context.batch_id,
        "processing_date": context.processing_date,
        "ttl": context.ttl,
        "creator": job.creator,
        "key": job.key,
        "csv_key": csv_key,
        "covers": [[c.line, c.url] for c in job.covers[:keep]],
        "processing_config": overrides,
    }


def _parse_creator_message(
    message: Mapping[str, Any],
) -> tuple[CreatorJob, BatchContext, str, dict[str, Any]]:
    try:
        covers = tuple(CoverRef(int(line), str(url)) for line, url in message["covers"])
        job = CreatorJob(str(message["creator"]), str(message["key"]), covers)
        context = BatchContext(
            batch_id=str(message["batch_id"]),
            processing_date=str(message["processing_date"]),
            ttl=int(message["ttl"]),
        )
        return job, context, str(message["csv_key"]), dict(message.get("processing_config", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise MessageError(f"malformed creator message: {exc!r}") from exc
