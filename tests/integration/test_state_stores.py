"""The StateStore contract, run against SQLite on a real file, DynamoDB on moto and the fake.

SQLite-specific behaviour (WAL, migration, two connections) is tested at the end.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imgpipe.adapters.dynamodb_state import DynamoStateStore
from imgpipe.adapters.dynamodb_table import MAX_ITEM_BYTES, create_state_table
from imgpipe.adapters.sqlite_state import SqliteStateStore
from imgpipe.domain.records import BatchRecord, BatchStatus, CreatorRecord, CreatorStatus
from imgpipe.errors import ConditionFailedError, StateError
from imgpipe.ports import StateStore
from imgpipe.service.creator_covers import METADATA_BUDGET_BYTES
from imgpipe.settings import Settings
from tests.support.aws import client

PENDING, PROCESSING, COMPLETED = (
    CreatorStatus.PENDING,
    CreatorStatus.PROCESSING,
    CreatorStatus.COMPLETED,
)


def creator(
    name: str = "Ann",
    batch: str = "b1",
    date: str = "2026-01-02T03:04:05.000000+00:00",
    **kw: object,
) -> CreatorRecord:
    return CreatorRecord(name, date, batch, kw.pop("status", PENDING), **kw)  # type: ignore[arg-type]


def full_creator() -> CreatorRecord:
    return CreatorRecord(
        creator_name="Zoë_Dance-bfe8273e",
        processing_date="2026-01-02T03:04:05.123456+00:00",
        batch_id="20260102-030405-1a2b3c4d",
        status=CreatorStatus.SKIPPED_UNCHANGED,
        images_processed=35,
        collage_key="collages/by-creator/Zoë_Dance-bfe8273e/collage_20260102_030405.jpg",
        processing_duration=1.25,
        error_count=2,
        fingerprint="f" * 64,
        metadata={"display_name": "Zoë Dance", "covers": [{"line": 2, "ok": True}], "n": None},
        ttl=1_800_000_000,
    )


def full_batch() -> BatchRecord:
    return BatchRecord(
        batch_id="20260102-030405-1a2b3c4d",
        created_at="2026-01-02T03:04:05.123456+00:00",
        source="covers.csv",
        status=BatchStatus.COMPLETED_WITH_FAILURES,
        total_creators=10,
        completed=7,
        failed=2,
        skipped=1,
        summary_key="results/processing-summaries/20260102-030405-1a2b3c4d.json",
        finished_at="2026-01-02T03:05:00+00:00",
        settings={"rows": 5, "cols": 7, "nested": {"quality": 95}},
    )


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStateStore]:
    store = SqliteStateStore(tmp_path / "deep" / "state.sqlite3")
    yield store
    store.close()


# -- contract (every store) ----------------------------------------------------


def test_round_trip_of_every_field(state: StateStore) -> None:
    record, batch = full_creator(), full_batch()
    state.put_creator(record)
    state.put_batch(batch)
    assert state.get_creator(record.creator_name, record.batch_id) == record
    assert state.get_batch(batch.batch_id) == batch
    assert state.get_creator(record.creator_name, "other") is None
    assert state.get_batch("other") is None


def test_round_trip_of_defaults(state: StateStore) -> None:
    record = creator()
    state.put_creator(record)
    state.put_batch(BatchRecord("b1", "2026-01-01T00:00:00+00:00", "x.csv"))
    assert state.get_creator("Ann", "b1") == record
    assert state.get_batch("b1") == BatchRecord("b1", "2026-01-01T00:00:00+00:00", "x.csv")


def test_insert_only_if_absent(state: StateStore) -> None:
    state.put_creator(creator(metadata={"v": 1}), expected=())
    with pytest.raises(ConditionFailedError, match="already exists"):
        state.put_creator(creator(metadata={"v": 2}), expected=())
    stored = state.get_creator("Ann", "b1")
    assert stored is not None and stored.metadata == {"v": 1}


def test_update_only_from_expected_statuses(state: StateStore) -> None:
    state.put_creator(creator(status=PENDING), expected=())
    state.put_creator(creator(status=PROCESSING), expected=(PENDING,))
    state.put_creator(creator(status=COMPLETED, images_processed=3), expected=(PROCESSING,))
    with pytest.raises(ConditionFailedError):
        state.put_creator(creator(status=PROCESSING), expected=(PENDING,))
    stored = state.get_creator("Ann", "b1")
    assert stored is not None and (stored.status, stored.images_processed) == (COMPLETED, 3)
    state.put_creator(creator(status=PENDING), expected=(PENDING, COMPLETED))
    assert state.get_creator("Ann", "b1").status is PENDING  # type: ignore[union-attr]


def test_conditional_update_of_a_missing_record_fails(state: StateStore) -> None:
    with pytest.raises(ConditionFailedError):
        state.put_creator(creator(status=PROCESSING), expected=(PENDING,))
    assert state.get_creator("Ann", "b1") is None
    assert issubclass(ConditionFailedError, StateError)


def test_upsert_replaces(state: StateStore) -> None:
    state.put_creator(creator(status=PENDING))
    state.put_creator(creator(status=COMPLETED, fingerprint="abc"))
    assert list(state.creators_in_batch("b1")) == [creator(status=COMPLETED, fingerprint="abc")]


def test_same_processing_date_in_two_batches(state: StateStore) -> None:
    # (creator_name, processing_date) is the table key, as in the original DynamoDB table.
    state.put_creator(creator(batch="b1"), expected=())
    with pytest.raises(ConditionFailedError):
        state.put_creator(creator(batch="b2"), expected=())
    state.put_creator(creator(batch="b2"))  # an unconditional upsert replaces the clash
    assert [r.batch_id for r in state.creator_history("Ann")] == ["b2"]
    assert state.get_creator("Ann", "b1") is None


def test_claim_race_has_exactly_one_winner(state: StateStore) -> None:
    barrier = threading.Barrier(8)
    outcomes: list[tuple[int, bool]] = []
    lock = threading.Lock()

    def claim(i: int) -> None:
        barrier.wait()
        try:
            state.put_creator(creator(metadata={"worker": i}), expected=())
            won = True
        except ConditionFailedError:
            won = False
        with lock:
            outcomes.append((i, won))

    run_threads(claim, 8)
    winners = [i for i, won in outcomes if won]
    assert len(outcomes) == 8 and len(winners) == 1
    stored = state.get_creator("Ann", "b1")
    assert stored is not None and stored.metadata == {"worker": winners[0]}


def test_creators_in_batch_streams_every_record_of_the_batch(state: StateStore) -> None:
    for i, name in enumerate(["Cy", "Ann", "Bo"]):
        state.put_creator(creator(name, date=f"2026-01-0{i + 1}"))
    state.put_creator(creator("Dee", batch="other"))
    names = sorted(r.creator_name for r in state.creators_in_batch("b1"))
    assert names == ["Ann", "Bo", "Cy"]
    assert list(state.creators_in_batch("none")) == []


def test_history_is_newest_first_and_limited(state: StateStore) -> None:
    dates = ["2026-01-02T00:00:00+00:00", "2026-03-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"]
    for i, date in enumerate(dates):
        state.put_creator(creator(batch=f"b{i}", date=date, ttl=1))  # expired ttl is kept
    state.put_creator(creator("Bo", batch="b9"))
    history = state.creator_history("Ann")
    assert [r.batch_id for r in history] == ["b1", "b2", "b0"]
    assert [r.batch_id for r in state.creator_history("Ann", limit=2)] == ["b1", "b2"]
    assert all(r.ttl == 1 for r in history)


def test_list_batches_newest_first_and_limited(state: StateStore) -> None:
    for batch_id, created in [("b1", "2026-01-01"), ("b3", "2026-03-01"), ("b2", "2026-02-01")]:
        state.put_batch(BatchRecord(batch_id, created, "x.csv"))
    state.put_batch(BatchRecord("b1", "2026-01-01", "x.csv", status=BatchStatus.COMPLETED))
    assert [b.batch_id for b in state.list_batches()] == ["b3", "b2", "b1"]
    assert [b.batch_id for b in state.list_batches(limit=1)] == ["b3"]
    assert state.list_batches()[-1].status is BatchStatus.COMPLETED


def test_metadata_that_is_not_json_is_refused(state: StateStore) -> None:
    with pytest.raises(StateError, match="JSON"):
        state.put_creator(creator(metadata={"bad": object()}))
    with pytest.raises(StateError, match="JSON"):
        state.put_batch(BatchRecord("b1", "2026", "x", settings={"nan": float("nan")}))
    assert state.get_creator("Ann", "b1") is None


def test_a_final_record_at_the_ledgers_metadata_budget_is_stored(state: StateStore) -> None:
    # The ledger keeps metadata within METADATA_BUDGET_BYTES: every store, DynamoDB's
    # 400 KB item limit included, must take a record that uses all of it.
    padding = "é" * (METADATA_BUDGET_BYTES // 2 - 100)  # two UTF-8 bytes each
    state.put_batch(_batch_of(1))
    state.put_creator(creator(status=PROCESSING), expected=())
    final = creator(status=COMPLETED, metadata={"display_name": "Ann", "detail": padding})
    after = state.finish_creator(final, expected=(PROCESSING,))
    assert after is not None and after.completed == 1
    stored = state.get_creator("Ann", "b1")
    assert stored is not None and stored.metadata["detail"] == padding


def test_dynamodb_refuses_an_item_over_its_limit_naming_creator_and_size(
    aws: Settings, atomic_dynamodb: None
) -> None:
    create_state_table(client(aws, "dynamodb"), "state")
    state = DynamoStateStore("state", settings=aws)
    state.put_batch(_batch_of(1))
    state.put_creator(creator(status=PROCESSING), expected=())
    huge = creator(status=COMPLETED, metadata={"detail": "x" * MAX_ITEM_BYTES})
    with pytest.raises(StateError, match=r"creator 'Ann' in batch 'b1' would be 4\d\d,\d{3} bytes"):
        state.finish_creator(huge, expected=(PROCESSING,))
    with pytest.raises(StateError, match="over DynamoDB's 409,600-byte item limit"):
        state.put_creator(huge)
    with pytest.raises(StateError, match="batch 'b2'"):
        state.put_batch(BatchRecord("b2", "2026", "x", settings={"x": "y" * MAX_ITEM_BYTES}))
    stored, batch = state.get_creator("Ann", "b1"), state.get_batch("b1")
    assert stored is not None and stored.status is PROCESSING  # nothing was written
    assert batch is not None and batch.completed == 0


def _batch_of(total: int) -> BatchRecord:
    return BatchRecord("b1", "2026-01-02T03:04:05+00:00", "x.csv", total_creators=total)


def test_finish_counts_once_even_when_redelivered(state: StateStore) -> None:
    state.put_batch(_batch_of(2))
    state.put_creator(creator(status=PROCESSING), expected=())
    after = state.finish_creator(creator(status=COMPLETED), expected=(PROCESSING,))
    assert after is not None and (after.completed, after.failed, after.skipped) == (1, 0, 0)
    with pytest.raises(ConditionFailedError):  # a second delivery of the same finish
        state.finish_creator(creator(status=COMPLETED), expected=(PROCESSING,))
    batch = state.get_batch("b1")
    assert batch is not None and batch.completed == 1
    assert state.get_creator("Ann", "b1").status == COMPLETED  # type: ignore[union-attr]


def test_finish_counts_by_final_status(state: StateStore) -> None:
    state.put_batch(_batch_of(3))
    statuses = [COMPLETED, CreatorStatus.FAILED, CreatorStatus.SKIPPED_UNCHANGED]
    for name, status in zip(["A", "B", "C"], statuses, strict=True):
        state.put_creator(creator(name, status=PROCESSING), expected=())
        last = state.finish_creator(creator(name, status=status), expected=(PROCESSING,))
    assert last is not None and (last.completed, last.failed, last.skipped) == (1, 1, 1)


def test_finish_without_batch_record_returns_none(state: StateStore) -> None:
    state.put_creator(creator(status=PROCESSING), expected=())
    assert state.finish_creator(creator(status=COMPLETED), expected=(PROCESSING,)) is None
    assert state.get_creator("Ann", "b1").status == COMPLETED  # type: ignore[union-attr]


def test_finish_refuses_a_non_final_status(state: StateStore) -> None:
    state.put_batch(_batch_of(1))
    state.put_creator(creator(status=PENDING), expected=())
    with pytest.raises(ValueError, match="final status"):
        state.finish_creator(creator(status=PROCESSING), expected=(PENDING,))
    assert state.get_creator("Ann", "b1").status == PENDING  # type: ignore[union-attr]


def test_concurrent_finishes_count_every_creator_exactly_once(state: StateStore) -> None:
    state.put_batch(_batch_of(8))
    for i in range(8):
        state.put_creator(creator(f"c{i}", status=PROCESSING), expected=())
    barrier = threading.Barrier(16)

    def finish(i: int) -> None:  # two deliveries of each creator's finish, at once
        barrier.wait()
        try:
            state.finish_creator(creator(f"c{i % 8}", status=COMPLETED), expected=(PROCESSING,))
        except ConditionFailedError:
            pass

    run_threads(finish, 16)
    batch = state.get_batch("b1")
    assert batch is not None and batch.completed == 8


LEASE = 900.0


def claim(state: StateStore, at: float = 1_000_000.0) -> bool:
    return state.claim_summary("b1", now=at, lease_seconds=LEASE)


def test_summary_is_claimed_exactly_once(state: StateStore) -> None:
    assert claim(state) is False  # no such batch
    state.put_batch(_batch_of(1))
    barrier = threading.Barrier(8)
    wins: list[int] = []

    def contend(i: int) -> None:
        barrier.wait()
        if claim(state):
            wins.append(i)

    run_threads(contend, 8)
    assert len(wins) == 1
    assert claim(state, at=1_000_000.0 + LEASE - 1) is False  # the holder's lease still runs


def test_a_dead_claim_can_be_taken_again_after_its_lease(state: StateStore) -> None:
    state.put_batch(_batch_of(1))
    assert claim(state, at=1_000_000.0) is True
    # Its holder died without writing the summary: once the lease is over, another may.
    assert claim(state, at=1_000_000.0 + LEASE + 1) is True
    assert claim(state, at=1_000_000.0 + LEASE + 2) is False  # the new claim is fresh


def test_a_written_summary_is_never_claimed_again(state: StateStore) -> None:
    batch = _batch_of(1)
    state.put_batch(batch)
    assert claim(state, at=1_000_000.0) is True
    batch.summary_key = "results/processing-summaries/b1.json"
    state.put_batch(batch)
    assert claim(state, at=1_000_000.0 + 10 * LEASE) is False


# -- SQLite specifics ----------------------------------------------------------


def test_persistence_across_reopen_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    first = SqliteStateStore(path)
    first.put_creator(full_creator(), expected=())
    first.put_batch(full_batch())
    first.close()
    second = SqliteStateStore(path)
    try:
        assert second.get_creator(full_creator().creator_name, full_batch().batch_id) == (
            full_creator()
        )
        assert second.list_batches() == [full_batch()]
    finally:
        second.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(creators)")}
    conn.close()
    assert {"creators_by_batch", "creators_by_status_date"} <= indexes


def test_two_connections_race_on_one_file(tmp_path: Path) -> None:
    # Two stores on one file stand in for two processes sharing the output folder.
    stores = [SqliteStateStore(tmp_path / "s.db") for _ in range(2)]
    barrier = threading.Barrier(8)
    wins: list[int] = []

    def claim(i: int) -> None:
        barrier.wait()
        try:
            stores[i % 2].put_creator(creator(metadata={"w": i}), expected=())
            wins.append(i)
        except ConditionFailedError:
            pass

    try:
        run_threads(claim, 8)
        assert len(wins) == 1
        assert stores[1 - wins[0] % 2].get_creator("Ann", "b1").metadata == {"w": wins[0]}  # type: ignore[union-attr]
    finally:
        for store in stores:
            store.close()


def test_version_1_file_gains_the_summary_claim(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the batches table as version 1 created it
        conn.execute(
            "CREATE TABLE batches (batch_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, "
            "source TEXT NOT NULL, status TEXT NOT NULL, total_creators INTEGER NOT NULL, "
            "completed INTEGER NOT NULL, failed INTEGER NOT NULL, skipped INTEGER NOT NULL, "
            "summary_key TEXT, finished_at TEXT, settings TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO batches VALUES ('b1','2026','x','running',1,0,0,0,NULL,NULL,'{}')"
        )
    conn.close()
    store = SqliteStateStore(path)
    try:
        assert store.get_batch("b1") is not None
        assert claim(store) is True and claim(store) is False
    finally:
        store.close()


def test_closed_store_raises_state_error(sqlite_store: SqliteStateStore) -> None:
    sqlite_store.close()
    with pytest.raises(StateError):
        sqlite_store.get_creator("Ann", "b1")


def test_unopenable_path_raises_state_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StateError, match="cannot open state database"):
        SqliteStateStore(tmp_path / "file" / "state.sqlite3")


def test_corrupt_file_raises_state_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError):
        SqliteStateStore(path)


def test_parent_folders_are_created(sqlite_store: SqliteStateStore, tmp_path: Path) -> None:
    sqlite_store.put_batch(full_batch())
    assert (tmp_path / "deep" / "state.sqlite3").is_file()


def run_threads(target: Callable[[int], None], n: int) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# -- leases: claims with an owner and an expiry ------------------------------------------


def claimed(owner: str, expires: float, **kw: object) -> CreatorRecord:
    return creator(status=PROCESSING, lease_owner=owner, lease_expires=expires, **kw)


def test_a_live_claim_is_not_taken_over(state: StateStore) -> None:
    state.put_creator(creator(status=PENDING))
    state.put_creator(claimed("w1", 200.0), expected=(PENDING,), takeover_at=100.0)
    with pytest.raises(ConditionFailedError):
        state.put_creator(claimed("w2", 300.0), expected=(PENDING,), takeover_at=150.0)
    stored = state.get_creator("Ann", "b1")
    assert stored is not None and stored.lease_owner == "w1" and stored.lease_expires == 200.0


def test_an_expired_claim_is_taken_over_and_the_old_owner_loses_it(state: StateStore) -> None:
    state.put_creator(creator(status=PENDING))
    state.put_creator(claimed("w1", 200.0), expected=(PENDING,), takeover_at=100.0)
    state.put_creator(claimed("w2", 500.0), expected=(PENDING,), takeover_at=250.0)
    stored = state.get_creator("Ann", "b1")
    assert stored is not None and stored.lease_owner == "w2"
    # the first owner wakes up: neither its renewal nor its finish may land
    with pytest.raises(ConditionFailedError):
        state.put_creator(claimed("w1", 600.0), expected=(PROCESSING,), owner="w1")
    with pytest.raises(ConditionFailedError):
        state.finish_creator(creator(status=COMPLETED), expected=(PROCESSING,), owner="w1")
    state.finish_creator(creator(status=COMPLETED), expected=(PROCESSING,), owner="w2")
    final = state.get_creator("Ann", "b1")
    assert final is not None and final.status == COMPLETED


def test_the_owner_renews_its_own_claim(state: StateStore) -> None:
    state.put_creator(creator(status=PENDING))
    state.put_creator(claimed("w1", 200.0), expected=(PENDING,), takeover_at=100.0)
    state.put_creator(claimed("w1", 900.0), expected=(PROCESSING,), owner="w1")
    # a redelivery to the same owner re-claims without waiting for the lease
    state.put_creator(claimed("w1", 950.0), expected=(PENDING,), takeover_at=150.0)
    stored = state.get_creator("Ann", "b1")
    assert stored is not None and stored.lease_expires == 950.0


def test_a_final_record_is_never_claimed_again(state: StateStore) -> None:
    state.put_creator(creator(status=COMPLETED))
    with pytest.raises(ConditionFailedError):
        state.put_creator(claimed("w1", 200.0), expected=(PENDING,), takeover_at=10_000.0)


def test_put_creators_in_bulk_and_if_absent_keeps_what_moved_on(state: StateStore) -> None:
    names = [f"c{i:03}" for i in range(60)]  # more than one BatchWriteItem of 25
    state.put_creators([creator(n, date=f"d{n}") for n in names], if_absent=False)
    state.put_creator(creator("c007", date="dc007", status=COMPLETED), expected=(PENDING,))
    state.put_creators([creator(n, date=f"d{n}") for n in names], if_absent=True)
    records = {r.creator_name: r for r in state.creators_in_batch("b1")}
    assert sorted(records) == names
    assert records["c007"].status == COMPLETED
    assert sum(r.status == PENDING for r in records.values()) == 59


def test_creators_with_status_oldest_first(state: StateStore) -> None:
    for i, name in enumerate(["Cy", "Ann", "Bo"]):
        state.put_creator(creator(name, date=f"2026-01-0{3 - i}", status=PROCESSING))
    state.put_creator(creator("Dee", status=PENDING))
    found = state.creators_with_status(PROCESSING)
    assert [r.creator_name for r in found] == ["Bo", "Ann", "Cy"]
    assert [r.creator_name for r in state.creators_with_status(PROCESSING, limit=1)] == ["Bo"]


def test_creators_with_status_of_one_processing_date(state: StateStore) -> None:
    """The creators in flight of one batch (its date), not those of other batches."""
    mine, other = "2026-01-02T03:04:05.000001+00:00", "2026-01-02T03:04:05.000002+00:00"
    for name in ("Ann", "Bo"):
        state.put_creator(creator(name, "b1", mine, status=PROCESSING))
    state.put_creator(creator("Cy", "b1", mine, status=PENDING))
    state.put_creator(creator("Ann", "b2", other, status=PROCESSING))
    found = state.creators_with_status(PROCESSING, processing_date=mine)
    assert sorted((r.creator_name, r.batch_id) for r in found) == [("Ann", "b1"), ("Bo", "b1")]
    assert state.creators_with_status(PENDING, processing_date=other) == []


def test_batch_ttl_and_owner_round_trip_and_counters_survive_put_batch(state: StateStore) -> None:
    batch = BatchRecord("b1", "2026-01-02T03:04:05+00:00", "x.csv", total_creators=2)
    batch.ttl, batch.owner = 1_800_000_000, "host:1:abc"
    state.put_batch(batch)
    state.put_creator(claimed("w", 1.0), expected=())
    state.finish_creator(creator(status=COMPLETED), expected=(PROCESSING,))
    batch.status = BatchStatus.INTERRUPTED  # a stale copy with completed=0
    state.put_batch(batch)
    stored = state.get_batch("b1")
    assert stored is not None
    assert (stored.ttl, stored.owner, stored.status) == (1_800_000_000, "host:1:abc", "interrupted")
    assert stored.completed == 1


def test_a_released_summary_claim_can_be_taken_at_once(state: StateStore) -> None:
    state.put_batch(_batch_of(1))
    assert claim(state, at=1000.0)
    assert not claim(state, at=1001.0)  # live
    state.release_summary("b1", claimed_at=999.0)  # not that claim: nothing changes
    assert not claim(state, at=1002.0)
    state.release_summary("b1", claimed_at=1000.0)
    assert claim(state, at=1003.0)  # given back: taken again well inside the lease
    assert not claim(state, at=1004.0)
