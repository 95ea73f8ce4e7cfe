"""The one place that wires adapters to services.

Entry points call these functions and never construct adapters themselves.

Example::

    backend = open_backend(settings, out_dir=Path("wall"))
    summary = run_csv(Path("covers.csv"), options, backend)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from imgpipe.domain.manifest import Manifest, parse_manifest
from imgpipe.errors import ConfigError, InputError, ManifestError
from imgpipe.fetch.downloader import Downloader, FetchPolicy
from imgpipe.fetch.store_source import StoreRelativeFetcher
from imgpipe.ports import ObjectStore, StateStore
from imgpipe.service.batch import BatchRunner, BatchSummary
from imgpipe.service.fanout import DistributedPorts, FanOut
from imgpipe.service.memory import MemoryMonitor
from imgpipe.service.progress import ProgressSink
from imgpipe.settings import RunOptions, Settings

__all__ = [
    "STATE_FILE",
    "Backend",
    "make_fanout",
    "open_backend",
    "open_distributed",
    "read_manifest",
    "run_csv",
    "run_inline",
]

STATE_FILE = "state.db"


@dataclass
class Backend:
    """The adapters one process uses."""

    store: ObjectStore
    state: StateStore
    location: str  # where a person finds the output (a folder, a bucket)

    def close(self) -> None:
        close = getattr(self.state, "close", None)
        if callable(close):
            close()


def open_backend(settings: Settings, *, out_dir: Path | None = None) -> Backend:
    """Adapters for ``settings.backend``: a local folder + SQLite, or S3 + DynamoDB."""
    if settings.backend == "aws":
        ports = open_distributed(settings)
        return Backend(ports.outputs, ports.state, f"s3://{settings.output_bucket}")
    from imgpipe.adapters.local_store import LocalObjectStore
    from imgpipe.adapters.sqlite_state import SqliteStateStore

    root = (out_dir or settings.data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return Backend(
        store=LocalObjectStore(root),
        state=SqliteStateStore(root / STATE_FILE),
        location=str(root),
    )


def open_distributed(settings: Settings) -> DistributedPorts:
    """The AWS adapters (boto3 is imported here, on first use, not at import time)."""
    from imgpipe.adapters.dynamodb_state import DynamoStateStore
    from imgpipe.adapters.s3_store import S3ObjectStore
    from imgpipe.adapters.sqs_queue import SqsWorkQueue

    missing = [
        name
        for name, value in {
            "INPUT_BUCKET": settings.input_bucket,
            "OUTPUT_BUCKET": settings.output_bucket,
            "SQS_QUEUE_URL": settings.sqs_queue_url,
            "DYNAMODB_TABLE_NAME": settings.dynamodb_table_name,
        }.items()
        if not value
    ]
    if missing:
        raise ConfigError(f"IMGPIPE_BACKEND=aws needs {', '.join(missing)}")
    from imgpipe.adapters.aws_clients import make_client

    s3 = make_client("s3", settings)
    return DistributedPorts(
        inputs=S3ObjectStore(settings.input_bucket, client=s3, settings=settings),
        outputs=S3ObjectStore(settings.output_bucket, client=s3, settings=settings),
        work=S3ObjectStore(
            settings.temp_bucket or settings.output_bucket, client=s3, settings=settings
        ),
        state=DynamoStateStore(settings.dynamodb_table_name, settings=settings),
        queue=SqsWorkQueue(settings.sqs_queue_url, settings=settings),
    )


def make_fanout(settings: Settings, ports: DistributedPorts | None = None) -> FanOut:
    """The distributed batch service, fetching covers from the web or beside the CSV."""
    ports = ports or open_distributed(settings)

    @asynccontextmanager
    async def fetcher(options: RunOptions, csv_key: str) -> AsyncIterator[StoreRelativeFetcher]:
        async with Downloader(FetchPolicy.from_options(options)) as downloader:
            yield StoreRelativeFetcher(downloader, ports.inputs, csv_key, options.max_bytes)

    return FanOut(ports, settings, fetcher)


def run_inline(
    manifest: Manifest,
    options: RunOptions,
    ports: DistributedPorts,
    *,
    source: str,
    csv_key: str,
) -> BatchSummary:
    """A whole batch in this process on the distributed stores (direct invocation)."""
    options = replace(options, allow_local_files=False)

    async def run() -> BatchSummary:
        async with Downloader(FetchPolicy.from_options(options)) as downloader:
            fetcher = StoreRelativeFetcher(downloader, ports.inputs, csv_key, options.max_bytes)
            runner = BatchRunner(ports.outputs, ports.state, fetcher)
            return await runner.run(manifest, options, source=source)

    return asyncio.run(run())


def read_manifest(path: Path, options: RunOptions) -> Manifest:
    """Parse a CSV file; InputError names the file when it cannot be read."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            return parse_manifest(
                stream,
                creator_column=options.creator_column,
                url_column=options.url_column,
            )
    except FileNotFoundError as exc:
        raise InputError(f"CSV file not found: {path}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from exc
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc


def run_csv(
    path: Path,
    options: RunOptions,
    backend: Backend,
    *,
    progress: ProgressSink | None = None,
    monitor: MemoryMonitor | None = None,
    batch_id: str | None = None,
) -> BatchSummary:
    """Run one CSV to completion on this machine and return its summary."""
    manifest = read_manifest(path, options)
    monitor = monitor or MemoryMonitor(
        warning=options.memory_warning, critical=options.memory_critical
    )
    return asyncio.run(_run(manifest, options, backend, path, progress, monitor, batch_id))


async def _run(
    manifest: Manifest,
    options: RunOptions,
    backend: Backend,
    path: Path,
    progress: ProgressSink | None,
    monitor: MemoryMonitor,
    batch_id: str | None = None,
) -> BatchSummary:
    policy = FetchPolicy.from_options(options)
    # Decoding and encoding release the GIL inside Pillow, so threads use every core.
    cpu_workers = max(2, os.cpu_count() or 2)
    with ThreadPoolExecutor(cpu_workers, thread_name_prefix="imgpipe-cpu") as executor:
        async with Downloader(policy, base_dir=path.resolve().parent) as downloader:
            runner = BatchRunner(
                backend.store,
                backend.state,
                downloader,
                executor=executor,
                monitor=monitor,
                progress=progress,
            )
            return await runner.run(manifest, options, source=str(path), batch_id=batch_id)
