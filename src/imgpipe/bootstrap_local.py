"""The local run's wiring: ``imgpipe run file.csv`` and the API's local batches.

A CSV is staged in a scratch SQLite file beside the output, then run on this
machine by a :class:`~imgpipe.service.batch.BatchRunner` (its in-process pool),
with SIGINT and SIGTERM stopping it gracefully. The adapters come from
:func:`imgpipe.bootstrap.open_backend`; the SQL source (:mod:`imgpipe.bootstrap_sql`)
runs its rows through :func:`run_planned` here.

Example::

    backend = open_backend(settings, out_dir=Path("wall"))
    summary = run_csv(Path("covers.csv"), options, backend, handle_signals=True)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgpipe.adapters.sqlite_staging import stage_manifest
from imgpipe.bootstrap import cover_cache
from imgpipe.domain.csv_text import csv_text
from imgpipe.errors import InputError, ManifestError
from imgpipe.fetch.downloader import Downloader
from imgpipe.service.batch import BatchInterruptedError, BatchRunner
from imgpipe.service.gallery import prepare_gallery
from imgpipe.service.memory import MemoryMonitor
from imgpipe.service.planning import batch_identity, plan_stats
from imgpipe.service.preview import CsvPreview, StagedCounts

if TYPE_CHECKING:
    from imgpipe.adapters.sqlite_staging import StagedManifest
    from imgpipe.bootstrap import Backend
    from imgpipe.domain.csv_text import CsvText
    from imgpipe.service.batch import PlannedJobs
    from imgpipe.service.progress import ProgressSink
    from imgpipe.service.results import PlanStats
    from imgpipe.service.summary import BatchSummary
    from imgpipe.settings import BatchSpec

__all__ = [
    "PlannedInput",
    "file_digest",
    "preview_csv",
    "run_csv",
    "run_planned",
    "scratch_dir",
    "stage_csv",
]

log = logging.getLogger(__name__)


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
                    progress_seconds=backend.live_progress_seconds,
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
