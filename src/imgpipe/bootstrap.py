"""The one place that wires adapters to services.

Entry points call these functions and never construct adapters themselves.

Example::

    backend = open_backend(settings, out_dir=Path("wall"))
    summary = run_csv(Path("covers.csv"), options, backend)
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from imgpipe.domain.manifest import Manifest, parse_manifest
from imgpipe.errors import ConfigError, InputError, ManifestError
from imgpipe.fetch.downloader import Downloader, FetchPolicy
from imgpipe.ports import ObjectStore, StateStore
from imgpipe.service.batch import BatchRunner, BatchSummary
from imgpipe.service.memory import MemoryMonitor
from imgpipe.service.progress import ProgressSink
from imgpipe.settings import RunOptions, Settings

__all__ = ["Backend", "STATE_FILE", "open_backend", "read_manifest", "run_csv"]

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
    """Adapters for ``settings.backend``; only the local backend exists so far."""
    if settings.backend != "local":
        raise ConfigError(f"IMGPIPE_BACKEND={settings.backend!r} is not available in this build")
    from imgpipe.adapters.local_store import LocalObjectStore
    from imgpipe.adapters.sqlite_state import SqliteStateStore

    root = (out_dir or settings.data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return Backend(
        store=LocalObjectStore(root),
        state=SqliteStateStore(root / STATE_FILE),
        location=str(root),
    )


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
) -> BatchSummary:
    """Run one CSV to completion on this machine and return its summary."""
    manifest = read_manifest(path, options)
    monitor = monitor or MemoryMonitor(
        warning=options.memory_warning, critical=options.memory_critical
    )
    return asyncio.run(_run(manifest, options, backend, path, progress, monitor))


async def _run(
    manifest: Manifest,
    options: RunOptions,
    backend: Backend,
    path: Path,
    progress: ProgressSink | None,
    monitor: MemoryMonitor,
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
            return await runner.run(manifest, options, source=str(path))
