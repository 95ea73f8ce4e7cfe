"""The one place that wires adapters to services.

Entry points call these functions and never construct adapters themselves. The
local run's wiring (``imgpipe run file.csv``) is in :mod:`imgpipe.bootstrap_local`,
and the SQL source's (``run --from-sql``, ``export-csv``) in :mod:`imgpipe.bootstrap_sql`,
on that local run.

Example::

    backend = open_backend(settings, out_dir=Path("wall"))
    fanout = make_fanout(settings)     # the queue engine, on the AWS adapters
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgpipe.errors import ConfigError
from imgpipe.fetch.cover_cache import CoverCache
from imgpipe.service.ledger import BatchLedger
from imgpipe.service.notice import BatchNotices
from imgpipe.settings import BatchSpec, Settings, parse_networks

# What only some entry points use is imported where it is wired: `imgpipe run` and
# `status` start without the AWS engine, compression, comparison or Pillow's budget.
if TYPE_CHECKING:
    from imgpipe.domain.manifest import Manifest
    from imgpipe.fetch.store_source import StoreRelativeFetcher
    from imgpipe.imaging.budget import DecodeBudget
    from imgpipe.ports import BatchLocks, Notifier, ObjectStore, StateStore
    from imgpipe.service.compare import Comparator, ComparisonConfig
    from imgpipe.service.compress import Compressor
    from imgpipe.service.fanout import DistributedPorts, FanOut
    from imgpipe.service.summary import BatchSummary

__all__ = [
    "STATE_FILE",
    "Backend",
    "ImageTools",
    "make_image_tools",
    "make_fanout",
    "make_ledger",
    "make_notifiers",
    "open_backend",
    "open_distributed",
    "notice_lease_seconds",
    "reconcile_stale_batches",
    "resend_stranded_notices",
    "run_inline",
]

log = logging.getLogger(__name__)

STATE_FILE = "state.db"
LOCKS_FOLDER = "locks"
# How often, at most, a local creator's changed cover counts are written to its claim
# (for dashboards in other processes): one small SQLite write a second per creator in
# flight; a creator done within a second writes none.
LIVE_PROGRESS_SECONDS = 1.0


@dataclass
class Backend:
    """The adapters one process uses."""

    store: ObjectStore  # outputs: collages, results, the gallery
    state: StateStore
    location: str  # where a person finds the output (a folder, a bucket)
    plans: ObjectStore  # plans, markers and checkpoints (the output folder, or IMGPIPE_TEMP_BUCKET)
    locks: BatchLocks  # proof of life of this machine's batch processes
    settings: Settings
    distributed: DistributedPorts | None = None  # the AWS backend's ports, shared
    notifiers: list[Notifier] | None = None  # completion notices; None: from the settings

    def ledger(self) -> BatchLedger:
        return make_ledger(self.settings, self.state, self.store, self.plans, self.notifiers)

    @property
    def live_progress_seconds(self) -> float | None:
        """How often a creator's cover counts may be written to its record: locally,
        for dashboards in other processes; on AWS per creator is enough (no writes)."""
        return None if self.distributed is not None else LIVE_PROGRESS_SECONDS

    def close(self) -> None:
        close = getattr(self.state, "close", None)
        if callable(close):
            close()


@dataclass
class ImageTools:
    """Compression and comparison for one process, drawing on one decode budget."""

    budget: DecodeBudget
    compressor: Compressor
    comparator: Comparator
    compare_config: ComparisonConfig

    def close(self) -> None:
        self.compressor.close()


def make_image_tools(settings: Settings) -> ImageTools:
    """The HTTP service's image tools; ``IMGPIPE_DECODE_BUDGET_PIXELS`` bounds both."""
    from imgpipe.imaging.budget import DecodeBudget, return_freed_blocks
    from imgpipe.service.compare import ComparisonConfig, make_comparator
    from imgpipe.service.compress import CompressOptions, Compressor

    return_freed_blocks()  # so that the pixel count bounds the process's memory
    budget = DecodeBudget(settings.decode_budget_pixels)
    config = ComparisonConfig.from_settings(settings)
    compressor = Compressor(CompressOptions.from_settings(settings), budget)
    comparator = make_comparator(config, settings, budget=budget)
    return ImageTools(budget, compressor, comparator, config)


def make_ledger(
    settings: Settings,
    state: StateStore,
    outputs: ObjectStore,
    plans: ObjectStore,
    notifiers: list[Notifier] | None = None,
) -> BatchLedger:
    """The batch rules on these stores; the summary's writer sends the completion notice."""
    if notifiers is None:
        notifiers = make_notifiers(settings)
    notices = BatchNotices(
        notifiers,
        outputs,
        presign_seconds=settings.notify_presign_seconds,
        lease_seconds=notice_lease_seconds(settings),
    )
    return BatchLedger(
        state, outputs, plans, lease_seconds=settings.creator_lease_seconds, notices=notices
    )


def notice_lease_seconds(settings: Settings) -> float:
    """How long a notice's sender keeps its claim before a sweep or a rerun takes over.

    A creator's lease at least (on Lambda, the function's timeout, which no sender
    outlives), and longer than the webhook's worst case: every attempt timing out,
    with the 8 s backoff cap between them. Shorter would send a live sender's notice twice.

    >>> notice_lease_seconds(Settings(creator_lease_seconds=60, notify_retries=9))
    180.0
    """
    attempts = settings.notify_retries + 1
    return max(settings.creator_lease_seconds, attempts * (settings.notify_timeout + 8.0))


def make_notifiers(settings: Settings) -> list[Notifier]:
    """The notice channels configured: a webhook (``IMGPIPE_NOTIFY_URL``) and/or an SNS
    topic (``IMGPIPE_NOTIFY_TOPIC_ARN``). httpx and boto3 are imported only for them.

    The webhook shares the downloads' address guard and allowed networks; a URL that
    can never be sent to is a ConfigError now, not a failed notice at the batch's end.
    """
    notifiers: list[Notifier] = []
    if settings.notify_url:
        from imgpipe.adapters.webhook_notifier import WebhookNotifier
        from imgpipe.fetch.netguard import AddressGuard

        guard = AddressGuard(allowed_networks=parse_networks(settings.allow_private_networks))
        notifiers.append(
            WebhookNotifier(
                settings.notify_url,
                guard=guard,
                secret=settings.notify_secret,
                timeout=settings.notify_timeout,
                retries=settings.notify_retries,
            )
        )
    if settings.notify_topic_arn:
        from imgpipe.adapters.sns_notifier import SnsNotifier

        notifiers.append(SnsNotifier(settings.notify_topic_arn, settings=settings))
    return notifiers


def open_backend(settings: Settings, *, out_dir: Path | None = None) -> Backend:
    """Adapters for ``settings.backend``: a local folder + SQLite, or S3 + DynamoDB."""
    from imgpipe.adapters.memory import InProcessBatchLocks

    notifiers = make_notifiers(settings)  # a notice URL that cannot work fails here, first
    if settings.backend == "aws":
        ports = open_distributed(settings)
        return Backend(
            ports.outputs,
            ports.state,
            f"s3://{settings.output_bucket}",
            plans=ports.work,
            locks=InProcessBatchLocks(),
            settings=settings,
            distributed=ports,
            notifiers=notifiers,
        )
    from imgpipe.adapters.local_lock import FileBatchLocks
    from imgpipe.adapters.local_store import LocalObjectStore
    from imgpipe.adapters.sqlite_state import SqliteStateStore

    root = (out_dir or settings.data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    store = LocalObjectStore(root)
    return Backend(
        store=store,
        state=SqliteStateStore(root / STATE_FILE),
        location=str(root),
        plans=store,
        locks=FileBatchLocks(root / LOCKS_FOLDER),
        settings=settings,
        notifiers=notifiers,
    )


def reconcile_stale_batches(backend: Backend, *, limit: int = 50) -> list[str]:
    """Running batches whose process is gone (their lock is free) become ``interrupted``.

    Only the local backend can prove a process gone; on AWS the sweep does this.
    """
    if backend.settings.backend != "local":
        return []
    ledger = backend.ledger()
    stale = []
    for batch in backend.state.list_batches(limit):
        if batch.status.value == "running" and not backend.locks.is_held(batch.batch_id):
            ledger.interrupt(batch.batch_id)
            stale.append(batch.batch_id)
    return stale


def resend_stranded_notices(backend: Backend, *, limit: int = 50) -> list[str]:
    """Finished batches whose notice's sender died before it went out (``kill -9`` after
    the summary was written, or mid-send): sent now.

    The batch's lock is free, so no process of this machine is sending it: the claim
    is taken over at once, without waiting out its lease. On AWS the sweep does this.
    """
    if backend.settings.backend != "local":
        return []
    ledger = backend.ledger()  # without a notice channel, resume_notice reads nothing
    resent = []
    for batch in backend.state.list_batches(limit):
        if batch.summary_key and not backend.locks.is_held(batch.batch_id):
            if ledger.resume_notice(batch, owner_is_gone=True):
                resent.append(batch.batch_id)
    return resent


def open_distributed(settings: Settings) -> DistributedPorts:
    """The AWS adapters (boto3 is imported here, on first use, not at import time)."""
    from imgpipe.adapters.dynamodb_state import DynamoStateStore
    from imgpipe.adapters.s3_store import S3ObjectStore
    from imgpipe.adapters.sqs_queue import SqsWorkQueue
    from imgpipe.service.fanout import DistributedPorts

    missing = [
        name
        for name, value in {
            "IMGPIPE_INPUT_BUCKET": settings.input_bucket,
            "IMGPIPE_OUTPUT_BUCKET": settings.output_bucket,
            "IMGPIPE_SQS_QUEUE_URL": settings.sqs_queue_url,
            "IMGPIPE_DYNAMODB_TABLE_NAME": settings.dynamodb_table_name,
        }.items()
        if not value
    ]
    if missing:
        raise ConfigError(f"IMGPIPE_BACKEND=aws needs {', '.join(missing)}")
    from imgpipe.adapters.aws_clients import make_client

    s3 = make_client("s3", settings)

    def readable(bucket: str) -> ObjectStore:
        return S3ObjectStore(bucket, client=s3, settings=settings)

    return DistributedPorts(
        inputs=S3ObjectStore(settings.input_bucket, client=s3, settings=settings),
        outputs=S3ObjectStore(settings.output_bucket, client=s3, settings=settings),
        work=S3ObjectStore(
            settings.temp_bucket or settings.output_bucket, client=s3, settings=settings
        ),
        state=DynamoStateStore(settings.dynamodb_table_name, settings=settings),
        queue=SqsWorkQueue(settings.sqs_queue_url, settings=settings),
        plan_queue=SqsWorkQueue(
            settings.plan_queue_url or settings.sqs_queue_url, settings=settings
        ),
        readable=readable,
    )


def make_fanout(settings: Settings, ports: DistributedPorts | None = None) -> FanOut:
    """The distributed batch service, fetching covers from the web or beside the CSV."""
    from imgpipe.adapters.sqlite_staging import stage_manifest
    from imgpipe.service.fanout import FanOut

    ports = ports or open_distributed(settings)
    fetcher = store_fetchers(settings)
    ledger = make_ledger(settings, ports.state, ports.outputs, ports.work)
    scratch = settings.data_dir.resolve() / "processing" / "staging"
    return FanOut(ports, ledger, settings, fetcher, stage=stage_manifest, scratch_dir=scratch)


def store_fetchers(
    settings: Settings,
) -> Callable[[BatchSpec, str, ObjectStore], AbstractAsyncContextManager[StoreRelativeFetcher]]:
    """Fetchers of a distributed batch: the web (guarded, cached) and objects beside
    the CSV in its store; one downloader per creator message or inline run."""
    from imgpipe.fetch.downloader import Downloader
    from imgpipe.fetch.store_source import StoreRelativeFetcher

    cache = cover_cache(settings, settings.data_dir)

    @asynccontextmanager
    async def fetcher(
        options: BatchSpec, csv_key: str, store: ObjectStore
    ) -> AsyncIterator[StoreRelativeFetcher]:
        async with Downloader(options.fetch, cache=cache) as downloader:
            yield StoreRelativeFetcher(downloader, store, csv_key, options.fetch.max_bytes)

    return fetcher


def cover_cache(settings: Settings, root: Path) -> CoverCache:
    """Covers kept for reruns, under ``<root>/cache/covers`` (0 bytes: off, nothing made)."""
    return CoverCache(root / "cache" / "covers", settings.cache_max_bytes)


def run_inline(
    manifest: Manifest,
    options: BatchSpec,
    ports: DistributedPorts,
    settings: Settings,
    *,
    source: str,
    csv_key: str,
    identity: str,
    csv_store: ObjectStore | None = None,
) -> BatchSummary:
    """A whole batch in this process on the distributed stores (direct invocation);
    ``csv_store``: the CSV's bucket, for covers beside it (default: the input bucket)."""
    from imgpipe.adapters.memory import InProcessBatchLocks
    from imgpipe.service.batch import BatchRunner, InMemoryJobs

    options = options.with_overrides(allow_local_files=False)
    ledger = make_ledger(settings, ports.state, ports.outputs, ports.work)

    async def run() -> BatchSummary:
        store = csv_store or ports.inputs
        async with store_fetchers(settings)(options, csv_key, store) as fetcher:
            runner = BatchRunner(ledger, fetcher, locks=InProcessBatchLocks())
            planned = InMemoryJobs(manifest)
            return await runner.run(
                planned, planned.stats(), options, source=source, identity=identity
            )

    return asyncio.run(run())
