"""The one place that wires adapters to services.

Entry points call these functions and never construct adapters themselves. The
SQL source's wiring (``run --from-sql``, ``export-csv``) is in
:mod:`imgpipe.bootstrap_sql`, on this module's batch run.

Example::

    backend = open_backend(settings, out_dir=Path("wall"))
    summary = run_csv(Path("covers.csv"), options, backend)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from imgpipe.adapters.sqlite_staging import StagedManifest, stage_manifest
from imgpipe.domain.csv_text import CsvText, csv_text
from imgpipe.domain.manifest import Manifest
from imgpipe.errors import ConfigError, InputError, ManifestError
from imgpipe.fetch.cover_cache import CoverCache
from imgpipe.fetch.downloader import Downloader
from imgpipe.fetch.store_source import StoreRelativeFetcher
from imgpipe.imaging.budget import DecodeBudget, return_freed_blocks
from imgpipe.ports import BatchLocks, Notifier, ObjectStore, StateStore
from imgpipe.service.batch import (
    BatchInterruptedError,
    BatchRunner,
    InMemoryJobs,
    PlannedJobs,
)
from imgpipe.service.compare import Comparator, ComparisonConfig, make_comparator
from imgpipe.service.compress import CompressOptions, Compressor
from imgpipe.service.fanout import DistributedPorts, FanOut
from imgpipe.service.gallery import prepare_gallery
from imgpipe.service.ledger import BatchLedger
from imgpipe.service.memory import MemoryMonitor
from imgpipe.service.notice import BatchNotices
from imgpipe.service.planning import batch_identity, plan_stats
from imgpipe.service.preview import CsvPreview, StagedCounts
from imgpipe.service.progress import ProgressSink
from imgpipe.service.results import PlanStats
from imgpipe.service.summary import BatchSummary
from imgpipe.settings import BatchSpec, Settings, parse_networks

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
    "preview_csv",
    "notice_lease_seconds",
    "reconcile_stale_batches",
    "resend_stranded_notices",
    "run_csv",
    "run_inline",
]

log = logging.getLogger(__name__)

STATE_FILE = "state.db"
LOCKS_FOLDER = "locks"


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
    """Finished batches whose notice's sender died mid-send (``kill -9``): sent again now.

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


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in blocks (a million-row CSV is hundreds of MB)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            while block := stream.read(1 << 20):
                digest.update(block)
    except FileNotFoundError as exc:
        raise InputError(f"CSV file not found: {path}") from exc
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def run_csv(
    path: Path,
    options: BatchSpec,
    backend: Backend,
    *,
    progress: ProgressSink | None = None,
    monitor: MemoryMonitor | None = None,
    batch_id: str | None = None,
    new_batch: bool = False,
    handle_signals: bool = False,
) -> BatchSummary:
    """Run one CSV to completion on this machine (or continue its unfinished batch).

    The CSV is staged in a scratch SQLite file first, so memory does not grow with
    its rows. ``handle_signals``: SIGINT and SIGTERM stop the run gracefully; the
    BatchInterruptedError raised then carries the signal in ``signal``.
    """
    identity = batch_identity(file_digest(path), options, source=str(path.resolve()))
    # Per process: a second run of the same input (refused later) must not touch ours.
    scratch = scratch_dir(backend) / f"{identity}-{os.getpid()}.sqlite3"
    try:
        with stage_csv(path, options, scratch) as staged:
            planned = PlannedInput(staged, str(path), identity, path.resolve().parent)
            return run_planned(
                planned, options, backend, progress, monitor, batch_id,
                new_batch=new_batch, handle_signals=handle_signals,
            )  # fmt: skip
    finally:
        scratch.unlink(missing_ok=True)


@dataclass(frozen=True)
class PlannedInput:
    staged: StagedManifest
    source: str  # what the batch record names: the CSV's path, or sql:<masked URL> <query>
    identity: str
    base_dir: Path | None  # where relative cover paths start (the CSV's folder; None: cwd)


def run_planned(
    planned: PlannedInput,
    options: BatchSpec,
    backend: Backend,
    progress: ProgressSink | None,
    monitor: MemoryMonitor | None,
    batch_id: str | None,
    *,
    new_batch: bool,
    handle_signals: bool,
) -> BatchSummary:
    monitor = monitor or MemoryMonitor(
        warning=options.memory_warning, critical=options.memory_critical
    )
    staged = planned.staged
    stats = plan_stats(staged.rows_read, staged.duplicate_rows, staged.problems())
    return asyncio.run(
        _run(
            staged,
            stats,
            options,
            backend,
            planned,
            progress,
            monitor,
            batch_id,
            new_batch=new_batch,
            handle_signals=handle_signals,
        )  # fmt: skip
    )


def scratch_dir(backend: Backend) -> Path:
    """Beside the output when it is a folder (a million-row staging is hundreds of MB)."""
    root = Path(backend.location) if backend.settings.backend == "local" else None
    folder = (root or backend.settings.data_dir.resolve()) / "processing" / "staging"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def stage_csv(path: Path, options: BatchSpec, scratch: Path) -> StagedManifest:
    """Stage a CSV file in its encoding (named, or detected); InputError names the file."""
    return _stage_csv(path, options, scratch)[0]


def preview_csv(path: Path, options: BatchSpec) -> CsvPreview:
    """Read and validate a CSV as a batch would (``run --dry-run``): no fetch, no state.

    The staging goes to a temporary folder, not the output folder, which stays untouched.
    """
    with tempfile.TemporaryDirectory(prefix="imgpipe-preview-") as folder:
        staged, text = _stage_csv(path, options, Path(folder) / "staging.sqlite3")
        try:
            counts = StagedCounts(staged.rows_read, staged.duplicate_rows)
            preview = CsvPreview.of(counts, staged.jobs(), staged.problems())
            preview.details = {
                "source": str(path),
                "encoding": text.encoding.removesuffix("-sig"),
                "encoding_chosen": text.how,
                "creator_column": staged.creator_column,
                "url_column": staged.url_column,
            }
            return preview
        finally:
            staged.close()


def _stage_csv(path: Path, options: BatchSpec, scratch: Path) -> tuple[StagedManifest, CsvText]:
    try:
        with path.open("rb") as raw:
            text = csv_text(raw, options.encoding)
            log.info("%s: reading it as %s (%s)", path, text.encoding, text.how)
            staged = stage_manifest(
                text,
                path=scratch,
                creator_column=options.creator_column,
                url_column=options.url_column,
            )
            return staged, text
    except FileNotFoundError as exc:
        raise InputError(f"CSV file not found: {path}") from exc
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from exc
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc


async def _run(
    planned: PlannedJobs,
    stats: PlanStats,
    options: BatchSpec,
    backend: Backend,
    planned_input: PlannedInput,
    progress: ProgressSink | None,
    monitor: MemoryMonitor,
    batch_id: str | None,
    *,
    new_batch: bool,
    handle_signals: bool,
) -> BatchSummary:
    policy = options.fetch
    cache = cover_cache(backend.settings, Path(backend.location))
    stop = asyncio.Event()
    received: list[int] = []
    loop = asyncio.get_running_loop()
    # The gallery's template (Jinja2's import and compile, ~0.1 s) is made while the
    # covers download, not after the last creator: it was the run's serial tail.
    # A failure here shows again, in context, when the gallery is written.
    warm = loop.run_in_executor(None, prepare_gallery)
    warm.add_done_callback(lambda done: done.cancelled() or done.exception())
    signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()

    def stop_on(number: int) -> None:
        received.append(number)
        stop.set()

    for number in signals:
        loop.add_signal_handler(number, stop_on, number)
    # Decoding and encoding release the GIL inside Pillow, so threads use every core.
    cpu_workers = max(2, os.cpu_count() or 2)
    try:
        with ThreadPoolExecutor(cpu_workers, thread_name_prefix="imgpipe-cpu") as executor:
            async with Downloader(
                policy, base_dir=planned_input.base_dir, cache=cache
            ) as downloader:
                runner = BatchRunner(
                    backend.ledger(),
                    downloader,
                    locks=backend.locks,
                    executor=executor,
                    monitor=monitor,
                    progress=progress,
                )
                return await runner.run(
                    planned,
                    stats,
                    options,
                    source=planned_input.source,
                    identity=planned_input.identity,
                    batch_id=batch_id,
                    new_batch=new_batch,
                    stop=stop,
                )
    except BatchInterruptedError as exc:
        exc.signal = received[0] if received else None
        raise
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
