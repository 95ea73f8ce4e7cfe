"""The completion notice on in-memory ports: digest, caps, claim, outcome, the ledger hook.

Real channels are tested elsewhere (the webhook against a receiver on 127.0.0.1 in
tests/integration, SNS on moto in tests/e2e); here a recording notifier stands in,
so the rules of the service are seen alone: one notice per finished batch, whoever
finishes it and however often, and a failed notice never fails the batch.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from imgpipe.adapters.memory import InMemoryObjectStore
from imgpipe.domain.keys import notice_key, summary_key
from imgpipe.domain.records import BatchStatus
from imgpipe.errors import StorageError
from imgpipe.ports import Delivery, StoredObject
from imgpipe.service.notice import (
    DIGEST_TYPE,
    MAX_DIGEST_BYTES,
    MAX_REASONS,
    BatchNotices,
    build_digest,
    encode_digest,
)
from imgpipe.service.summary import BatchSummary, SummaryWriter
from tests.unit.test_queue_engine import COVERS, ROWS, CountingStore, Engine, engine

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


class Recorder:
    """A channel that keeps what it was sent and answers ``delivery`` (or raises)."""

    def __init__(self, channel: str = "webhook", delivery: Delivery | None = None) -> None:
        self.channel = channel
        self.delivery = delivery or Delivery(True, attempts=1, status_code=202)
        self.sent: list[tuple[dict[str, Any], str]] = []
        self.raises: Exception | None = None

    def send(self, body: bytes, *, idempotency_key: str) -> Delivery:
        self.sent.append((json.loads(body), idempotency_key))
        if self.raises is not None:
            raise self.raises
        return self.delivery


class LinkingStore(InMemoryObjectStore):
    """Remembers the expiry a link was asked for (S3 presigns with it)."""

    def __init__(self) -> None:
        super().__init__()
        self.expiries: list[int | None] = []

    def url_for(self, key: str, *, expires_in: int | None = None) -> str:
        self.expiries.append(expires_in)
        return f"https://signed.example/{key}?X-Amz-Expires={expires_in}"


class BrokenStore(InMemoryObjectStore):
    def put(self, key: str, data: bytes, **kwargs: Any) -> StoredObject:
        raise StorageError(f"cannot write {key}: disk full")


def summary(batch_id: str = "b1", reasons: dict[str, int] | None = None) -> BatchSummary:
    totals = {"creators": 3, "completed": 2, "skipped_unchanged": 0, "failed": 1}
    totals |= {"images_used": 9, "images_failed": 4, "rows_read": 14, "duplicates": 0}
    return BatchSummary(
        batch_id=batch_id,
        source="csv-files/spring.csv",
        started_at="2026-11-23T09:59:00+00:00",
        finished_at="2026-11-23T10:00:00+00:00",
        duration_s=60.0,
        status=BatchStatus.COMPLETED_WITH_FAILURES,
        totals=totals,
        failures_by_reason=reasons if reasons is not None else {"http_404": 3, "timeout": 1},
        failed_urls=[{"url": "https://img.example/x.jpg", "reason": "http_404"}] * 3,
        row_problems=[],
        creators=[{"creator": "Ann"}],
        settings={"rows": 5},
        images_per_second=0.15,
        peak_memory_percent=12.0,
        summary_key=summary_key(batch_id),
    )


def test_the_digest_carries_what_a_receiver_acts_on() -> None:
    digest = build_digest(summary(), "https://signed.example/s")
    assert digest == {
        "type": DIGEST_TYPE,
        "batch_id": "b1",
        "idempotency_key": "b1",
        "status": "completed_with_failures",
        "source": "csv-files/spring.csv",
        "started_at": "2026-11-23T09:59:00+00:00",
        "finished_at": "2026-11-23T10:00:00+00:00",
        "duration_s": 60.0,
        "counts": {
            "creators": 3,
            "completed": 2,
            "skipped_unchanged": 0,
            "failed": 1,
            "images_used": 9,
            "images_failed": 4,
        },
        "failure_reasons": {"http_404": 3, "timeout": 1},
        "failure_reasons_omitted": 0,
        "summary_key": "results/processing-summaries/b1.json",
        "summary_url": "https://signed.example/s",
    }
    assert "summary_url" not in build_digest(summary())
    assert "failed_urls" not in digest and "creators" not in digest  # those stay in the summary


def test_many_reasons_are_capped_and_the_digest_stays_small() -> None:
    reasons = {f"http_{400 + n}_{'x' * 300}": 1000 - n for n in range(500)}
    digest = build_digest(summary(reasons=reasons))
    kept = digest["failure_reasons"]
    assert len(kept) == MAX_REASONS
    assert max(map(len, kept)) <= 80
    assert list(kept.values()) == sorted(kept.values(), reverse=True)  # the most frequent
    assert digest["failure_reasons_omitted"] == sum(range(1000 - 499, 1000 - MAX_REASONS + 1))
    assert len(encode_digest(digest)) < MAX_DIGEST_BYTES < 256 * 1024


def test_one_notice_on_every_channel_and_its_outcome_beside_the_summary() -> None:
    outputs = InMemoryObjectStore()
    webhook = Recorder("webhook")
    failed = Delivery(False, attempts=1, status_code=404, error="notice to SNS topic x failed")
    sns = Recorder("sns", failed)
    notices = BatchNotices([webhook, sns], outputs, clock=lambda: NOW)
    record = notices.announce(summary())
    assert record is not None
    assert webhook.sent == sns.sent == [(build_digest(summary()), "b1")]
    stored = json.loads(outputs.get(notice_key("b1")))
    assert stored == record.to_dict()
    assert stored["state"] == "done" and stored["summary_key"] == summary_key("b1")
    assert stored["deliveries"] == [
        {"channel": "webhook", "status": "sent", "attempts": 1, "status_code": 202,
         "error": None, "message_id": None, "at": "2026-11-23T10:00:00+00:00"},
        {"channel": "sns", "status": "failed", "attempts": 1, "status_code": 404,
         "error": "notice to SNS topic x failed", "message_id": None,
         "at": "2026-11-23T10:00:00+00:00"},
    ]  # fmt: skip
    assert [d["channel"] for d in record.failed] == ["sns"]


def test_a_notice_claimed_before_is_not_sent_again() -> None:
    outputs = InMemoryObjectStore()
    channel = Recorder()
    notices = BatchNotices([channel], outputs)
    assert notices.announce(summary()) is not None
    assert notices.announce(summary()) is None  # a second writer of the same summary
    assert len(channel.sent) == 1


def test_no_channel_no_notice_object() -> None:
    outputs = InMemoryObjectStore()
    assert BatchNotices([], outputs).announce(summary()) is None
    assert list(outputs.list()) == []


def test_a_channel_that_raises_is_a_failed_delivery() -> None:
    channel = Recorder()
    channel.raises = RuntimeError("adapter bug")
    record = BatchNotices([channel], InMemoryObjectStore()).announce(summary())
    assert record is not None
    (entry,) = record.failed
    assert entry["error"] == "webhook: RuntimeError('adapter bug')" and entry["attempts"] == 0


def test_a_store_that_cannot_record_still_sends_the_notice() -> None:
    channel = Recorder()
    record = BatchNotices([channel], BrokenStore()).announce(summary())
    assert record is not None and record.failed == [] and len(channel.sent) == 1


def test_the_link_is_presigned_only_when_configured() -> None:
    outputs = LinkingStore()
    channel = Recorder()
    BatchNotices([channel], outputs).announce(summary("b1"))
    BatchNotices([channel], outputs, presign_seconds=900).announce(summary("b2"))
    assert "summary_url" not in channel.sent[0][0]
    assert channel.sent[1][0]["summary_url"] == (
        "https://signed.example/results/processing-summaries/b2.json?X-Amz-Expires=900"
    )
    asked = [e for e in outputs.expiries if e is not None]  # (put asks for plain URLs too)
    assert asked == [900]


# -- through the ledger: the summary's writer sends ----------------------------------------


def test_the_queue_engine_sends_one_notice_however_often_messages_come() -> None:
    e = engine(COVERS)
    channel = Recorder()
    e.ledger.notices = BatchNotices([channel], e.outputs)
    batch_id = e.plan(ROWS)
    messages = e.messages()
    for message in messages + messages:  # each delivered twice
        e.process(message)
    assert e.fanout.finalize(batch_id) is None
    assert e.fanout.sweep()["finalized"] == 0
    assert [(d["batch_id"], key) for d, key in channel.sent] == [(batch_id, batch_id)]
    digest = channel.sent[0][0]
    assert (digest["counts"]["completed"], digest["counts"]["failed"]) == (2, 1)
    assert digest["failure_reasons"] == {"http_404": 1}
    # the summary was written once and never rewritten for the notice
    assert isinstance(e.outputs, CountingStore)
    assert e.outputs.puts[summary_key(batch_id)] == 1
    assert "notice" not in json.loads(e.outputs.get(summary_key(batch_id)))["extra"]
    assert json.loads(e.outputs.get(notice_key(batch_id)))["deliveries"][0]["status"] == "sent"


def test_a_failed_notice_leaves_the_batch_finished() -> None:
    e = engine(COVERS)
    channel = Recorder(delivery=Delivery(False, attempts=4, status_code=500, error="HTTP 500"))
    e.ledger.notices = BatchNotices([channel], e.outputs)
    batch_id = e.plan(ROWS)
    results = [e.process(m) for m in e.messages()]
    assert len(results) == 3 and len(channel.sent) == 1
    batch = e.state.get_batch(batch_id)
    assert batch is not None and batch.status == BatchStatus.COMPLETED_WITH_FAILURES
    stored = json.loads(e.outputs.get(notice_key(batch_id)))
    assert stored["deliveries"][0] | {"at": None} == {
        "channel": "webhook", "status": "failed", "attempts": 4, "status_code": 500,
        "error": "HTTP 500", "message_id": None, "at": None,
    }  # fmt: skip


@pytest.mark.parametrize("error", [RuntimeError("bug"), StorageError("gone")])
def test_even_a_notices_service_that_raises_does_not_fail_the_finish(error: Exception) -> None:
    e = engine(COVERS)

    class Exploding(BatchNotices):
        def announce(self, summary: BatchSummary, *args: object) -> None:
            raise error

    e.ledger.notices = Exploding([], e.outputs)
    batch_id = e.plan(ROWS)
    for message in e.messages():
        e.process(message)
    batch = e.state.get_batch(batch_id)
    assert batch is not None and batch.summary_key == summary_key(batch_id)


# -- a sender that died mid-send: the claim is a lease, taken over once ---------------------


class Died(BaseException):
    """The process ended between the claim and the outcome (kill -9, a Lambda timeout)."""


def process_with_a_dying_summary_writer(
    e: Engine, monkeypatch: pytest.MonkeyPatch, messages: list[dict[str, Any]]
) -> None:
    """Process ``messages``; the last one, which finishes the batch, dies in the summary."""
    for message in messages[:-1]:
        e.process(message)

    def die(*args: object, **kwargs: object) -> None:
        raise Died

    with monkeypatch.context() as patched:
        patched.setattr(SummaryWriter, "publish", die)
        with pytest.raises(Died):
            e.process(messages[-1])


class Dying(Recorder):
    """A channel whose first send never returns: the sender dies in it."""

    def send(self, body: bytes, *, idempotency_key: str) -> Delivery:
        first = not self.sent
        delivery = super().send(body, idempotency_key=idempotency_key)
        if first:
            raise Died
        return delivery


def died_sending(outputs: InMemoryObjectStore, channel: Recorder, lease: float = 60.0) -> None:
    dying = BatchNotices(
        [channel], outputs, lease_seconds=lease, owner="old:1:x", clock=lambda: NOW
    )
    with pytest.raises(Died):
        dying.announce(summary())


def test_a_dead_senders_claim_keeps_its_owner_expiry_and_digest() -> None:
    outputs = InMemoryObjectStore()
    died_sending(outputs, Dying())
    stored = json.loads(outputs.get(notice_key("b1")))
    assert stored["state"] == "sending" and stored["deliveries"] == []
    assert stored["owner"] == "old:1:x" and stored["attempt"] == 1
    assert stored["lease_expires"] == NOW.timestamp() + 60
    assert stored["digest"] == build_digest(summary())


def test_an_expired_claim_is_sent_again_with_the_same_body_and_key() -> None:
    outputs, channel = InMemoryObjectStore(), Dying()
    died_sending(outputs, channel)
    taker = BatchNotices([channel], outputs, owner="new:2:y", clock=lambda: NOW)
    live = NOW.timestamp() + 59
    assert taker.resume("b1", summary_key("b1"), now=live) is None  # its lease still runs
    assert len(channel.sent) == 1

    record = taker.resume("b1", summary_key("b1"), now=NOW.timestamp() + 61)
    assert record is not None and record.state == "done"
    assert (record.owner, record.attempt) == ("new:2:y", 2)
    assert channel.sent == [(build_digest(summary()), "b1")] * 2  # same digest, same key
    assert json.loads(outputs.get(notice_key("b1"))) == record.to_dict()
    assert [d["status"] for d in record.deliveries] == ["sent"]
    marker = json.loads(outputs.get("results/processing-summaries/b1.notice.take-2.json"))
    assert marker == {"owner": "new:2:y", "taken_from": "old:1:x"}
    # done now: later sweeps and reruns leave it alone
    assert taker.resume("b1", summary_key("b1"), now=NOW.timestamp() + 10_000) is None
    assert len(channel.sent) == 2


def test_an_owner_proven_gone_is_taken_over_before_its_lease_ends() -> None:
    outputs, channel = InMemoryObjectStore(), Dying()
    died_sending(outputs, channel, lease=3600)
    taker = BatchNotices([channel], outputs, clock=lambda: NOW)
    assert taker.resume("b1", summary_key("b1"), now=NOW.timestamp()) is None
    record = taker.resume("b1", summary_key("b1"), now=NOW.timestamp(), owner_is_gone=True)
    assert record is not None and record.state == "done" and len(channel.sent) == 2


class MeetingStore(InMemoryObjectStore):
    """Every reader of the notice record waits for the others: takers that race."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=10)

    def get(self, key: str) -> bytes:
        data = super().get(key)
        if key.endswith(".notice.json"):
            self.barrier.wait()
        return data


def test_takers_that_race_send_once() -> None:
    outputs, channel = MeetingStore(parties=4), Dying()
    died_sending(outputs, channel)
    later = NOW.timestamp() + 61

    def take(n: int) -> object:
        notices = BatchNotices([channel], outputs, owner=f"taker:{n}:z")
        return notices.resume("b1", summary_key("b1"), now=later)

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(take, range(4)))

    # all four read the same dead claim; the create-if-absent marker let one through
    assert sum(outcome is not None for outcome in outcomes) == 1
    assert len(channel.sent) == 2
    assert json.loads(InMemoryObjectStore.get(outputs, notice_key("b1")))["state"] == "done"


def test_a_taker_that_cannot_write_its_marker_does_not_send() -> None:
    outputs, channel = InMemoryObjectStore(), Dying()
    died_sending(outputs, channel)

    class Full(InMemoryObjectStore):
        def put(self, key: str, data: bytes, **kwargs: Any) -> StoredObject:
            raise StorageError(f"cannot write {key}: disk full")

        def get(self, key: str) -> bytes:
            return outputs.get(key)

    taker = BatchNotices([channel], Full())
    assert taker.resume("b1", summary_key("b1"), now=NOW.timestamp() + 61) is None
    assert len(channel.sent) == 1  # not the only taker for sure: the next sweep sends


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        ({"batch_id": "b1", "summary_key": "s", "state": "sending", "deliveries": []}, "old"),
        ({"batch_id": "b1"}, "no state"),
        (["not", "a", "record"], "not an object"),
    ],
)
def test_a_claim_that_cannot_be_resent_is_left_alone(stored: object, why: str) -> None:
    outputs, channel = InMemoryObjectStore(), Recorder()
    outputs.put(notice_key("b1"), json.dumps(stored).encode())
    taker = BatchNotices([channel], outputs)
    assert taker.resume("b1", summary_key("b1"), now=NOW.timestamp() + 10**6) is None, why
    assert channel.sent == [] and json.loads(outputs.get(notice_key("b1"))) == stored


def test_no_claim_and_no_channel_mean_nothing_to_resume() -> None:
    outputs = InMemoryObjectStore()
    assert BatchNotices([Recorder()], outputs).resume("b1", summary_key("b1")) is None
    died_sending(outputs, Dying())
    assert BatchNotices([], outputs).resume("b1", summary_key("b1"), now=10**12) is None


def test_the_sweep_sends_a_dead_senders_notice_once_its_lease_ended() -> None:
    e = engine(COVERS)
    channel = Dying()
    e.ledger.notices = BatchNotices([channel], e.outputs, lease_seconds=60, clock=e.clock)
    batch_id = e.plan(ROWS)
    messages = e.messages()
    for message in messages[:-1]:
        e.process(message)
    with pytest.raises(Died):  # the last finish writes the summary, claims, and dies
        e.process(messages[-1])
    assert json.loads(e.outputs.get(notice_key(batch_id)))["state"] == "sending"

    assert e.fanout.sweep()["notices_resent"] == 0  # its lease still runs
    e.clock.advance(61)
    assert e.fanout.sweep()["notices_resent"] == 1
    assert e.fanout.sweep()["notices_resent"] == 0
    assert [key for _, key in channel.sent] == [batch_id, batch_id]
    stored = json.loads(e.outputs.get(notice_key(batch_id)))
    assert (stored["state"], stored["attempt"]) == ("done", 2)
