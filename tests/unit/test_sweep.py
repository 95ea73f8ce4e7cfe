"""The sweep looks at everything that may need it and bounds what it does per run.

On the in-memory engine of ``test_queue_engine`` (the state store is the fake; the
same sweep over DynamoDB on moto is in ``tests/integration/aws/test_sweep_dynamodb.py``): a dead
claim behind more than a thousand live ones is re-queued, the oldest of 150 batches
is finalised, and a budget leaves the rest to the next run and says so.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from imgpipe.domain.records import BatchRecord, CreatorRecord, CreatorStatus
from imgpipe.service import closing
from imgpipe.service.sweep import SweepBudget
from tests.unit.test_notice import process_with_a_dying_summary_writer
from tests.unit.test_queue_engine import COVERS, NOTHING_SWEPT, ROWS, Engine, dead_claim, engine

PROCESSING = CreatorStatus.PROCESSING
LEASE = 30.0


def live_claims(e: Engine, count: int, date: str) -> None:
    """``count`` claims of another batch, older than any of ``e``'s, held by a live worker."""
    far = e.ledger.now() + 10 * 24 * 3600
    e.state.put_creators(
        [
            CreatorRecord(
                f"live{n:05d}", date, "older", PROCESSING, lease_owner="w", lease_expires=far
            )
            for n in range(count)
        ],
        if_absent=False,
    )


def test_a_dead_claim_behind_1200_live_ones_is_requeued() -> None:
    e = engine(COVERS, lease=LEASE)
    e.plan(ROWS)
    messages = e.messages()
    bob = next(m for m in messages if m["creator"] == "Bob")
    dead_claim(e, bob)
    live_claims(e, 1200, "2026-11-01T00:00:00+00:00")
    # what the sweep read before: the oldest thousand claims, all live
    window = e.state.creators_with_status(PROCESSING, limit=1000)
    assert "Bob" not in {r.creator_name for r in window}

    e.clock.advance(2 * LEASE + 1)  # Bob's claim expired a lease ago; the others live on
    counts = e.fanout.sweep(budget=SweepBudget(page_size=100))

    assert counts == {**NOTHING_SWEPT, "stuck": 1, "requeued": 1}
    assert e.messages() == [bob]


def finish_but_let_the_summary_writer_die(e: Engine, monkeypatch: pytest.MonkeyPatch) -> str:
    """A batch whose creators are all final, whose summary writer died (claim held).
    Each starts a second after the last: a creator has one record per start time."""
    e.clock.advance(1)
    batch_id = e.plan(ROWS, key=f"csv-files/{len(e.state.list_batches())}.csv")
    messages = e.messages()
    process_with_a_dying_summary_writer(e, monkeypatch, messages)
    batch = e.state.get_batch(batch_id)
    assert batch is not None and batch.all_counted and not batch.summary_key
    return batch_id


def test_the_oldest_of_150_batches_is_finalised(monkeypatch: pytest.MonkeyPatch) -> None:
    e = engine(COVERS, lease=LEASE)
    oldest = finish_but_let_the_summary_writer_die(e, monkeypatch)
    for n in range(149):  # newer batches, still at work
        newer = BatchRecord(f"{oldest}-{n:03d}", f"2026-11-24T00:00:{n % 60:02d}+00:00", "x.csv")
        e.state.put_batch(replace(newer, total_creators=1))
    # what the sweep read before: the newest hundred batches
    assert oldest not in {b.batch_id for b in e.state.list_batches(limit=100)}

    e.clock.advance(closing.SUMMARY_LEASE_SECONDS + 1)  # the dead writer's claim ended
    assert e.fanout.sweep() == {**NOTHING_SWEPT, "finalized": 1}

    (summary,) = e.summaries()
    assert summary["batch_id"] == oldest
    batch = e.state.get_batch(oldest)
    assert batch is not None and batch.status.is_final and batch.summary_key
    # the next run settles it; the batches at work stay open
    assert e.fanout.sweep() == {**NOTHING_SWEPT, "settled": 1}
    assert oldest not in e.state.open_batches(page_size=1000).items
    assert len(e.state.open_batches(page_size=1000).items) == 149


def test_the_requeue_budget_leaves_the_rest_to_the_next_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    e = engine(
        {f"https://img.example/{n}.jpg": COVERS["https://img.example/a1.jpg"] for n in range(5)},
        lease=LEASE,
    )
    e.plan([(f"Cr{n}", f"https://img.example/{n}.jpg") for n in range(5)])
    messages = e.messages()
    for message in messages:
        dead_claim(e, message)
    e.clock.advance(2 * LEASE + 1)
    budget = SweepBudget(requeues=2, page_size=2)

    with caplog.at_level(logging.WARNING, logger="imgpipe.service.sweep"):
        first = e.fanout.sweep(budget=budget)
    # every dead claim is counted (the StuckCreators metric); two are sent again
    assert first == {**NOTHING_SWEPT, "stuck": 5, "requeued": 2, "more": 1}
    assert "budget is spent" in caplog.text and "'more': 1" in caplog.text
    resent = e.messages()
    assert len(resent) == 2
    for message in resent:  # their workers take the claims over and finish them
        e.process(message)

    assert e.fanout.sweep(budget=budget) == {**NOTHING_SWEPT, "stuck": 3, "requeued": 2, "more": 1}
    for message in e.messages():
        e.process(message)
    last = e.fanout.sweep(budget=budget)
    # the last creator finishes the batch; this run re-queues, the next settles
    assert last == {**NOTHING_SWEPT, "stuck": 1, "requeued": 1}
    for message in e.messages():
        e.process(message)
    (summary,) = e.summaries()
    assert summary["totals"]["completed"] == 5
    assert e.fanout.sweep(budget=budget) == {**NOTHING_SWEPT, "settled": 1}


def test_the_finalisation_budget_leaves_the_rest_to_the_next_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    e = engine(COVERS, lease=LEASE)
    stranded = [finish_but_let_the_summary_writer_die(e, monkeypatch) for _ in range(3)]
    e.clock.advance(closing.SUMMARY_LEASE_SECONDS + 1)
    budget = SweepBudget(finalizations=2, settlements=1, page_size=1)

    assert e.fanout.sweep(budget=budget) == {**NOTHING_SWEPT, "finalized": 2, "more": 1}
    assert sorted(s["batch_id"] for s in e.summaries()) == sorted(stranded[:2])  # oldest first
    # one settlement (the oldest), then the budget is spent before the third is finalised
    assert e.fanout.sweep(budget=budget) == {**NOTHING_SWEPT, "settled": 1, "more": 1}
    assert e.fanout.sweep(budget=budget) == {
        **NOTHING_SWEPT,
        "settled": 1,
        "finalized": 1,
    }
    assert sorted(s["batch_id"] for s in e.summaries()) == sorted(stranded)
    assert e.fanout.sweep(budget=budget) == {**NOTHING_SWEPT, "settled": 1}
    assert e.fanout.sweep(budget=budget) == NOTHING_SWEPT
    assert e.state.open_batches().items == []
