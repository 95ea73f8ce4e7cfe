"""Starting a batch from an uploaded CSV: in this process (local) or by fan-out (AWS).

Routes only see :class:`BatchLauncher`; which one runs is decided in :func:`make_launcher`.
Both validate the CSV before answering, so a bad upload is a 400 and never a batch.
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from imgpipe.bootstrap import Backend, run_csv
from imgpipe.domain.keys import API_UPLOADS_PREFIX
from imgpipe.ports import Metrics
from imgpipe.service.fanout import parse_csv_bytes
from imgpipe.service.planning import new_batch_id
from imgpipe.service.summary import BatchSummary
from imgpipe.settings import Settings

__all__ = ["BatchLauncher", "LocalLauncher", "make_launcher"]

log = logging.getLogger(__name__)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class BatchLauncher(Protocol):
    def launch(self, data: bytes, filename: str, overrides: dict[str, Any]) -> str:
        """Validate the CSV, start its batch, return the batch id (InputError if unusable)."""
        ...

    def pending(self, batch_id: str) -> dict[str, Any] | None:
        """A batch accepted but not yet recorded by the state store, else None."""
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
        self.metrics = metrics
        self.uploads = root / "uploads"
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="imgpipe-batch")
        self._pending: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def launch(self, data: bytes, filename: str, overrides: dict[str, Any]) -> str:
        # An uploaded CSV is someone else's input: it must not read this server's files.
        options = self.settings.batch_spec(**overrides, allow_local_files=False)
        parse_csv_bytes(data, options, filename)  # InputError -> 400 before anything starts
        batch_id = new_batch_id(datetime.now(UTC))
        self.uploads.mkdir(parents=True, exist_ok=True)
        path = self.uploads / f"{batch_id}-{_SAFE_NAME.sub('_', filename)[:80] or 'upload.csv'}"
        path.write_bytes(data)
        with self._lock:
            self._pending[batch_id] = {
                "batch_id": batch_id,
                "status": "queued",
                "source": path.name,
            }
        self._pool.submit(self._run, path, options, batch_id)
        return batch_id

    def _run(self, path: Path, options: Any, batch_id: str) -> None:
        try:
            summary = run_csv(path, options, self.backend, batch_id=batch_id)
        except Exception as exc:  # recorded for GET /v1/batches/{id}; the server goes on
            log.exception("batch %s failed", batch_id)
            with self._lock:
                self._pending[batch_id].update(status="error", error=str(exc))
            return
        with self._lock:
            self._pending.pop(batch_id, None)
        if self.metrics is not None:
            record_batch(self.metrics, summary)

    def pending(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._pending.get(batch_id)
            return dict(entry) if entry else None

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
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        key = f"{self.PREFIX}{stamp}-{_SAFE_NAME.sub('_', filename)[:80] or 'upload.csv'}"
        batch_id = self.fanout.submit(key, data, overrides)
        with self._lock:
            self._queued[batch_id] = {"batch_id": batch_id, "status": "queued", "source": key}
        return batch_id

    def pending(self, batch_id: str) -> dict[str, Any] | None:
        """Queued for planning by this process, not yet recorded by the planner."""
        with self._lock:
            entry = self._queued.get(batch_id)
            return dict(entry) if entry else None


def make_launcher(
    settings: Settings, backend: Backend, root: Path, metrics: Metrics | None = None
) -> BatchLauncher:
    if settings.backend == "aws":
        return AwsLauncher(settings, backend)
    return LocalLauncher(settings, backend, root, metrics=metrics)
