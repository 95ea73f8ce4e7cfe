"""The StateStore contract of the sweep's backoff, over SQLite, the fake and DynamoDB.

``set_sweep_backoff`` records on a batch how many sweep finalisations failed in a row
and when the next is due (``BatchRecord.sweep_failures``, ``sweep_retry_at``); every
read of the batch returns them, ``put_batch`` keeps them, ``failures=0`` clears them.
"""

from __future__ import annotations

from pathlib import Path

from imgpipe.adapters.sqlite_state import SqliteStateStore
from imgpipe.domain.records import BatchRecord, BatchStatus, CreatorRecord, CreatorStatus
from imgpipe.ports import StateStore
from tests.support.state_files import rewind_state_file

B1, B2 = "20260101-000001", "20260101-000002"


def batch(batch_id: str, **kw: object) -> BatchRecord:
    return BatchRecord(batch_id, f"2026-01-01T00:00:{batch_id[-2:]}Z", "x.csv", **kw)  # type: ignore[arg-type]


def backoff(state: StateStore, batch_id: str) -> tuple[int, float]:
    stored = state.get_batch(batch_id)
    assert stored is not None
    return stored.sweep_failures, stored.sweep_retry_at


def test_a_new_batch_has_no_backoff_and_one_set_is_read_back(state: StateStore) -> None:
    state.put_batch(batch(B1))
    state.put_batch(batch(B2))
    assert backoff(state, B1) == (0, 0.0)

    state.set_sweep_backoff(B1, failures=3, retry_at=1_800_000_123.25)

    assert backoff(state, B1) == (3, 1_800_000_123.25)
    assert backoff(state, B2) == (0, 0.0)  # only that batch
    listed = {b.batch_id: (b.sweep_failures, b.sweep_retry_at) for b in state.list_batches()}
    assert listed == {B1: (3, 1_800_000_123.25), B2: (0, 0.0)}
    assert state.open_batches().items == [B1, B2]  # a failing batch stays open


def test_put_batch_and_finish_creator_keep_the_backoff(state: StateStore) -> None:
    state.put_batch(batch(B1, total_creators=1))
    state.set_sweep_backoff(B1, failures=2, retry_at=5000.5)
    # a stale copy of the batch written again (a status, the summary key)
    stale = batch(B1, total_creators=1, status=BatchStatus.COMPLETED, summary_key="s.json")
    state.put_batch(stale)
    assert backoff(state, B1) == (2, 5000.5)
    stored = state.get_batch(B1)
    assert stored is not None and stored.summary_key == "s.json"

    state.put_creator(CreatorRecord("Ann", stale.created_at, B1, CreatorStatus.PROCESSING))
    done = CreatorRecord("Ann", stale.created_at, B1, CreatorStatus.COMPLETED)
    after = state.finish_creator(done, expected=(CreatorStatus.PROCESSING,))
    assert after is not None and after.completed == 1
    assert (after.sweep_failures, after.sweep_retry_at) == (2, 5000.5)


def test_zero_failures_clear_the_backoff_and_a_missing_batch_is_not_created(
    state: StateStore,
) -> None:
    state.put_batch(batch(B1))
    state.set_sweep_backoff(B1, failures=11, retry_at=99.0)
    state.set_sweep_backoff(B1, failures=12, retry_at=199.0)  # each failure overwrites
    assert backoff(state, B1) == (12, 199.0)

    state.set_sweep_backoff(B1, failures=0, retry_at=123.0)  # cleared: no retry time kept
    assert backoff(state, B1) == (0, 0.0)

    state.set_sweep_backoff("20260101-000099", failures=1, retry_at=1.0)  # deleted by TTL
    state.set_sweep_backoff("20260101-000099", failures=0, retry_at=0.0)
    assert state.get_batch("20260101-000099") is None
    assert state.open_batches().items == [B1]
    assert state.get_batch(B1) == batch(B1)  # nothing else about it changed


def test_a_state_file_from_before_the_backoff_migrates(tmp_path: Path) -> None:
    """A v4 file has no backoff columns: added in place, every batch starts with none."""
    path = tmp_path / "state.sqlite3"
    store = SqliteStateStore(path)
    store.put_batch(batch(B1))
    store.close()
    rewind_state_file(
        path,
        4,
        "ALTER TABLE batches DROP COLUMN sweep_failures",
        "ALTER TABLE batches DROP COLUMN sweep_retry_at",
    )

    store = SqliteStateStore(path)
    try:
        assert backoff(store, B1) == (0, 0.0)
        store.set_sweep_backoff(B1, failures=1, retry_at=270.0)
        assert backoff(store, B1) == (1, 270.0)
    finally:
        store.close()
