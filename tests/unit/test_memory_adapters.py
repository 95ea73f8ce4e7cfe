"""The in-memory fakes behave like the local adapters where services can tell.

The state-store contract itself also runs against the fake in
tests/integration/test_sqlite_state.py; these tests cover the object store and
the copy semantics a test double must get right.
"""

from __future__ import annotations

import threading

import pytest

from imgpipe.adapters.memory import InMemoryObjectStore, InMemoryStateStore
from imgpipe.domain.records import BatchRecord, CreatorRecord, CreatorStatus
from imgpipe.errors import ConditionFailedError, KeyCollisionError, StorageError
from tests.support.stream_contract import check_get_range, check_open_streams_a_csv


def test_object_round_trip_and_content_type() -> None:
    store = InMemoryObjectStore()
    obj = store.put("collages/a.jpg", b"abc", content_type="image/jpeg")
    assert (obj.key, obj.size, obj.url) == ("collages/a.jpg", 3, "memory:///collages/a.jpg")
    assert store.get("collages/a.jpg") == b"abc"
    assert store.content_types["collages/a.jpg"] == "image/jpeg"
    assert store.exists("collages/a.jpg") and store.url_for("x") == "memory:///x"


def test_if_absent_and_overwrite() -> None:
    store = InMemoryObjectStore()
    store.put("k", b"1", if_absent=True)
    with pytest.raises(KeyCollisionError, match="k"):
        store.put("k", b"2", if_absent=True)
    assert store.get("k") == b"1"
    store.put("k", b"3")
    assert store.get("k") == b"3"


def test_missing_and_delete() -> None:
    store = InMemoryObjectStore()
    with pytest.raises(StorageError, match="no such key: nope"):
        store.get("nope")
    store.put("a", b"x")
    store.delete("a")
    store.delete("a")
    assert not store.exists("a") and "a" not in store.content_types


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a\\b", "", "a//b"])
def test_unsafe_keys_are_refused_like_a_folder_would(key: str) -> None:
    store = InMemoryObjectStore()
    with pytest.raises(StorageError, match="invalid object key"):
        store.put(key, b"x")
    with pytest.raises(StorageError, match="invalid object key"):
        store.exists(key)
    assert list(store.list()) == []


def test_list_uses_a_string_prefix_sorted() -> None:
    store = InMemoryObjectStore()
    for key in ["b/x", "a/bc/d", "ab", "a/b"]:
        store.put(key, b"")
    assert list(store.list("a/b")) == ["a/b", "a/bc/d"]
    assert list(store.list()) == ["a/b", "a/bc/d", "ab", "b/x"]


def test_stored_bytes_are_a_copy() -> None:
    store = InMemoryObjectStore()
    data = bytearray(b"abc")
    store.put("k", data)  # type: ignore[arg-type]  # services may pass buffers
    data[0] = ord("z")
    assert store.get("k") == b"abc"


def test_records_are_copied_in_and_out() -> None:
    state = InMemoryStateStore()
    record = CreatorRecord("Ann", "2026", "b1", CreatorStatus.PENDING, metadata={"a": [1]})
    state.put_creator(record)
    record.metadata["a"].append(2)
    got = state.get_creator("Ann", "b1")
    assert got is not None and got.metadata == {"a": [1]}
    got.metadata["a"].append(3)
    assert state.get_creator("Ann", "b1").metadata == {"a": [1]}  # type: ignore[union-attr]


def test_json_fields_come_back_as_json_would() -> None:
    state = InMemoryStateStore()
    state.put_creator(
        CreatorRecord("Ann", "2026", "b1", CreatorStatus.PENDING, metadata={"t": (1, 2), 3: "x"})  # type: ignore[dict-item]
    )
    state.put_batch(BatchRecord("b1", "2026", "x.csv", settings={"size": (800, 800)}))
    assert state.get_creator("Ann", "b1").metadata == {"t": [1, 2], "3": "x"}  # type: ignore[union-attr]
    assert state.get_batch("b1").settings == {"size": [800, 800]}  # type: ignore[union-attr]


def test_claim_race_in_the_fake() -> None:
    state = InMemoryStateStore()
    barrier = threading.Barrier(8)
    wins: list[int] = []

    def claim(i: int) -> None:
        barrier.wait()
        try:
            state.put_creator(CreatorRecord("Ann", "d", "b1", CreatorStatus.PENDING), expected=())
            wins.append(i)
        except ConditionFailedError:
            pass

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    state.close()
    assert state.get_creator("Ann", "b1") is not None


def test_open_and_get_range_keep_the_store_contract() -> None:
    check_open_streams_a_csv(InMemoryObjectStore())
    check_get_range(InMemoryObjectStore())


def test_move_and_size() -> None:
    store = InMemoryObjectStore()
    store.put("csv-files/a.csv", b"abc", content_type="text/csv")
    assert store.size("csv-files/a.csv") == 3
    store.move("csv-files/a.csv", "archived/processed/a.csv")
    assert not store.exists("csv-files/a.csv")
    assert store.get("archived/processed/a.csv") == b"abc"
    assert store.content_types["archived/processed/a.csv"] == "text/csv"
    with pytest.raises(StorageError):
        store.move("csv-files/a.csv", "elsewhere.csv")
