"""Starting a batch from an uploaded CSV: in this process (local) or by fan-out (AWS).

Routes only see :class:`BatchLauncher`; which one runs is decided in :func:`make_launcher`.
Both validate the CSV before answering, so a bad upload is a 400 and never a batch.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from imgpipe.bootstrap import Backend
from imgpipe.bootstrap_local import run_csv
from imgpipe.domain.keys import API_UPLOADS_PREFIX
from imgpipe.domain.records import BatchRecord
from imgpipe.ports import Metrics
from imgpipe.service.fanout import parse_csv_bytes
from imgpipe.service.planning import new_batch_id
from imgpipe.service.progress import LiveProgress
from imgpipe.service.summary import BatchSummary
from imgpipe.settings import Settings

__all__ = ["BatchLauncher", "LocalLauncher", "make_launcher"]

log = logging.getLogger(__name__)
# What a file name may not hold as one path segment or S3 key segment; the rest of
# the uploaded name is kept, so pages show it as the person chose it.
_UNSAFE_IN_NAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


def upload_name(filename: str) -> str:
    """An uploaded file's name, safe as the last segment of a path or key.

    >>> upload_name("creators (May).csv"), upload_name("../../etc/passwd"), upload_name("")
    ('creators (May).csv', 'passwd', 'upload.csv')
    """
    name = _UNSAFE_IN_NAME.sub("_", filename.replace("\\", "/").rsplit("/", 1)[-1])
    name = name.strip(" .")[:120]
    return name or "upload.csv"


class BatchLauncher(Protocol):
    def launch(self, data: bytes, filename: str, overrides: dict[str, Any]) -> str:
        """Validate the CSV, start its batch, return the batch id (InputError if unusable)."""
        ...

    def pending(self, batch_id: str) -> dict[str, Any] | None:
        """A batch accepted but not yet recorded by the state store, else None."""
        ...

    def live(self, batch: BatchRecord) -> dict[str, dict[str, int]]:
        """Cover counts of the batch's creators in flight, by creator key."""
        ...


class LocalLauncher:
    """Runs batches on this machine, ``workers`` at a time, in background threads."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        root: Path,
        *,
        metrics: Metrics | None = None,
        workers: int = 1,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.ledger = backend.ledger()  # reads the counts other processes record
        self.metrics = metrics
        self.uploads = root / "uploads"
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="imgpipe-batch")
        self._pending: dict[str, dict[str, Any]] = {}
        self._live: dict[str, LiveProgress] = {}
        self._lock = threading.Lock()

    def launch(self, data: bytes, filename: str, overrides: dict[str, Any]) -> str:
        # An uploaded CSV is someone else's input: it must not read this server's files.
        options = self.settings.batch_spec(**overrides, allow_local_files=False)
        parse_csv_bytes(data, options, filename)  # InputError -> 400 before anything starts
        batch_id = new_batch_id(datetime.now(UTC))
        # A folder per batch keeps the file's own name: the batch's source shows it.
        folder = self.uploads / batch_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / upload_name(filename)
        path.write_bytes(data)
        with self._lock:
            self._pending[batch_id] = {
                "batch_id": batch_id,
                "status": "queued",
                "source": path.name,
            }
            self._live[batch_id] = LiveProgress()
        self._pool.submit(self._run, path, options, batch_id)
        return batch_id

    def _run(self, path: Path, options: Any, batch_id: str) -> None:
        with self._lock:
            live = self._live[batch_id]
        try:
            summary = run_csv(path, options, self.backend, batch_id=batch_id, progress=live)
        except Exception as exc:  # recorded for GET /v1/batches/{id}; the server goes on
            log.exception("batch %s failed", batch_id)
            with self._lock:
                self._pending[batch_id].update(status="error", error=str(exc))
                self._live.pop(batch_id, None)
            return
        with self._lock:
            self._pending.pop(batch_id, None)
            self._live.pop(batch_id, None)
        if self.metrics is not None:
            record_batch(self.metrics, summary)

    def pending(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._pending.get(batch_id)
            return dict(entry) if entry else None

    def live(self, batch: BatchRecord) -> dict[str, dict[str, int]]:
        """As the claims last recorded them (whichever process runs the batch), and
        fresher from this process's own events when it runs the batch itself."""
        live = self.ledger.live_progress(batch)
        with self._lock:
            progress = self._live.get(batch.batch_id)
        if progress is not None:
            live.update(progress.snapshot())
        return live

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def record_batch(metrics: Metrics, summary: BatchSummary) -> None:
    metrics.observe("batch_duration", summary.duration_s)
    metrics.incr("images_processed", summary.totals.get("images_used", 0))
    for reason, count in summary.failures_by_reason.items():
        metrics.incr("failures", count, reason=reason)


class AwsLauncher:
    """Stores the CSV under ``api-uploads/`` and queues its planning: planned exactly once.

    ``api-uploads/`` is outside the CSV prefix, so no S3 event plans it a second time.
    """

    PREFIX = API_UPLOADS_PREFIX

    def __init__(self, settings: Settings, backend: Backend) -> None:
        from imgpipe.bootstrap import make_fanout

        self.settings = settings
        # The backend's own clients: one set of S3/DynamoDB/SQS connections per process.
        self.fanout = make_fanout(settings, backend.distributed)
        self._queued: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def launch(self, data: bytes, filename: str, overrides: dict[str, Any]) -> str:
        options = self.settings.batch_spec(**overrides)
        parse_csv_bytes(data, options, filename)  # InputError -> 400 before anything starts
        # A folder per upload keeps the file's own name: the batch's source shows it.
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        key = f"{self.PREFIX}{stamp}-{uuid.uuid4().hex[:8]}/{upload_name(filename)}"
        batch_id = self.fanout.submit(key, data, overrides)
        with self._lock:
            self._queued[batch_id] = {"batch_id": batch_id, "status": "queued", "source": key}
        return batch_id

    def pending(self, batch_id: str) -> dict[str, Any] | None:
        """Queued for planning by this process, not yet recorded by the planner."""
        with self._lock:
            entry = self._queued.get(batch_id)
            return dict(entry) if entry else None

    def live(self, batch: BatchRecord) -> dict[str, dict[str, int]]:
        # Workers run elsewhere and write no counts (per creator is enough on AWS):
        # a poll costs no DynamoDB query.
        return {}


def make_launcher(
    settings: Settings, backend: Backend, root: Path, metrics: Metrics | None = None
) -> BatchLauncher:
    if settings.backend == "aws":
        return AwsLauncher(settings, backend)
    return LocalLauncher(settings, backend, root, metrics=metrics)
