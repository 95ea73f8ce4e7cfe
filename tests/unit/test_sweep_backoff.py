"""Batches the sweep fails to finalise back off; they never starve the batches behind them.

On the in-memory engine of ``test_queue_engine`` (the same on DynamoDB on moto is in
``tests/integration/aws/test_sweep_dynamodb.py``). The failure comes in through the
sweep's own seam: the ``finalize`` it is given raises for the failing batches' ids
(as the summary, the archive or a store would), and otherwise is the engine's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import pytest

from imgpipe.errors import StorageError
from imgpipe.service import closing
from imgpipe.service.summary import BatchSummary
from imgpipe.service.sweep import SweepBudget, sweep
from imgpipe.service.sweep_backoff import ALERT_AFTER, BASE_SECONDS, CAP_SECONDS
from tests.unit.test_queue_engine import COVERS, NOTHING_SWEPT, Engine, engine
from tests.unit.test_sweep import LEASE, finish_but_let_the_summary_writer_die

RUN = BASE_SECONDS  # the sweep's schedule: one run every 5 minutes


class Finalize:
    """The engine's finalize, raising for the ``failing`` ids; records each try's time."""

    def __init__(self, e: Engine, failing: Iterable[str]) -> None:
        self.e = e
        self.failing = set(failing)
        self.tries: dict[str, list[float]] = {}

    def __call__(self, batch_id: str) -> BatchSummary | None:
        self.tries.setdefault(batch_id, []).append(self.e.ledger.now())
        if batch_id in self.failing:
            raise StorageError(f"cannot write the summary of {batch_id}: AccessDenied")
        return self.e.fanout.finalize(batch_id)


def stranded(e: Engine, monkeypatch: pytest.MonkeyPatch, count: int) -> list[str]:
    """``count`` finished batches whose summary writer died, oldest first, their summary
    claims expired: each is the sweep's to finalise."""
    ids = [finish_but_let_the_summary_writer_die(e, monkeypatch) for _ in range(count)]
    e.clock.advance(closing.SUMMARY_LEASE_SECONDS + 1)
    assert e.state.open_batches().items == ids
    return ids


def run(e: Engine, finalize: Callable[[str], BatchSummary | None], **budget: int) -> dict[str, int]:
    return sweep(e.state, e.queue, e.ledger, finalize, budget=SweepBudget(**budget))


def failures(e: Engine, batch_id: str) -> int:
    batch = e.state.get_batch(batch_id)
    assert batch is not None
    return batch.sweep_failures


def test_six_old_failing_batches_do_not_starve_a_newer_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    e = engine(COVERS, lease=LEASE)
    *old, newer = stranded(e, monkeypatch, 7)
    finalize = Finalize(e, old)

    # Run 1: the five oldest are tried (never tried before), fail, and back off.
    assert run(e, finalize, finalizations=5) == {**NOTHING_SWEPT, "more": 1}
    assert sorted(finalize.tries) == sorted(old[:5])
    assert e.summaries() == []

    # Run 2, one schedule later: the never-tried come first (the sixth old one, then
    # the newer one, finalised), and what budget is left retries the oldest failures.
    e.clock.advance(RUN)
    assert run(e, finalize, finalizations=5) == {**NOTHING_SWEPT, "finalized": 1, "more": 1}
    assert [s["batch_id"] for s in e.summaries()] == [newer]  # ceil((6 + 1) / 5) = 2 runs
    assert [failures(e, b) for b in old] == [2, 2, 2, 1, 1, 1]
    assert failures(e, newer) == 0

    # Run 3: the newer one is settled; the three that failed twice wait two runs now,
    # the others (due) are tried again.
    e.clock.advance(RUN)
    assert run(e, finalize, finalizations=5) == {**NOTHING_SWEPT, "settled": 1, "backing_off": 3}
    assert [failures(e, b) for b in old] == [2, 2, 2, 2, 2, 2]
    assert newer not in e.state.open_batches().items


def test_a_failing_batch_is_retried_one_run_later_then_doubling_up_to_a_day(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    e = engine(COVERS, lease=LEASE)
    (failing,) = stranded(e, monkeypatch, 1)
    finalize = Finalize(e, [failing])
    start = e.ledger.now()

    # Every scheduled run for a day and a half: tries one run apart, then 2, 4, 8, ...
    backing_off = 0
    with caplog.at_level(logging.WARNING, logger="imgpipe.service.sweep"):
        for _ in range(int(36 * 3600 / RUN)):
            counts = run(e, finalize)
            assert counts["finalized"] == 0 and counts["failing"] == 0
            backing_off += counts["backing_off"]
            e.clock.advance(RUN)
    tries = finalize.tries[failing]
    gaps = [later - earlier for earlier, later in zip(tries, tries[1:], strict=False)]
    assert tries[0] == start
    assert gaps == [RUN * 2**n for n in range(len(gaps))]  # 300, 600, ..., 38,400 s
    assert len(tries) == 9 and backing_off == int(36 * 3600 / RUN) - 9
    # each failure is logged with the batch, its count and the reason
    warnings = [r.getMessage() for r in caplog.records if failing in r.getMessage()]
    assert len(warnings) == 9
    assert "failure 9 in a row" in warnings[-1] and "AccessDenied" in warnings[-1]
    assert all(r.levelno == logging.WARNING for r in caplog.records)

    # From the tenth failure in a row on: ERROR once per try, and counted as failing
    # (the BatchesFailingToFinalise metric) in every run, tried or waiting; the wait
    # stops doubling at a day.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="imgpipe.service.sweep"):
        for expected in (ALERT_AFTER, ALERT_AFTER + 1, ALERT_AFTER + 2):
            batch = e.state.get_batch(failing)
            assert batch is not None and batch.sweep_failures == expected - 1
            e.clock.now = e.clock.now.fromtimestamp(batch.sweep_retry_at - 1, e.clock.now.tzinfo)
            assert run(e, finalize)["backing_off"] == 1  # not due a second early
            e.clock.advance(1)
            counts = run(e, finalize)
            assert counts == {**NOTHING_SWEPT, "failing": 1}
            assert failures(e, failing) == expected
            assert run(e, finalize) == {**NOTHING_SWEPT, "backing_off": 1, "failing": 1}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3
    for n, message in zip((10, 11, 12), errors, strict=True):
        assert f"batch {failing} " in message and f"failure {n} in a row" in message
    tries = finalize.tries[failing]
    assert tries[-1] - tries[-2] == tries[-2] - tries[-3] == CAP_SECONDS - 30


def test_a_success_clears_the_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    e = engine(COVERS, lease=LEASE)
    (flaky,) = stranded(e, monkeypatch, 1)
    finalize = Finalize(e, [flaky])
    for _ in range(3):  # three failures: the wait is four runs now
        assert run(e, finalize)["finalized"] == 0
        batch = e.state.get_batch(flaky)
        assert batch is not None
        e.clock.now = e.clock.now.fromtimestamp(batch.sweep_retry_at, e.clock.now.tzinfo)
    assert failures(e, flaky) == 3

    finalize.failing.clear()  # the fault is fixed (a permission granted)
    assert run(e, finalize) == {**NOTHING_SWEPT, "finalized": 1}

    batch = e.state.get_batch(flaky)
    assert batch is not None and batch.summary_key
    assert (batch.sweep_failures, batch.sweep_retry_at) == (0, 0.0)
    assert run(e, finalize) == {**NOTHING_SWEPT, "settled": 1}
    assert e.state.open_batches().items == []


def test_a_summary_being_written_elsewhere_is_left_to_its_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    e = engine(COVERS, lease=LEASE)
    batch_id = finish_but_let_the_summary_writer_die(e, monkeypatch)
    # its claim is live (the writer may only be slow): the sweep neither waits for it
    # nor counts it as a failure that would back the batch off
    assert e.fanout.sweep() == NOTHING_SWEPT
    assert failures(e, batch_id) == 0

    e.clock.advance(closing.SUMMARY_LEASE_SECONDS + 1)  # the claim ended: the writer died
    assert e.fanout.sweep() == {**NOTHING_SWEPT, "finalized": 1}
    assert failures(e, batch_id) == 0
