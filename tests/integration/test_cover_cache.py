"""CoverCache on real temporary folders: entries, damage, eviction, threads and processes."""

from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from imgpipe.fetch.cover_cache import CachedCover, CoverCache, url_key

URL = "https://cdn.example/covers/a.jpg"


def cover(url: str = URL, body: bytes = b"x" * 100, etag: str | None = '"v1"') -> CachedCover:
    return CachedCover(url, len(body), "jpeg", url, "image/jpeg", (url,), etag=etag)


def entry_files(root: Path) -> list[Path]:
    """Entry files (not the index, not temp files)."""
    return [p for p in root.glob("*/*") if p.is_file() and not p.name.startswith(".")]


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in entry_files(root))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0  # every call is a distinct moment: a strict LRU order
        return self.now


def test_round_trip(tmp_path: Path) -> None:
    cache = CoverCache(tmp_path, 10_000)
    stored = cover(body=b"\xff\xd8\xff body")
    assert cache.store(stored, b"\xff\xd8\xff body")
    found = cache.lookup(URL)
    assert found == stored
    assert cache.load(stored) == b"\xff\xd8\xff body"
    # one file, fanned into a subfolder named by the key's first two hex digits
    [path] = entry_files(tmp_path)
    assert path == tmp_path / url_key(URL)[:2] / url_key(URL)
    assert cache.total_bytes() == path.stat().st_size


def test_keys_are_the_url_exactly_as_given(tmp_path: Path) -> None:
    cache = CoverCache(tmp_path, 10_000)
    cache.store(cover(), b"x" * 100)
    assert cache.lookup(URL + " ") is None
    assert cache.lookup(URL.upper()) is None
    odd = "https://cdn.example/\u00e9t\u00e9 cover.jpg?sig=\udcff"  # not even valid UTF-8
    assert cache.store(cover(odd), b"x" * 100)
    assert cache.lookup(odd) == cover(odd)


def test_a_new_entry_replaces_the_old_one(tmp_path: Path) -> None:
    cache = CoverCache(tmp_path, 10_000)
    old, new = cover(body=b"a" * 100), cover(body=b"b" * 50, etag='"v2"')
    cache.store(old, b"a" * 100)
    cache.store(new, b"b" * 50)
    assert cache.lookup(URL) == new
    assert cache.load(old) is None  # not the version that was asked about
    assert cache.load(new) == b"b" * 50
    assert cache.total_bytes() == folder_bytes(tmp_path)


def _damage_body(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:-10], id="truncated"),
        pytest.param(lambda data: data + b"more", id="padded"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: b"\x00" * len(data), id="zeroed"),
        pytest.param(lambda data: data.replace(b'"size":100', b'"size":"100"'), id="mistyped"),
        pytest.param(lambda data: data.replace(b"{", b"[", 1), id="not-json-object"),
        pytest.param(lambda data: data.replace(b"\n", b" ", 2), id="no-header-end"),
        pytest.param(_damage_body, id="flipped-body-byte"),
    ],
)
def test_a_damaged_entry_is_a_miss_and_is_removed(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    cache = CoverCache(tmp_path, 10_000)
    stored = cover()
    cache.store(stored, b"x" * 100)
    [path] = entry_files(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    # lookup reads the header only; load checks the body's digest as well
    assert cache.lookup(URL) is None or cache.load(stored) is None
    assert not path.exists()
    assert cache.total_bytes() == 0


def test_an_entry_of_another_url_under_the_same_key_is_a_miss(tmp_path: Path) -> None:
    cache = CoverCache(tmp_path, 10_000)
    cache.store(cover("https://other.example/b.jpg"), b"x" * 100)
    [path] = entry_files(tmp_path)
    target = tmp_path / url_key(URL)[:2] / url_key(URL)
    target.parent.mkdir(exist_ok=True)
    path.rename(target)  # as if two URLs hashed alike
    assert cache.lookup(URL) is None


def test_least_recently_used_entries_are_evicted_first(tmp_path: Path) -> None:
    body = b"x" * 200
    probe = CoverCache(tmp_path / "probe", 10_000)
    probe.store(cover("https://cdn.example/a.jpg", body), body)
    size = probe.total_bytes()  # one entry file: the body plus its header
    bound = 3 * size + size // 2  # room for three entries, not four
    cache = CoverCache(tmp_path / "covers", bound, clock=Clock())
    for name in "abc":
        assert cache.store(cover(f"https://cdn.example/{name}.jpg", body), body)
    assert cache.load(cover("https://cdn.example/a.jpg", body)) == body  # a: used last now
    assert cache.store(cover("https://cdn.example/d.jpg", body), body)
    left = {name for name in "abcd" if cache.lookup(f"https://cdn.example/{name}.jpg")}
    assert left == {"a", "c", "d"}  # b was the least recently used
    assert folder_bytes(tmp_path / "covers") == cache.total_bytes() == 3 * size <= bound


def test_an_entry_larger_than_the_whole_cache_is_not_stored(tmp_path: Path) -> None:
    cache = CoverCache(tmp_path, 500)
    assert not cache.store(cover(body=b"x" * 500), b"x" * 500)
    assert entry_files(tmp_path) == []


def test_zero_bytes_turns_it_off(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = CoverCache(root, 0)
    assert not cache.enabled
    assert not cache.store(cover(), b"x" * 100)
    assert cache.lookup(URL) is None and cache.load(cover()) is None
    assert not root.exists()


def test_a_lost_index_counts_entries_again_when_they_are_read(tmp_path: Path) -> None:
    cache = CoverCache(tmp_path, 10_000)
    stored = cover()
    cache.store(stored, b"x" * 100)
    for leftover in tmp_path.glob("index.sqlite3*"):
        leftover.unlink()
    fresh = CoverCache(tmp_path, 10_000)
    assert fresh.total_bytes() == 0
    assert fresh.load(stored) == b"x" * 100
    assert fresh.total_bytes() == folder_bytes(tmp_path) > 0


@pytest.mark.parametrize("error", [sqlite3.OperationalError("disk I/O error"), RuntimeError("bug")])
def test_an_index_failure_mid_transaction_leaves_the_next_operation_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    # Each thread keeps its index connection: one that failed inside an eviction
    # must not stay mid-transaction (the next BEGIN would fail) or stay broken.
    cache = CoverCache(tmp_path, 1000)  # room for one 300-byte cover and its header
    assert cache.store(cover("https://cdn.example/a.jpg", b"a" * 300), b"a" * 300)

    def failing(*_: object) -> list[str]:
        raise error

    monkeypatch.setattr(CoverCache, "_victims", staticmethod(failing))
    with pytest.raises(type(error)) if isinstance(error, RuntimeError) else _no_raise():
        # The second cover goes over the bound: eviction fails inside its transaction.
        assert not cache.store(cover("https://cdn.example/b.jpg", b"b" * 300), b"b" * 300)
    monkeypatch.undo()
    assert cache.store(cover("https://cdn.example/c.jpg", b"c" * 300), b"c" * 300)
    assert cache.load(cover("https://cdn.example/c.jpg", b"c" * 300)) == b"c" * 300
    assert cache.total_bytes() == folder_bytes(tmp_path) <= 1000


def test_threads_storing_and_loading_keep_the_bound_and_the_bytes(tmp_path: Path) -> None:
    cache = CoverCache(tmp_path, 5000)
    errors: list[str] = []

    def work(worker: int) -> None:
        for round_ in range(20):
            url = f"https://cdn.example/{worker}-{round_ % 7}.jpg"
            body = bytes([worker]) * (100 + round_)
            cache.store(cover(url, body), body)
            got = cache.load(cover(url, body))
            if got is not None and got != body:
                errors.append(f"{url}: wrong bytes")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert folder_bytes(tmp_path) <= 5000
    assert list(tmp_path.glob("*/.*.tmp")) == []


def _store_repeatedly(root: str, worker: int, start: threading.Barrier) -> None:
    cache = CoverCache(Path(root), 1_000_000)
    start.wait()
    for round_ in range(60):
        body = bytes([worker, round_ % 256]) * (500 + 37 * worker)
        cache.store(cover(URL, body, etag=f'"{worker}-{round_}"'), body)


def test_two_processes_writing_one_key_leave_a_valid_entry(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")  # no fork of a threaded test runner
    barrier = context.Barrier(2)
    workers = [
        context.Process(target=_store_repeatedly, args=(str(tmp_path), n, barrier)) for n in (1, 2)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=60)
    assert [process.exitcode for process in workers] == [0, 0]
    cache = CoverCache(tmp_path, 1_000_000)
    found = cache.lookup(URL)
    assert found is not None
    body = cache.load(found)
    assert body is not None and len(body) == found.size
    worker = body[0]
    assert worker in (1, 2)
    assert found.etag == f'"{worker}-{body[1]}"'  # header and body of the same write
    assert len(entry_files(tmp_path)) == 1
    assert list(tmp_path.glob("*/.*.tmp")) == []
    assert cache.total_bytes() == folder_bytes(tmp_path)


def _no_raise() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()
