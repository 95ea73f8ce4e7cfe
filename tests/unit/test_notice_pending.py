"""The notice is claimed before the summary is written: no crash leaves a summary whose
notice nobody owes.

A writer killed after the summary and before sending leaves a ``pending`` claim; the
sweep (on AWS, once the claim's lease ends with the writer's summary claim) or a
local rerun (at once) sends the digest rebuilt from the summary, once. A writer
killed before the summary leaves a ``pending`` claim too, and whoever takes the
summary over sends at once. In-memory ports; the real kill -9 runs in tests/e2e.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from imgpipe.adapters.memory import InMemoryObjectStore
from imgpipe.domain.keys import notice_key, summary_key
from imgpipe.errors import StorageError
from imgpipe.ports import StoredObject
from imgpipe.service import closing
from imgpipe.service.notice import (
    BatchNotices,
    Reservation,
    build_digest,
    digest_of_stored,
)
from imgpipe.service.summary import BatchSummary
from tests.unit.test_notice import NOW, Died, Recorder, process_with_a_dying_summary_writer, summary
from tests.unit.test_queue_engine import COVERS, NOTHING_SWEPT, ROWS, Engine, engine

LEASE = closing.SUMMARY_LEASE_SECONDS


def test_a_summary_read_back_gives_the_digest_its_writer_sends() -> None:
    written = summary(reasons={f"r{n}": n for n in range(40)})
    stored = json.loads(json.dumps(written.to_dict()))
    assert digest_of_stored(stored) == build_digest(written)
    with pytest.raises(ValueError, match="not a batch summary"):
        digest_of_stored({"batch_id": "b1"})
    with pytest.raises(ValueError, match="JSON object"):
        digest_of_stored(["b1"])


class OrderedStore(InMemoryObjectStore):
    """Keeps the order of every write."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []

    def put(self, key: str, data: bytes, **kwargs: Any) -> StoredObject:
        self.order.append(key)
        return super().put(key, data, **kwargs)


def notified(e: Engine, channel: Recorder) -> BatchNotices:
    e.ledger.notices = BatchNotices([channel], e.outputs, lease_seconds=60, clock=e.clock)
    return e.ledger.notices


def test_the_notice_is_claimed_pending_before_the_summary_is_written() -> None:
    e = engine(COVERS)
    outputs = OrderedStore()
    e.ledger.outputs = outputs
    channel = Recorder()
    e.ledger.notices = BatchNotices([channel], outputs, clock=e.clock)
    batch_id = e.plan(ROWS)
    for message in e.messages():
        e.process(message)
    notice, written = notice_key(batch_id), summary_key(batch_id)
    assert outputs.order.index(notice) < outputs.order.index(written)
    assert outputs.order.count(notice) == 3  # pending, sending, done
    assert len(channel.sent) == 1


def die_after_writing_the_summary(e: Engine, monkeypatch: pytest.MonkeyPatch) -> str:
    """Plan and work every creator; the last finish writes the summary and dies before
    its notice goes out (what a kill -9 there would leave)."""

    def die(self: BatchNotices, summary: BatchSummary, *args: object) -> None:
        raise Died

    batch_id = e.plan(ROWS)
    messages = e.messages()
    for message in messages[:-1]:
        e.process(message)
    with monkeypatch.context() as patched:
        patched.setattr(BatchNotices, "announce", die)
        # the ledger guards the notice with `except Exception`; a kill is no exception
        with pytest.raises(Died):
            e.process(messages[-1])
    return batch_id


def test_a_writer_dead_after_the_summary_is_sent_for_by_the_sweep_once_its_lease_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    e = engine(COVERS)
    channel = Recorder()
    notified(e, channel)
    batch_id = die_after_writing_the_summary(e, monkeypatch)
    claim = json.loads(e.outputs.get(notice_key(batch_id)))
    assert (claim["state"], claim["digest"], claim["attempt"]) == ("pending", {}, 1)
    assert claim["lease_expires"] == pytest.approx(e.clock().timestamp() + LEASE, abs=1)
    assert e.state.get_batch(batch_id).summary_key == summary_key(batch_id)  # type: ignore[union-attr]

    assert e.fanout.sweep()["notices_resent"] == 0  # the writer may live: its lease runs
    e.clock.advance(LEASE + 1)
    assert e.fanout.sweep()["notices_resent"] == 1
    assert e.fanout.sweep()["notices_resent"] == 0
    stored_summary = json.loads(e.outputs.get(summary_key(batch_id)))
    assert channel.sent == [(digest_of_stored(stored_summary), batch_id)]
    assert channel.sent[0][0]["counts"]["completed"] == 2
    done = json.loads(e.outputs.get(notice_key(batch_id)))
    assert (done["state"], done["attempt"]) == ("done", 2)
    assert done["digest"] == digest_of_stored(stored_summary)


def test_a_local_takeover_sends_a_pending_claim_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    e = engine(COVERS)
    channel = Recorder()
    notified(e, channel)
    batch_id = die_after_writing_the_summary(e, monkeypatch)
    batch = e.state.get_batch(batch_id)
    assert batch is not None
    assert e.ledger.resume_notice(batch) is False  # lease running, owner not proven gone
    assert e.ledger.resume_notice(batch, owner_is_gone=True) is True
    assert e.ledger.resume_notice(batch, owner_is_gone=True) is False  # done now
    assert [key for _, key in channel.sent] == [batch_id]


def test_a_writer_dead_before_the_summary_leaves_it_to_the_summarys_taker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    e = engine(COVERS)
    channel = Recorder()
    notices = notified(e, channel)
    batch_id = e.plan(ROWS)
    messages = e.messages()
    process_with_a_dying_summary_writer(e, monkeypatch, messages)
    assert json.loads(e.outputs.get(notice_key(batch_id)))["state"] == "pending"
    # no summary yet: nothing to send, however dead the claim
    assert notices.resume(batch_id, summary_key(batch_id), owner_is_gone=True) is None
    assert json.loads(e.outputs.get(notice_key(batch_id)))["state"] == "pending"

    e.clock.advance(LEASE + 1)  # the dead writer's summary claim (and notice claim) ended
    counts = e.fanout.sweep()
    assert (counts["finalized"], counts["notices_resent"]) == (1, 0)  # sent while finalising
    # its notice sent: the batch is settled, and no later sweep visits it
    assert e.fanout.sweep() == {**NOTHING_SWEPT, "settled": 1}
    assert e.fanout.sweep() == NOTHING_SWEPT
    assert [key for _, key in channel.sent] == [batch_id]
    done = json.loads(e.outputs.get(notice_key(batch_id)))
    assert (done["state"], done["attempt"]) == ("done", 2)


def test_a_writer_whose_claim_was_taken_over_meanwhile_does_not_send() -> None:
    outputs, channel = InMemoryObjectStore(), Recorder()
    slow = BatchNotices([channel], outputs, owner="slow:1:a", clock=lambda: NOW)
    key = summary_key("b1")
    assert slow.reserve("b1", key, lease_expires=NOW.timestamp() + 60) is Reservation.HELD
    outputs.put(key, json.dumps(summary().to_dict()).encode())
    taker = BatchNotices([channel], outputs, owner="taker:2:b")
    assert taker.reserve("b1", key, lease_expires=0) is Reservation.TAKEN
    assert taker.resume("b1", key, now=NOW.timestamp() + 61) is not None
    assert slow.announce(summary(), Reservation.HELD) is None  # the taker sent it
    assert len(channel.sent) == 1


class FailingSummaryStore(InMemoryObjectStore):
    """Refuses the summary's first write (a store outage), then recovers."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []

    def put(self, key: str, data: bytes, **kwargs: Any) -> StoredObject:
        if not self.refused and key.startswith("results/processing-summaries/"):
            if ".notice" not in key:
                self.refused.append(key)
                raise StorageError(f"cannot write {key}: store unavailable")
        return super().put(key, data, **kwargs)


def test_a_summary_that_failed_gives_its_notice_claim_back() -> None:
    e = engine(COVERS)
    outputs = FailingSummaryStore()
    e.ledger.outputs = outputs
    channel = Recorder()
    e.ledger.notices = BatchNotices([channel], outputs, clock=e.clock)
    batch_id = e.plan(ROWS)
    messages = e.messages()
    for message in messages[:-1]:
        e.process(message)
    with pytest.raises(StorageError, match="store unavailable"):
        e.process(messages[-1])
    assert outputs.refused == [summary_key(batch_id)]
    assert not outputs.exists(notice_key(batch_id))  # given back with the summary claim
    # the next try claims both afresh and sends at once: no lease to wait out
    assert e.fanout.finalize(batch_id) is not None
    assert [key for _, key in channel.sent] == [batch_id]
