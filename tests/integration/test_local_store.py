"""LocalObjectStore on a real temporary folder."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from imgpipe.adapters.local_store import LocalObjectStore
from imgpipe.errors import KeyCollisionError, StorageError
from tests.support.stream_contract import check_get_range, check_open_streams_a_csv


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(root: Path) -> LocalObjectStore:
    return LocalObjectStore(root)


def all_files(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())


def test_round_trip(store: LocalObjectStore, root: Path) -> None:
    key = "collages/by-creator/Zoë/collage_20260102_030405.jpg"
    obj = store.put(key, b"jpeg bytes", content_type="image/jpeg", metadata={"a": "b"})
    path = root / "collages" / "by-creator" / "Zoë" / "collage_20260102_030405.jpg"
    assert (obj.key, obj.size, obj.url) == (key, 10, path.as_uri())
    assert path.read_bytes() == b"jpeg bytes"
    assert store.get(key) == b"jpeg bytes"
    assert store.exists(key) and store.url_for(key) == path.as_uri()
    assert all_files(root) == [key]


def test_overwrite_replaces_and_delete_removes(store: LocalObjectStore) -> None:
    store.put("a/b.txt", b"one")
    store.put("a/b.txt", b"two")
    assert store.get("a/b.txt") == b"two"
    store.delete("a/b.txt")
    store.delete("a/b.txt")  # missing is fine
    assert not store.exists("a/b.txt")


def test_if_absent_collision_keeps_the_original(store: LocalObjectStore, root: Path) -> None:
    store.put("x/k.jpg", b"first", if_absent=True)
    with pytest.raises(KeyCollisionError, match="x/k.jpg"):
        store.put("x/k.jpg", b"second", if_absent=True)
    assert store.get("x/k.jpg") == b"first"
    assert all_files(root) == ["x/k.jpg"]  # the losing temp file is gone too


def test_if_absent_race_has_exactly_one_winner(store: LocalObjectStore) -> None:
    barrier = threading.Barrier(16)
    winners: list[int] = []
    losers: list[int] = []

    def claim(i: int) -> None:
        barrier.wait()
        try:
            store.put("race/k.bin", bytes([i]) * 1000, if_absent=True)
            winners.append(i)
        except KeyCollisionError:
            losers.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(losers) == 15
    assert store.get("race/k.bin") == bytes([winners[0]]) * 1000
    assert list(store.list()) == ["race/k.bin"]


def test_readers_never_see_a_partial_write(store: LocalObjectStore) -> None:
    payloads = [b"A" * 2_000_000, b"B" * 1_000_000]
    store.put("big.bin", payloads[0])
    stop = threading.Event()
    seen: set[bytes] = set()

    def writer() -> None:
        for i in range(40):
            store.put("big.bin", payloads[i % 2])
        stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not stop.is_set():
        data = store.get("big.bin")
        assert data in payloads
        seen.add(data[:1])
    thread.join()
    assert seen <= {b"A", b"B"} and seen


@pytest.mark.parametrize(
    "key",
    ["../x", "a/../../x", "/etc/passwd", "a\\b", "", "a//b", "a/./b", "a/", ".", "x\x00y"],
)
def test_unsafe_keys_are_refused(store: LocalObjectStore, tmp_path: Path, key: str) -> None:
    for call in (
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.url_for(key),
    ):
        with pytest.raises(StorageError, match="key"):
            call()
    assert all_files(tmp_path) == []


def test_a_symlink_cannot_lead_out_of_the_store(
    store: LocalObjectStore, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(StorageError, match="leaves the store"):
        store.put("link/x.txt", b"x")
    assert list(outside.iterdir()) == []


def test_missing_key_names_the_key(store: LocalObjectStore) -> None:
    with pytest.raises(StorageError, match="no such key: a/missing.jpg"):
        store.get("a/missing.jpg")
    assert not store.exists("a/missing.jpg")


def test_list_uses_a_string_prefix(store: LocalObjectStore) -> None:
    for key in ["a/b.txt", "a/bc/d.txt", "ab.txt", "b/x.txt", "a/b/e.txt"]:
        store.put(key, b"-")
    assert list(store.list("a/b")) == ["a/b.txt", "a/b/e.txt", "a/bc/d.txt"]
    assert list(store.list("a/b/")) == ["a/b/e.txt"]
    assert list(store.list("a")) == ["a/b.txt", "a/b/e.txt", "a/bc/d.txt", "ab.txt"]
    assert list(store.list()) == ["a/b.txt", "a/b/e.txt", "a/bc/d.txt", "ab.txt", "b/x.txt"]
    assert list(store.list("nope/")) == []
    assert list(store.list("../")) == []


def test_list_on_a_store_never_written_is_empty(tmp_path: Path) -> None:
    assert list(LocalObjectStore(tmp_path / "never").list()) == []


def test_no_temp_files_are_left_and_none_are_listed(store: LocalObjectStore, root: Path) -> None:
    for i in range(20):
        store.put(f"k/{i % 3}.bin", b"x" * i)
        try:
            store.put(f"k/{i % 3}.bin", b"y", if_absent=True)
        except KeyCollisionError:
            pass
    assert all_files(root) == ["k/0.bin", "k/1.bin", "k/2.bin"]
    (root / "k" / ".imgpipe-tmp-crashed").write_bytes(b"left by a killed process")
    assert list(store.list("k/")) == ["k/0.bin", "k/1.bin", "k/2.bin"]


def test_durable_mode_writes_the_same_bytes(root: Path) -> None:
    store = LocalObjectStore(root, durable=True)
    store.put("d/x.bin", b"synced", if_absent=True)
    assert (root / "d" / "x.bin").read_bytes() == b"synced"


def test_file_mode_follows_the_umask(store: LocalObjectStore, root: Path) -> None:
    mask = os.umask(0o022)
    try:
        store.put("m/x.bin", b"x")
        store.put("m/y.bin", b"y", if_absent=True)
    finally:
        os.umask(mask)
    assert (root / "m" / "x.bin").stat().st_mode & 0o777 == 0o644
    assert (root / "m" / "y.bin").stat().st_mode & 0o777 == 0o644


def test_os_errors_become_storage_errors(store: LocalObjectStore, root: Path) -> None:
    store.put("file", b"x")
    with pytest.raises(StorageError, match="cannot write file/child") as info:
        store.put("file/child", b"y")  # a file where a folder must be
    assert not isinstance(info.value, KeyCollisionError)
    with pytest.raises(StorageError, match="cannot write file/child"):
        store.put("file/child", b"y", if_absent=True)
    root.joinpath("dir").mkdir()
    with pytest.raises(StorageError, match="cannot read dir"):
        store.get("dir")


def test_open_streams_an_object(store: LocalObjectStore) -> None:
    check_open_streams_a_csv(store)


def test_open_reader_keeps_its_bytes_while_the_key_is_replaced(store: LocalObjectStore) -> None:
    store.put("a.csv", b"old bytes")
    with store.open("a.csv") as stream:
        store.put("a.csv", b"new bytes")
        assert stream.read() == b"old bytes"


def test_get_range(store: LocalObjectStore) -> None:
    check_get_range(store)


def test_move_renames_within_the_folder_and_size_reads_no_bytes(store: LocalObjectStore) -> None:
    store.put("csv-files/a b.csv", b"creator,url\n")
    assert store.size("csv-files/a b.csv") == 12
    store.move("csv-files/a b.csv", "archived/processed/a b.csv")
    assert not store.exists("csv-files/a b.csv")
    assert store.get("archived/processed/a b.csv") == b"creator,url\n"
    with pytest.raises(StorageError, match="no such key"):
        store.move("csv-files/a b.csv", "archived/again.csv")
    with pytest.raises(StorageError, match="no such key"):
        store.size("csv-files/a b.csv")
