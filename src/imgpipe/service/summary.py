"""The batch summary, written as a stream: counts in memory, failed URLs in JSON Lines parts.

A million failed covers must not sit in memory, nor be dropped: each failed URL
is written to ``results/failed-urls/<batch_id>/part-NNNNN.jsonl`` in parts of
``FAILED_URLS_PER_PART`` lines, the summary JSON lists the parts and carries the
first ``FAILED_URLS_INLINE`` for people and the gallery::

    writer = SummaryWriter(outputs, batch, stats, finished=now)
    for record in state.creators_in_batch(batch.batch_id):
        writer.add(ledger.result_of(record))  # covers included, wherever kept
    summary = writer.publish(state, batch)      # summary JSON, gallery, batch record
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from imgpipe.domain.keys import summary_key
from imgpipe.domain.records import BatchStatus, CreatorStatus
from imgpipe.domain.result_rows import line_kind
from imgpipe.service.gallery import render_gallery

if TYPE_CHECKING:
    from imgpipe.domain.records import BatchRecord
    from imgpipe.ports import ObjectStore, StateStore
    from imgpipe.service.results import CreatorResult, PlanStats

__all__ = ["GALLERY_KEY", "BatchSummary", "SummaryWriter", "batch_status", "failed_urls_prefix"]

EXIT_OK = 0
EXIT_SOME_FAILED = 3
GALLERY_KEY = "index.html"
FAILED_URLS_PER_PART = 20_000
FAILED_URLS_INLINE = 1_000
# One encoder for every line: json.dumps with options builds a new one per call,
# which was a tenth of a million-failure summary's time.
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def batch_status(creators: int, failed: int) -> BatchStatus:
    """A finished batch's status: ``failed`` when no creator got a collage.

    >>> [batch_status(3, n).value for n in (0, 1, 3)]
    ['completed', 'completed_with_failures', 'failed']
    """
    if failed and failed >= creators:
        return BatchStatus.FAILED
    return BatchStatus.COMPLETED_WITH_FAILURES if failed else BatchStatus.COMPLETED


def failed_urls_prefix(batch_id: str, *, prefix: str = "") -> str:
    return f"{prefix}results/failed-urls/{batch_id}/"


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
    failed_urls: list[dict[str, Any]]  # the first FAILED_URLS_INLINE; all in failed_url_files
    row_problems: list[dict[str, Any]]
    creators: list[dict[str, Any]]
    settings: dict[str, Any]
    images_per_second: float
    peak_memory_percent: float
    summary_key: str = ""
    gallery_key: str = GALLERY_KEY
    failed_url_files: list[str] = field(default_factory=list)
    # What ``line`` counts in row_problems, failed_urls and the failed-URL parts (the key
    # stays ``line`` for CSV consumers): "csv_line", or "result_row" for a SQL query.
    line_kind: str = "csv_line"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.totals.get("failed", 0) else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data; its lists and dicts are the summary's own
        (not copies: ``dataclasses.asdict`` deep-copied every creator's covers, 0.15 s
        of a 700-cover run each time the summary was written or printed)."""
        data = {name: getattr(self, name) for name in _FIELDS}
        data["status"] = self.status.value
        data["exit_code"] = self.exit_code
        return data


_FIELDS = tuple(f.name for f in fields(BatchSummary))


class SummaryWriter:
    """Accumulates creator results one at a time; failed URLs go out in parts."""

    def __init__(
        self,
        outputs: ObjectStore,
        batch: BatchRecord,
        stats: PlanStats,
        *,
        finished: datetime,
        peak_memory_percent: float = 0.0,
        prefix: str = "",
    ) -> None:
        """``prefix``: the batch's output prefix; the summary, its failed-URL parts and
        the gallery go under it, beside the batch's collages."""
        self.outputs = outputs
        self.prefix = prefix
        self.batch = batch
        self.stats = stats
        self.finished = finished
        self.peak_memory_percent = peak_memory_percent
        self.creators = 0
        self._statuses: Counter[CreatorStatus] = Counter()
        self._reasons: Counter[str] = Counter()
        self._entries: list[dict[str, Any]] = []
        self._inline: list[dict[str, Any]] = []
        self._part: list[str] = []
        self._parts: list[str] = []
        self._failed = 0
        self._images = 0
        self._duplicates = 0

    def add(self, result: CreatorResult) -> None:
        self.creators += 1
        self._statuses[result.status] += 1
        self._images += result.images_used
        self._duplicates += result.duplicates
        failures = result.failures
        for cover in failures:
            self._reasons[cover.reason or "unknown"] += 1
            entry = {"creator": result.creator, **cover.to_dict()}
            self._failed += 1
            if len(self._inline) < FAILED_URLS_INLINE:
                self._inline.append(entry)
            self._part.append(_ENCODE(entry))
            if len(self._part) >= FAILED_URLS_PER_PART:
                self._flush()
        self._entries.append(_creator_entry(result, Counter(c.reason for c in failures)))

    def _flush(self) -> None:
        if not self._part:
            return
        folder = failed_urls_prefix(self.batch.batch_id, prefix=self.prefix)
        key = f"{folder}part-{len(self._parts):05}.jsonl"
        self.outputs.put(
            key, ("\n".join(self._part) + "\n").encode(), content_type="application/x-ndjson"
        )
        self._parts.append(key)
        self._part = []

    def discard(self) -> None:
        """Remove the parts written so far (the records are read again)."""
        for key in self._parts:
            self.outputs.delete(key)
        self._parts = []

    def summary(self) -> BatchSummary:
        self._flush()
        reasons = self.stats.row_problem_reasons or Counter(
            str(p["reason"]) for p in self.stats.row_problems
        )
        for reason, count in reasons.items():
            self._reasons[f"row_{reason}"] += count
        started = datetime.fromisoformat(self.batch.created_at)
        duration = max(0.0, (self.finished - started).total_seconds())
        failed = self._statuses[CreatorStatus.FAILED]
        totals = {
            "creators": self.creators,
            "completed": self._statuses[CreatorStatus.COMPLETED],
            "skipped_unchanged": self._statuses[CreatorStatus.SKIPPED_UNCHANGED],
            "failed": failed,
            "images_used": self._images,
            "images_failed": self._failed,
            "duplicates": self._duplicates,
            "rows_read": self.stats.rows_read,
            "row_problems": self.stats.problems_total,
            "duplicate_rows": self.stats.duplicate_rows,
        }
        self._entries.sort(key=lambda e: (e["creator"].casefold(), e["key"]))
        return BatchSummary(
            batch_id=self.batch.batch_id,
            source=self.batch.source,
            started_at=started.isoformat(timespec="seconds"),
            finished_at=self.finished.isoformat(timespec="seconds"),
            duration_s=round(duration, 3),
            status=batch_status(self.creators, failed),
            totals=totals,
            failures_by_reason=dict(self._reasons.most_common()),
            failed_urls=self._inline,
            row_problems=self.stats.row_problems,
            creators=self._entries,
            settings=self.batch.settings,
            images_per_second=round(self._images / duration, 2) if duration > 0 else 0.0,
            peak_memory_percent=round(self.peak_memory_percent, 1),
            summary_key=summary_key(self.batch.batch_id, prefix=self.prefix),
            gallery_key=self.prefix + GALLERY_KEY,
            failed_url_files=list(self._parts),
            line_kind=line_kind(self.batch.source),
        )

    def publish(self, state: StateStore, batch: BatchRecord) -> BatchSummary:
        """Write the summary JSON and the gallery, and close the batch record."""
        summary = self.summary()
        self.outputs.put(
            summary.summary_key,
            json.dumps(summary.to_dict(), ensure_ascii=False, indent=2).encode(),
            content_type="application/json",
        )
        self.outputs.put(
            summary.gallery_key,
            render_gallery(summary, base=self.prefix).encode(),
            content_type="text/html; charset=utf-8",
        )
        batch.status = summary.status
        batch.summary_key = summary.summary_key
        batch.finished_at = summary.finished_at
        state.put_batch(batch)
        return summary


def _creator_entry(result: CreatorResult, failures: Counter[str | None]) -> dict[str, Any]:
    return {
        "creator": result.creator,
        "key": result.key,
        "status": result.status.value,
        "images_used": result.images_used,
        "collage_key": result.collage_key,
        "preview_key": result.preview_key,
        "width": result.collage_size[0] if result.collage_size else None,
        "height": result.collage_size[1] if result.collage_size else None,
        "failures": dict(failures),
        "duplicates": result.duplicates,
        "error": result.error,
        "safe_mode": result.safe_mode,
        "duration_s": round(result.duration, 3),
    }
