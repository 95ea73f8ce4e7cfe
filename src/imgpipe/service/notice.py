"""The batch completion notice: a short digest of the summary, sent once per finished batch.

:meth:`BatchLedger.finalize` calls :meth:`BatchNotices.announce` right after it wrote
the summary, so only the summary's writer sends, whichever engine ran the batch
(the local runner, a queue worker, the sweep). Before sending, the writer also
claims ``<summary>.notice.json`` with a put-if-absent: even a writer whose summary
claim had expired (and whose summary was written twice) cannot notify twice.

The claim is a lease, like a creator's: it names its owner and an expiry, and keeps
the digest it sends. A sender that dies mid-send (kill -9, a Lambda timeout) leaves
it ``sending``; :meth:`BatchNotices.resume` (the AWS sweep; a local ``imgpipe run``
or ``status``, which can prove the process gone) takes over an expired claim and
sends the same digest again, with the same ``Idempotency-Key``. One taker per
attempt: each takeover first writes ``<summary>.notice.take-<attempt>.json`` with a
put-if-absent. So delivery is at least once, and receivers drop repeats by key.

The outcome replaces the claim in that object; the summary is never rewritten. A
notice that fails is recorded and logged; it never fails the batch::

    notices = BatchNotices([webhook], outputs, presign_seconds=3600)
    record = notices.announce(summary)     # None when no channel is configured
    record.failed                          # deliveries that did not go out
    notices.resume("b1", summary_key)      # a dead sender's notice, sent again (or None)

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
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from imgpipe.domain.keys import notice_key, notice_takeover_key
from imgpipe.errors import KeyCollisionError, StorageError
from imgpipe.ports import Delivery, Notifier, ObjectStore
from imgpipe.service.owners import local_owner
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
    state: str  # "sending" while the sender works, then "done"
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    owner: str = ""  # the sender, host:pid:token
    lease_expires: float = 0.0  # epoch seconds; "sending" after this: its sender died
    attempt: int = 1  # 1: the summary's writer; one more for each takeover
    digest: dict[str, Any] = field(default_factory=dict)  # what goes out, less the link

    @classmethod
    def from_dict(cls, data: Any) -> NoticeRecord:
        """The stored record; ValueError when it is not one (a takeover leaves it be)."""
        if not isinstance(data, dict):
            raise ValueError("a notice record is a JSON object")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{name: value for name, value in data.items() if name in known})
        except TypeError as exc:
            raise ValueError(f"not a notice record: {exc}") from exc

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [d for d in self.deliveries if d["status"] != "sent"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BatchNotices:
    """Sends a finished batch's digest on every configured channel and records how it went.

    ``lease_seconds``: how long a sender's claim lives; it must outlast the slowest
    send (every webhook attempt timing out), or a live sender is taken over and the
    notice goes out twice (harmless to a receiver that drops repeats, but noise).
    """

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        outputs: ObjectStore,
        *,
        presign_seconds: int = 0,
        lease_seconds: float = 300.0,
        owner: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.notifiers = list(notifiers)
        self.outputs = outputs
        self.presign_seconds = presign_seconds
        self.lease_seconds = lease_seconds
        self.owner = owner or local_owner()
        self.clock = clock

    def announce(self, summary: BatchSummary) -> NoticeRecord | None:
        """Send the notice of ``summary`` once; None when no channel is configured or
        the notice of this batch was claimed before (it is someone else's to send)."""
        if not self.notifiers:
            return None
        key = self.key_of(summary.batch_id, summary.summary_key)
        record = NoticeRecord(
            summary.batch_id,
            summary.summary_key,
            "sending",
            owner=self.owner,
            lease_expires=self.clock().timestamp() + self.lease_seconds,
            digest=build_digest(summary),
        )
        if not self._claim(key, record):
            return None
        return self._send(key, record)

    def resume(
        self,
        batch_id: str,
        summary_key: str,
        *,
        now: float | None = None,
        owner_is_gone: bool = False,
    ) -> NoticeRecord | None:
        """Send again the notice whose sender died mid-send; None when there is none to
        take over (no claim, done, a live claim, or another taker won this attempt).

        A claim is dead once its lease ended (``now``, epoch seconds), or at once with
        ``owner_is_gone`` (the local engine: the batch's lock is free, so no process
        of this machine is sending it).
        """
        if not self.notifiers:
            return None
        key = self.key_of(batch_id, summary_key)
        now = self.clock().timestamp() if now is None else now
        dead = self._dead_claim(key, now, owner_is_gone)
        if dead is None:
            return None
        record = replace(
            dead,
            owner=self.owner,
            lease_expires=now + self.lease_seconds,
            attempt=dead.attempt + 1,
            deliveries=[],
        )
        marker = json.dumps({"owner": self.owner, "taken_from": dead.owner}).encode()
        try:
            self.outputs.put(
                notice_takeover_key(key, record.attempt),
                marker,
                content_type="application/json",
                if_absent=True,
            )
        except KeyCollisionError:
            log.info("batch %s: another process took the notice over", batch_id)
            return None
        except StorageError as exc:
            # Unlike the first claim, nothing makes us the only taker: the next try sends.
            log.warning("batch %s: notice not taken over: %s", batch_id, exc)
            return None
        # info: the caller reports it (the sweep's counts, one CLI line)
        log.info(
            "batch %s: the notice's sender %s died mid-send; sending it again (attempt %d)",
            batch_id,
            dead.owner or "(unknown)",
            record.attempt,
        )
        self._write(key, record, if_absent=False)  # our lease, so no one takes us over
        return self._send(key, record)

    @staticmethod
    def key_of(batch_id: str, summary_key: str) -> str:
        """Beside the summary, under the batch's output prefix when it has one."""
        if summary_key:
            return summary_key.removesuffix(".json") + ".notice.json"
        return notice_key(batch_id)

    def _dead_claim(self, key: str, now: float, owner_is_gone: bool) -> NoticeRecord | None:
        try:
            data = self.outputs.get(key)
        except StorageError:
            return None  # never claimed: no notice configured then, or none owed
        try:
            record = NoticeRecord.from_dict(json.loads(data))
        except ValueError as exc:
            log.warning("notice record %s is unreadable, left as it is: %s", key, exc)
            return None
        if record.state != "sending" or (record.lease_expires > now and not owner_is_gone):
            return None
        if not record.digest:  # claimed by a version that did not keep what it sent
            log.warning("batch %s: notice stuck in %s without its digest", record.batch_id, key)
            return None
        return record

    def _send(self, key: str, record: NoticeRecord) -> NoticeRecord:
        link = self._link(record.summary_key)
        digest = record.digest | {"summary_url": link} if link else record.digest
        body = encode_digest(digest)
        for notifier in self.notifiers:
            delivery = self._deliver(notifier, body, record.batch_id)
            record.deliveries.append(self._entry(notifier.channel, delivery))
            if delivery.sent:
                log.info("batch %s: notice sent by %s", record.batch_id, notifier.channel)
            else:
                log.warning("batch %s: %s", record.batch_id, delivery.error)
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
