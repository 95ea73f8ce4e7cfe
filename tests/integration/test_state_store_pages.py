"""The StateStore contract of the sweep's paged reads, over SQLite, the fake and DynamoDB.

``creators_page`` and ``open_batches`` hand out a page and an opaque cursor: with a
page smaller than the data, every record comes once, in order, over several pages.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from imgpipe.adapters.sqlite_state import SqliteStateStore
from imgpipe.domain.records import BatchRecord, BatchStatus, CreatorRecord, CreatorStatus
from imgpipe.errors import StateError
from imgpipe.ports import Page, StateStore
from tests.support.state_files import rewind_state_file

T = TypeVar("T")
PROCESSING = CreatorStatus.PROCESSING


def every_page(read: Callable[[str | None], Page[T]]) -> list[list[T]]:
    """The pages ``read(after)`` gives, cursor to cursor, until it gives none."""
    pages, after = [], None
    for _ in range(100):  # a cursor that never ends would be a bug: fail, not hang
        page = read(after)
        pages.append(page.items)
        if page.cursor is None:
            return pages
        after = page.cursor
    raise AssertionError("the cursor never ended")


def claim(name: str, date: str, batch: str = "b1") -> CreatorRecord:
    return CreatorRecord(name, date, batch, PROCESSING, lease_owner="w", lease_expires=1.0)


def test_creators_page_walks_every_record_once_oldest_first(state: StateStore) -> None:
    # Two batches' claims interleaved in time, each date shared by two creators, and
    # records in other statuses that must not show up.
    claims = [
        claim(f"c{n:02d}", f"2026-01-{1 + n // 2:02d}T00:00:00Z", f"b{n % 2}") for n in range(7)
    ]
    for record in reversed(claims):
        state.put_creator(record)
    state.put_creator(CreatorRecord("done", "2026-01-01T00:00:00Z", "b0", CreatorStatus.COMPLETED))
    state.put_creator(CreatorRecord("waits", "2026-01-02T00:00:00Z", "b1", CreatorStatus.PENDING))

    pages = every_page(lambda after: state.creators_page(PROCESSING, after=after, page_size=3))

    assert len([p for p in pages if p]) == 3  # 3 + 3 + 1
    assert all(len(p) <= 3 for p in pages)
    names = [r.creator_name for page in pages for r in page]
    assert sorted(names) == sorted(r.creator_name for r in claims)  # nothing skipped
    assert len(names) == len(set(names))  # nothing repeated
    dates = [r.processing_date for page in pages for r in page]
    assert dates == sorted(dates)  # oldest first, across pages


def test_creators_page_of_one_page_has_no_cursor(state: StateStore) -> None:
    state.put_creator(claim("Ann", "2026-01-01T00:00:00Z"))
    assert state.creators_page(CreatorStatus.PENDING) == Page([], None)
    page = state.creators_page(PROCESSING, page_size=5)
    assert [r.creator_name for r in page.items] == ["Ann"] and page.cursor is None


def test_a_cursor_the_store_did_not_give_is_refused_by_name(state: StateStore) -> None:
    with pytest.raises(StateError, match="page cursor 'not-a-cursor'"):
        state.creators_page(PROCESSING, after="not-a-cursor")
    with pytest.raises(StateError, match="page cursor"):
        state.open_batches(after="{")


def batch(batch_id: str, **kw: object) -> BatchRecord:
    return BatchRecord(batch_id, f"2026-01-01T00:00:{batch_id[-2:]}Z", "x.csv", **kw)  # type: ignore[arg-type]


def test_open_batches_walks_every_open_batch_once_oldest_first(state: StateStore) -> None:
    ids = [f"20260101-0000{n:02d}" for n in range(8)]
    for batch_id in reversed(ids):
        state.put_batch(batch(batch_id))
    state.settle_batch(ids[2])
    state.settle_batch(ids[5])

    pages = every_page(lambda after: state.open_batches(after=after, page_size=2))

    seen = [batch_id for page in pages for batch_id in page]
    assert seen == [i for i in ids if i not in (ids[2], ids[5])]  # in order, once each
    assert len([p for p in pages if p]) == 3
    # a settled batch is kept, not deleted: only the sweep stops visiting it
    settled = state.get_batch(ids[2])
    assert settled is not None and settled.batch_id == ids[2]


def test_a_written_batch_is_open_again_and_settling_twice_or_a_missing_one_is_harmless(
    state: StateStore,
) -> None:
    state.put_batch(batch("20260101-000001"))
    state.settle_batch("20260101-000001")
    state.settle_batch("20260101-000001")
    state.settle_batch("20260101-000099")  # no such batch: nothing written
    assert state.open_batches().items == []
    assert state.get_batch("20260101-000099") is None
    # the batch is written again (its summary, a new status): the sweep looks again
    state.put_batch(batch("20260101-000001", status=BatchStatus.COMPLETED))
    assert state.open_batches().items == ["20260101-000001"]


def test_a_state_file_from_before_the_open_mark_opens_every_batch(tmp_path: Path) -> None:
    """A v3 file has no ``is_open``: migrated in place, its batches start open (the next
    sweep settles the finished ones), and new writes and settles work on it."""
    path = tmp_path / "state.sqlite3"
    store = SqliteStateStore(path)
    store.put_batch(batch("20260101-000001"))
    store.close()
    rewind_state_file(path, 3, "DROP INDEX open_batches", "ALTER TABLE batches DROP COLUMN is_open")

    store = SqliteStateStore(path)
    try:
        assert store.open_batches().items == ["20260101-000001"]
        store.settle_batch("20260101-000001")
        store.put_batch(batch("20260101-000002"))
        assert store.open_batches().items == ["20260101-000002"]
    finally:
        store.close()
