"""A batch spread over a work queue: plan in checkpointed chunks, one message per creator.

Used by the Lambda functions and ``imgpipe worker`` (AWS), on the same
:class:`CreatorPipeline` and :class:`BatchLedger` as the local run::

    fanout = FanOut(ports, ledger, settings, fetcher_factory)
    planned = fanout.plan("csv-files/spring.csv")        # S3 event: record + send
    fanout.plan("in/x.csv", bucket="partner-exports", output_prefix="partner/")  # csv_s3
    result = await fanout.process(json.loads(body))      # one per-creator message
    # the invocation that finishes the last creator writes the summary, once
    fanout.sweep()                                       # scheduled: nothing stays stuck

Planning is the local run's loop (:class:`.planner.BatchPlanner`) with a
:class:`.queue_dispatch.QueueDispatcher`: the creators' covers go into plan objects
(``processing/<batch>/creators/NNNNN.jsonl``) a chunk at a time, with the chunk's
pending records and messages, then a checkpoint; a message names its creator's byte
range, so its size does not depend on URL length. A retried planner continues after
the last checkpoint. A CSV (key + content) maps to one batch through a plan marker
written with a conditional put, so a redelivered event never starts a second one.

A ``csv_s3`` message may name another bucket than the input bucket: only one the
operator listed in ``IMGPIPE_READABLE_BUCKETS``, and such a CSV is never moved to
the archive (the functions may only read there). Its ``output_prefix`` goes into
the batch's spec, so every worker writes that batch's collages and results under it.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from imgpipe.domain.csv_text import csv_text
from imgpipe.domain.fingerprints import content_hash
from imgpipe.domain.keys import ARCHIVE_FAILED, ARCHIVE_PROCESSED
from imgpipe.domain.keys import output_prefix as output_prefix_of
from imgpipe.domain.manifest import CoverRef, CreatorJob
from imgpipe.errors import (
    InputError,
    MessageError,
    StorageError,
)
from imgpipe.logs import log_context
from imgpipe.ports import ObjectStore, StagedCsv, Stager, StateStore, WorkQueue
from imgpipe.service.csv_objects import HashingReader, csv_source, parse_csv_bytes
from imgpipe.service.ledger import BatchLedger, local_owner
from imgpipe.service.messages import _CONFIG_FIELDS as _CONFIG_FIELDS  # tests read it here
from imgpipe.service.messages import options_from_config, parse_creator_message
from imgpipe.service.pipeline import CreatorPipeline, Fetcher
from imgpipe.service.planner import BatchPlanner
from imgpipe.service.planning import new_batch_id, plan_stats
from imgpipe.service.queue_dispatch import CREATOR_MESSAGE, QueueDispatcher
from imgpipe.service.results import CreatorResult
from imgpipe.service.summary import BatchSummary
from imgpipe.service.sweep import SweepBudget, sweep
from imgpipe.settings import BatchSpec, Settings

__all__ = [
    "CREATOR_MESSAGE",
    "DistributedPorts",
    "FanOut",
    "PlanOutcome",
    "csv_source",
    "options_from_config",
    "parse_csv_bytes",
]

log = logging.getLogger(__name__)

# Extra covers a plan keeps beyond what the grid holds, for backfilling failures;
# the rest are recorded as not attempted.
BACKFILL_FACTOR = 3
PLAN_CHUNK = 500  # creators per plan object, pending-record batch and checkpoint
MAX_REPORTED_PROBLEMS = 100  # row problems an outcome lists (all are in the summary's count)


@dataclass
class DistributedPorts:
    inputs: ObjectStore  # CSVs and uploads (IMGPIPE_INPUT_BUCKET)
    outputs: ObjectStore  # collages and results (IMGPIPE_OUTPUT_BUCKET)
    work: ObjectStore  # plans (IMGPIPE_TEMP_BUCKET, processing/ expires after 7 days)
    state: StateStore
    queue: WorkQueue  # per-creator messages (IMGPIPE_SQS_QUEUE_URL)
    plan_queue: WorkQueue | None = None  # csv_s3 messages (IMGPIPE_PLAN_QUEUE_URL, else queue)
    # bucket name -> its store, for the buckets of IMGPIPE_READABLE_BUCKETS (read only)
    readable: Callable[[str], ObjectStore] | None = None


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


# (spec, CSV key, the CSV's store) -> async context manager of a Fetcher
FetcherFactory = Callable[[BatchSpec, str, ObjectStore], Any]
Heartbeat = Callable[[], Awaitable[None]]


class FanOut:
    """Plans batches onto the queue and processes their per-creator messages."""

    def __init__(
        self,
        ports: DistributedPorts,
        ledger: BatchLedger,
        settings: Settings,
        fetcher_factory: FetcherFactory,
        *,
        stage: Stager,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        scratch_dir: Path | None = None,
    ) -> None:
        self.ports = ports
        self.ledger = ledger
        self.settings = settings
        self.fetcher_factory = fetcher_factory
        self.clock = clock
        self.stage = stage
        # Where a CSV is staged while planning (a Lambda's /tmp); made on first use.
        self._scratch_dir = scratch_dir or Path(tempfile.gettempdir()) / "imgpipe-staging"

    @property
    def scratch_dir(self) -> Path:
        self._scratch_dir.mkdir(parents=True, exist_ok=True)
        return self._scratch_dir

    # -- planning ----------------------------------------------------------------

    def plan(
        self,
        csv_key: str,
        overrides: Mapping[str, Any] | None = None,
        *,
        heartbeat: Callable[[], None] | None = None,
        batch_id: str | None = None,
        bucket: str | None = None,
        output_prefix: str = "",
    ) -> PlanOutcome:
        """Record a batch for the CSV at ``csv_key`` and send one message per creator.

        ``heartbeat`` is called after every chunk (the planner extends its planning
        message); ``batch_id`` is the id the API reserved for the upload. ``bucket``:
        where the CSV is (default: the input bucket; another one must be readable,
        else MessageError and nothing is planned). ``output_prefix``: the folder the
        batch's collages and results go under (checked, ``/`` appended).
        """
        store = self.csv_store(bucket)
        other_bucket = bucket if store is not self.ports.inputs else None  # read only
        source = csv_source(csv_key, other_bucket)
        try:
            prefix = output_prefix_of(output_prefix)
        except ValueError as exc:
            raise MessageError(f"output_prefix {output_prefix!r} is unusable: {exc}") from exc
        options = self.settings.batch_spec(**dict(overrides or {}), output_prefix=prefix)
        # A CSV published to another prefix or read from another bucket is another batch.
        seed = source
        if options.output_prefix:
            seed += "\0" + options.output_prefix
        scratch = self.scratch_dir / f"plan-{uuid.uuid4().hex}.sqlite3"
        try:
            staged, identity = self._stage(csv_key, options, scratch, store, seed)
        except InputError as exc:
            log.warning("CSV %s is unusable: %s", source, exc)
            if not other_bucket:  # another bucket is read only
                self._archive(csv_key, ARCHIVE_FAILED)
            return PlanOutcome(None, csv_key, error=str(exc))
        try:
            return self._plan_staged(
                staged,
                identity,
                csv_key,
                options,
                dict(overrides or {}),
                heartbeat,
                batch_id,
                other_bucket,
            )
        finally:
            staged.close()
            scratch.unlink(missing_ok=True)

    def csv_store(self, bucket: str | None) -> ObjectStore:
        """The store of the bucket a CSV is in: the input bucket, or one listed in
        IMGPIPE_READABLE_BUCKETS; MessageError naming any other bucket."""
        if not bucket or bucket == self.settings.input_bucket:
            return self.ports.inputs
        if bucket not in self.settings.readable_bucket_names():
            raise MessageError(
                f"s3_bucket {bucket!r} is not the input bucket and not listed in "
                "IMGPIPE_READABLE_BUCKETS (the template's ReadableBuckets parameter)"
            )
        if self.ports.readable is None:
            raise MessageError(f"s3_bucket {bucket!r}: this backend reads no other bucket")
        return self.ports.readable(bucket)

    def _stage(
        self, csv_key: str, options: BatchSpec, scratch: Path, store: ObjectStore, seed: str
    ) -> tuple[StagedCsv, str]:
        """Stream the CSV from the store into a scratch SQLite file, hashing it on the way:
        a million-row export never sits in memory (it did: 4 GB)."""
        identity = hashlib.sha256(seed.encode() + b"\0")
        try:
            raw = store.open(csv_key)
        except StorageError as exc:
            raise MessageError(f"CSV {csv_key!r} cannot be read: {exc}") from exc
        try:
            with io.BufferedReader(HashingReader(raw, identity)) as hashing:  # closes raw
                staged = self.stage(
                    csv_text(hashing, options.encoding),
                    path=scratch,
                    creator_column=options.creator_column,
                    url_column=options.url_column,
                )
        except InputError as exc:
            raise InputError(f"{csv_key}: {exc}") from exc
        except StorageError as exc:
            raise MessageError(f"CSV {csv_key!r} cannot be read: {exc}") from exc
        return staged, identity.hexdigest()[:32]

    def _plan_staged(
        self,
        staged: StagedCsv,
        identity: str,
        csv_key: str,
        options: BatchSpec,
        overrides: dict[str, Any],
        heartbeat: Callable[[], None] | None,
        batch_id: str | None,
        bucket: str | None,
    ) -> PlanOutcome:
        planner = self._planner()
        batch_id, replayed = planner.mark(identity, batch_id or new_batch_id(self.clock()))
        with log_context(batch_id=batch_id):  # the planning's records carry the batch
            batch = self.ports.state.get_batch(batch_id)
            if batch is None:
                stats = plan_stats(staged.rows_read, staged.duplicate_rows, staged.problems())
                # Not under the CSV prefix when in another bucket: finalize leaves it there.
                source = csv_source(csv_key, bucket)
                context = planner.open(batch_id, staged, stats, options, source=source)
            else:  # workers may be counting in its record: it is never rewritten
                context = self.ledger.context_for(batch_id, batch.created_at)
            dispatcher = QueueDispatcher(
                self.ports.work,
                self.ports.queue,
                csv_key=csv_key,
                keep=options.images_per_collage * BACKFILL_FACTOR,
                bucket=bucket,
                overrides=overrides,
            )
            sent = planner.fan_out(
                context, staged, dispatcher, continuing=batch is not None, heartbeat=heartbeat
            )
            outcome = PlanOutcome(
                batch_id,
                csv_key,
                creators=staged.creators,
                messages_sent=sent,
                replayed=replayed,
                row_problems=[
                    p.to_dict() for p in islice(staged.problems(), MAX_REPORTED_PROBLEMS)
                ],
            )
            if not staged.creators:  # nothing to fan out: the batch is complete already
                outcome.summary = self.finalize(batch_id)
            return outcome

    def _planner(self) -> BatchPlanner:
        # PLAN_CHUNK is read when planning (the chaos test makes chunks small).
        return BatchPlanner(self.ledger, chunk_size=PLAN_CHUNK)

    def submit(self, csv_key: str, data: bytes, overrides: Mapping[str, Any]) -> str:
        """Store a CSV outside the watched prefix and queue its planning: planned once.

        The batch id is reserved here, so the caller can answer with it at once.
        """
        self.ports.inputs.put(csv_key, data, content_type="text/csv")
        batch_id, _ = self.reserve(csv_key, data)
        message = {
            "processing_type": "csv_s3",
            "s3_key": csv_key,
            "batch_id": batch_id,
            "processing_config": dict(overrides),
        }
        (self.ports.plan_queue or self.ports.queue).send([json.dumps(message)])
        return batch_id

    def reserve(self, csv_key: str, data: bytes, batch_id: str | None = None) -> tuple[str, bool]:
        """The batch id of this CSV (key + content): a new one, or the one planned before."""
        identity = content_hash(csv_key.encode() + b"\0" + data)[:32]
        return self._planner().mark(identity, batch_id or new_batch_id(self.clock()))

    # -- per-creator messages ----------------------------------------------------

    async def process(
        self, message: Mapping[str, Any], *, heartbeat: Heartbeat | None = None
    ) -> CreatorResult:
        """Render one creator of a planned batch; the last one writes the summary.

        ClaimBusyError when another worker's claim is live: the caller puts the
        message back for ``retry_after`` seconds.
        """
        context, creator, key, csv_key, overrides = parse_creator_message(message)
        job = CreatorJob(creator, key, self._covers(message, key))
        options = await asyncio.to_thread(self._options, context.batch_id, overrides)
        note = {"message": {k: v for k, v in message.items() if k != "covers"}}
        store = self.csv_store(message.get("csv_bucket"))  # covers beside the CSV
        async with self.fetcher_factory(options, csv_key, store) as fetcher:
            pipeline = self._pipeline(fetcher)
            result = await pipeline.process(
                job, context, options, owner=local_owner(), heartbeat=heartbeat, note=note
            )
        await asyncio.to_thread(self.finalize, context.batch_id)
        return result

    def _options(self, batch_id: str, overrides: dict[str, Any]) -> BatchSpec:
        """Exactly the options the batch was planned with; the network allowances are
        this worker's own, and a worker never reads its own disk."""
        own = self.settings.batch_spec()
        spec = self.ledger.planned_spec(batch_id)
        if not spec:  # planned by an earlier version: rebuild from the message
            return self.settings.batch_spec(
                **options_from_config(overrides), allow_local_files=False
            )
        return BatchSpec.from_spec(
            spec, allowed_networks=own.fetch.allowed_networks, allow_local_files=False
        )

    def _covers(self, message: Mapping[str, Any], key: str) -> tuple[CoverRef, ...]:
        try:
            if "covers" in message:  # messages of earlier versions carried them inline
                pairs = message["covers"]
            else:
                plan_key, offset, length = message["plan"]
                line = json.loads(self.ports.work.get_range(str(plan_key), offset, length))
                if line.get("key") != key:
                    raise MessageError(f"plan range of {key!r} holds {line.get('key')!r}")
                pairs = line["covers"]
            return tuple(CoverRef(int(n), str(url)) for n, url in pairs)
        except StorageError as exc:
            raise MessageError(f"the plan of creator {key!r} cannot be read: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise MessageError(f"malformed plan reference for {key!r}: {exc!r}") from exc

    def _pipeline(self, fetcher: Fetcher) -> CreatorPipeline:
        return CreatorPipeline(self.ports.outputs, self.ledger, fetcher, clock=self.clock)

    def finalize(self, batch_id: str, *, wait: bool = True) -> BatchSummary | None:
        """Write the summary if the batch is finished and nobody else has; archive the CSV."""
        summary = self.ledger.finalize(batch_id, wait=wait)
        if summary is not None and summary.source.startswith(self.settings.csv_prefix):
            self._archive(summary.source, ARCHIVE_PROCESSED)
        return summary

    # -- the sweep ---------------------------------------------------------------

    def sweep(
        self, *, budget: SweepBudget | None = None, grace_seconds: float | None = None
    ) -> dict[str, int]:
        """Nothing stays stuck: see :func:`.sweep.sweep` (this engine's state, queue
        and finalize, which archives the CSV; the budget from the settings)."""
        return sweep(
            self.ports.state,
            self.ports.queue,
            self.ledger,
            partial(self.finalize, wait=False),  # one being written: left to its writer
            budget=budget
            or SweepBudget(
                requeues=self.settings.sweep_max_requeues,
                finalizations=self.settings.sweep_max_finalizations,
                settlements=self.settings.sweep_max_settlements,
            ),
            grace_seconds=grace_seconds,
        )

    def _archive(self, csv_key: str, folder: str) -> None:
        name = csv_key.removeprefix(self.settings.csv_prefix)
        target = folder + name
        try:
            self.ports.inputs.move(csv_key, target)
        except StorageError as exc:  # the batch is done; a stuck CSV must not undo that
            log.warning("could not archive %s to %s: %s", csv_key, target, exc)
