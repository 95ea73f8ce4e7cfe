"""The batch completion notice: a short digest of the summary, sent once per finished batch.

:meth:`BatchLedger.finalize` calls :meth:`BatchNotices.announce` right after it wrote
the summary, so only the summary's writer sends, whichever engine ran the batch
(the local runner, a queue worker, the sweep). Before sending, the writer also
claims ``<summary>.notice.json`` with a put-if-absent: even a writer whose summary
claim had expired (and whose summary was written twice) cannot notify twice.

The outcome replaces the claim in that object; the summary is never rewritten. A
notice that fails is recorded and logged; it never fails the batch::

    notices = BatchNotices([webhook], outputs, presign_seconds=3600)
    record = notices.announce(summary)     # None when no channel is configured
    record.failed                          # deliveries that did not go out

The digest stays a few kilobytes whatever the batch (failure reasons are capped),
far below SNS's 256 KB:

    >>> digest = {"batch_id": "b1", "failure_reasons": {"http_404": 3}}
    >>> len(encode_digest(digest)) < MAX_DIGEST_BYTES
    True
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from imgpipe.domain.keys import notice_key
from imgpipe.errors import KeyCollisionError, StorageError
from imgpipe.ports import Delivery, Notifier, ObjectStore
from imgpipe.service.summary import BatchSummary

__all__ = [
    "DIGEST_TYPE",
    "MAX_DIGEST_BYTES",
    "MAX_REASONS",
    "BatchNotices",
    "NoticeRecord",
    "build_digest",
    "encode_digest",
]

log = logging.getLogger(__name__)

DIGEST_TYPE = "imgpipe.batch.finished"
MAX_REASONS = 20  # the most frequent failure reasons; the rest are counted together
MAX_REASON_CHARS = 80
MAX_SOURCE_CHARS = 1024  # an S3 key's length
MAX_DIGEST_BYTES = 16 * 1024  # far under SNS's 256 KB whatever goes in
_COUNTS = ("creators", "completed", "skipped_unchanged", "failed", "images_used", "images_failed")


def build_digest(summary: BatchSummary, summary_url: str | None = None) -> dict[str, Any]:
    """The notice's JSON: what a receiver needs to react, with the summary for the rest."""
    reasons = sorted(summary.failures_by_reason.items(), key=lambda item: (-item[1], item[0]))
    kept = reasons[:MAX_REASONS]
    digest: dict[str, Any] = {
        "type": DIGEST_TYPE,
        "batch_id": summary.batch_id,
        "idempotency_key": summary.batch_id,
        "status": summary.status.value,
        "source": summary.source[:MAX_SOURCE_CHARS],
        "started_at": summary.started_at,
        "finished_at": summary.finished_at,
        "duration_s": summary.duration_s,
        "counts": {name: int(summary.totals.get(name, 0)) for name in _COUNTS},
        "failure_reasons": {reason[:MAX_REASON_CHARS]: count for reason, count in kept},
        "failure_reasons_omitted": sum(count for _, count in reasons[MAX_REASONS:]),
        "summary_key": summary.summary_key,
    }
    if summary_url:
        digest["summary_url"] = summary_url
    return digest


def encode_digest(digest: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are signed and sent."""
    body = json.dumps(digest, ensure_ascii=False, separators=(",", ":")).encode()
    if len(body) > MAX_DIGEST_BYTES:  # cannot happen with the caps above; never send it
        raise ValueError(f"notice digest of {len(body)} bytes exceeds {MAX_DIGEST_BYTES}")
    return body


@dataclass
class NoticeRecord:
    """What ``<summary>.notice.json`` holds once the notice was sent (or not)."""

    batch_id: str
    summary_key: str
    state: str  # "sending" while the writer works, then "done"
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [d for d in self.deliveries if d["status"] != "sent"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BatchNotices:
    """Sends a finished batch's digest on every configured channel and records how it went."""

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        outputs: ObjectStore,
        *,
        presign_seconds: int = 0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.notifiers = list(notifiers)
        self.outputs = outputs
        self.presign_seconds = presign_seconds
        self.clock = clock

    def announce(self, summary: BatchSummary) -> NoticeRecord | None:
        """Send the notice of ``summary`` once; None when no channel is configured or
        the notice of this batch was claimed before (it is someone else's to send)."""
        if not self.notifiers:
            return None
        # Beside the summary, under the batch's output prefix when it has one.
        key = (
            summary.summary_key.removesuffix(".json") + ".notice.json"
            if summary.summary_key
            else notice_key(summary.batch_id)
        )
        record = NoticeRecord(summary.batch_id, summary.summary_key, "sending")
        if not self._claim(key, record):
            return None
        body = encode_digest(build_digest(summary, self._link(summary.summary_key)))
        for notifier in self.notifiers:
            delivery = self._deliver(notifier, body, summary.batch_id)
            record.deliveries.append(self._entry(notifier.channel, delivery))
            if delivery.sent:
                log.info("batch %s: notice sent by %s", summary.batch_id, notifier.channel)
            else:
                log.warning("batch %s: %s", summary.batch_id, delivery.error)
        record.state = "done"
        self._write(key, record, if_absent=False)
        return record

    def _claim(self, key: str, record: NoticeRecord) -> bool:
        try:
            self._write(key, record, if_absent=True, quiet=False)
        except KeyCollisionError:
            log.info("batch %s: notice already claimed; not sent again", record.batch_id)
            return False
        except StorageError as exc:
            # The summary claim already made us its only writer: send rather than lose it.
            log.warning("batch %s: notice claim not recorded (%s); sending", record.batch_id, exc)
        return True

    def _write(
        self, key: str, record: NoticeRecord, *, if_absent: bool, quiet: bool = True
    ) -> None:
        data = json.dumps(record.to_dict(), ensure_ascii=False, indent=2).encode()
        try:
            self.outputs.put(key, data, content_type="application/json", if_absent=if_absent)
        except StorageError as exc:
            if not quiet or isinstance(exc, KeyCollisionError):
                raise
            log.warning(
                "batch %s: notice outcome not recorded at %s: %s", record.batch_id, key, exc
            )

    def _link(self, summary_key: str) -> str | None:
        if self.presign_seconds <= 0:
            return None
        try:
            return self.outputs.url_for(summary_key, expires_in=self.presign_seconds)
        except StorageError as exc:
            log.warning("summary link left out of the notice: %s", exc)
            return None

    @staticmethod
    def _deliver(notifier: Notifier, body: bytes, batch_id: str) -> Delivery:
        try:
            return notifier.send(body, idempotency_key=batch_id)
        except Exception as exc:  # an adapter's bug must not fail a finished batch either
            log.exception("batch %s: the %s notifier raised", batch_id, notifier.channel)
            return Delivery(False, attempts=0, error=f"{notifier.channel}: {exc!r}")

    def _entry(self, channel: str, delivery: Delivery) -> dict[str, Any]:
        return {
            "channel": channel,
            "status": "sent" if delivery.sent else "failed",
            "attempts": delivery.attempts,
            "status_code": delivery.status_code,
            "error": delivery.error,
            "message_id": delivery.message_id,
            "at": self.clock().isoformat(timespec="seconds"),
        }
