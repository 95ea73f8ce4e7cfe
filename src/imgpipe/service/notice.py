"""The batch completion notice: a short digest of the summary, sent once per finished batch.

Only the summary's writer sends, whichever engine ran the batch (the local runner,
a queue worker, the sweep). It claims ``<summary>.notice.json`` with a put-if-absent
*before* it writes the summary (:meth:`BatchNotices.reserve`, state ``pending``), and
sends once the summary is written (:meth:`BatchNotices.announce`, state ``sending``).
So there is no moment at which the summary exists and no record says its notice is
owed: a writer killed between the two leaves a ``pending`` claim, and a second
writer (whose summary claim may have expired) finds the claim taken and cannot
notify twice.

The claim is a lease, like a creator's: it names its owner and an expiry, and from
``sending`` on keeps the digest it sends. A writer that dies before it sent (kill
-9, a Lambda timeout) leaves it ``pending`` or ``sending``; :meth:`BatchNotices.resume`
(the writer that takes the summary over; the AWS sweep; a local ``imgpipe run`` or
``status``, which can prove the process gone) takes over an expired claim whose
summary exists and sends its digest (rebuilt from the summary when the claim is
still ``pending``), with the batch id as ``Idempotency-Key``. One taker per attempt:
each takeover first writes ``<summary>.notice.take-<attempt>.json`` with a
put-if-absent. So the claim is made once, delivery is at least once, and receivers
drop repeats by key.

The outcome replaces the claim in that object; the summary is never rewritten. What
goes out is built in :mod:`.notice_digest` (re-exported here). A notice that fails is
recorded and logged; it never fails the batch::

    notices = BatchNotices([webhook], outputs, presign_seconds=3600)
    held = notices.reserve("b1", summary_key, lease_expires=now + 900)  # before the summary
    record = notices.announce(summary, held)  # None: no channel, or not ours to send
    record.failed                          # deliveries that did not go out
    notices.resume("b1", summary_key)      # a dead sender's notice, sent (or None)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from imgpipe.domain.keys import notice_key, notice_takeover_key
from imgpipe.errors import KeyCollisionError, StorageError
from imgpipe.ports import Delivery
from imgpipe.service.notice_digest import (
    DIGEST_TYPE,
    MAX_DIGEST_BYTES,
    MAX_REASONS,
    build_digest,
    digest_of_stored,
    encode_digest,
)
from imgpipe.service.owners import local_owner

if TYPE_CHECKING:
    from imgpipe.ports import Notifier, ObjectStore
    from imgpipe.service.summary import BatchSummary

__all__ = [
    "DIGEST_TYPE",
    "MAX_DIGEST_BYTES",
    "MAX_REASONS",
    "BatchNotices",
    "NoticeRecord",
    "Reservation",
    "build_digest",
    "digest_of_stored",
    "encode_digest",
]

log = logging.getLogger(__name__)


class Reservation(Enum):
    """What :meth:`BatchNotices.reserve` got, before the summary was written."""

    HELD = "held"  # ours: sent by :meth:`BatchNotices.announce` once the summary is written
    TAKEN = "taken"  # an earlier writer's claim: :meth:`BatchNotices.resume` decides
    UNRECORDED = "unrecorded"  # the store refused the claim: announce claims it then
    NONE = "none"  # no channel configured


@dataclass
class NoticeRecord:
    """What ``<summary>.notice.json`` holds: the claim, then how the notice went."""

    batch_id: str
    summary_key: str
    # "pending" from before the summary is written, "sending" while the sender
    # works, then "done"
    state: str
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    owner: str = ""  # the sender, host:pid:token
    lease_expires: float = 0.0  # epoch seconds; not "done" after this: its sender died
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

    def reserve(self, batch_id: str, summary_key: str, *, lease_expires: float) -> Reservation:
        """Claim the notice (``pending``) before writing the summary at ``summary_key``.

        ``lease_expires`` (epoch seconds) should end with the writer's summary claim:
        a writer that takes the summary over then finds this claim dead and sends.
        """
        if not self.notifiers:
            return Reservation.NONE
        record = NoticeRecord(
            batch_id, summary_key, "pending", owner=self.owner, lease_expires=lease_expires
        )
        try:
            self._write(self.key_of(batch_id, summary_key), record, if_absent=True, quiet=False)
        except KeyCollisionError:
            log.info("batch %s: notice claimed by an earlier summary writer", batch_id)
            return Reservation.TAKEN
        except StorageError as exc:
            log.warning("batch %s: notice not claimed before the summary: %s", batch_id, exc)
            return Reservation.UNRECORDED
        return Reservation.HELD

    def release(self, batch_id: str, summary_key: str) -> None:
        """Give back our ``pending`` claim: the summary was not written after all (a
        store error), so the next writer claims the notice afresh, without a lease."""
        key = self.key_of(batch_id, summary_key)
        try:
            if self._still_ours(key, batch_id):
                self.outputs.delete(key)
        except StorageError as exc:  # left pending: sent once its lease has ended
            log.warning("batch %s: notice claim not given back: %s", batch_id, exc)

    def announce(
        self, summary: BatchSummary, reservation: Reservation = Reservation.UNRECORDED
    ) -> NoticeRecord | None:
        """Send the notice of ``summary`` once; None when no channel is configured or
        the notice is not ours to send (claimed by another, or taken over meanwhile).

        ``reservation``: what :meth:`reserve` got before the summary was written;
        without one, the notice is claimed now, with a put-if-absent.
        """
        if not self.notifiers or reservation in (Reservation.TAKEN, Reservation.NONE):
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
        if reservation is Reservation.HELD:
            if not self._still_ours(key, summary.batch_id):
                return None
            self._write(key, record, if_absent=False)  # our claim: sending, with its digest
        elif not self._claim(key, record):
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
        """Send the notice whose sender died before it went out (``pending``: after or
        before writing the summary; ``sending``: mid-send); None when there is none to
        take over (no claim, done, a live claim, a ``pending`` one whose summary is not
        written yet, or another taker won this attempt).

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
        digest = dead.digest or self._stored_digest(summary_key)
        if digest is None:
            return None
        record = replace(
            dead,
            state="sending",
            digest=digest,
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
            "batch %s: the notice's sender %s died %s; sending it (attempt %d)",
            batch_id,
            dead.owner or "(unknown)",
            "mid-send" if dead.state == "sending" else "before sending",
            record.attempt,
        )
        self._write(key, record, if_absent=False)  # our lease, so no one takes us over
        return self._send(key, record)

    def owed_until(self, batch_id: str, summary_key: str) -> float | None:
        """Claimed, not sent (``pending``, ``sending``): when the claim's lease ends, after
        which :meth:`resume` sends it; None when nothing is owed. A store error counts as
        owed now (0.0), an unreadable claim as not owed."""
        key = self.key_of(batch_id, summary_key)
        try:
            if not self.notifiers or not self.outputs.exists(key):
                return None
            data = self.outputs.get(key)
        except StorageError:
            return 0.0
        try:
            record = NoticeRecord.from_dict(json.loads(data))
        except ValueError:
            return None
        return record.lease_expires if record.state in ("pending", "sending") else None

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
        if record.state not in ("pending", "sending"):
            return None
        if record.lease_expires > now and not owner_is_gone:
            return None
        if record.state == "sending" and not record.digest:  # from a version that kept none
            log.warning("batch %s: notice stuck in %s without its digest", record.batch_id, key)
            return None
        return record

    def _stored_digest(self, summary_key: str) -> dict[str, Any] | None:
        """The digest of the written summary; None while it is not written (a pending
        claim's writer died before it: whoever writes the summary sends)."""
        try:
            data = self.outputs.get(summary_key)
        except StorageError:
            log.info("notice pending until its summary %s is written", summary_key)
            return None
        try:
            return digest_of_stored(json.loads(data))
        except ValueError as exc:
            log.warning("summary %s is unreadable; its notice left pending: %s", summary_key, exc)
            return None

    def _still_ours(self, key: str, batch_id: str) -> bool:
        """Our pending claim was not taken over while we wrote the summary (we outlived
        our lease): then the taker sends, not us."""
        try:
            record = NoticeRecord.from_dict(json.loads(self.outputs.get(key)))
        except StorageError as exc:  # our summary claim makes us its writer: send
            log.warning("batch %s: notice claim unreadable (%s); sending", batch_id, exc)
            return True
        except ValueError:
            return True  # not a record: no one else's claim either
        if record.state == "pending" and record.owner == self.owner:
            return True
        log.info("batch %s: notice taken over by %s; not sent by us", batch_id, record.owner)
        return False

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
