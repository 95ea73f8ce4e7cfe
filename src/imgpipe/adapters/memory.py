"""In-memory ObjectStore and StateStore: fakes for service unit tests.

Same semantics as the local adapters, including the ones that catch bugs: keys
are validated like a folder's, ``if_absent`` collides, records are copied on the
way in and out (a caller mutating its record does not change the store) and
JSON fields must be JSON-serializable. Thread-safe behind one lock::

    store, state = InMemoryObjectStore(), InMemoryStateStore()
    store.put("collages/a.jpg", b"...", if_absent=True)
    state.put_creator(record, expected=())
"""

from __future__ import annotations

import copy
import io
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, BinaryIO

from imgpipe.adapters.cursors import decode_cursor, encode_cursor
from imgpipe.adapters.local_store import check_key, check_range
from imgpipe.adapters.memory_queue import InMemoryWorkQueue, InProcessBatchLocks
from imgpipe.domain.records import CreatorStatus
from imgpipe.errors import ConditionFailedError, KeyCollisionError, StateError, StorageError
from imgpipe.ports import Page, StoredObject

if TYPE_CHECKING:
    from imgpipe.domain.records import BatchRecord, CreatorRecord

__all__ = [
    "InMemoryObjectStore",
    "InMemoryStateStore",
    "InMemoryWorkQueue",
    "InProcessBatchLocks",
]


class InMemoryObjectStore:
    """Keyed bytes in a dict; ``content_types`` keeps what ``put`` was told, for assertions."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}
        self._lock = threading.Lock()

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        check_key(key)
        with self._lock:
            if if_absent and key in self._objects:
                raise KeyCollisionError(f"key already exists: {key}")
            self._objects[key] = bytes(data)
            self.content_types[key] = content_type
        return StoredObject(key=key, size=len(data), url=self.url_for(key))

    def get(self, key: str) -> bytes:
        check_key(key)
        with self._lock:
            try:
                return self._objects[key]
            except KeyError:
                raise StorageError(f"no such key: {key}") from None

    def open(self, key: str) -> BinaryIO:
        return io.BytesIO(self.get(key))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_range(start, length)
        return self.get(key)[start : start + length]

    def exists(self, key: str) -> bool:
        check_key(key)
        with self._lock:
            return key in self._objects

    def size(self, key: str) -> int:
        return len(self.get(key))

    def move(self, source: str, target: str) -> None:
        check_key(target)
        data = self.get(source)
        with self._lock:
            self._objects[target] = data
            self.content_types[target] = self.content_types.pop(source, "")
            del self._objects[source]

    def delete(self, key: str) -> None:
        check_key(key)
        with self._lock:
            self._objects.pop(key, None)
            self.content_types.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        return iter(keys)

    def url_for(self, key: str, *, expires_in: int | None = None) -> str:
        return f"memory:///{key}"


class InMemoryStateStore:
    """Creator and batch records in dicts, with the SQLite store's conditional writes."""

    def __init__(self) -> None:
        self._creators: dict[tuple[str, str], CreatorRecord] = {}  # (name, batch_id)
        # (name, processing_date) -> batch_id: the SQLite primary key, also unique here.
        self._dates: dict[tuple[str, str], str] = {}
        self._batches: dict[str, BatchRecord] = {}
        self._claimed: dict[str, float] = {}  # batch id -> when its summary was claimed
        self._settled: set[str] = set()  # batch ids closed by settle_batch
        self._lock = threading.Lock()
        self._finish_lock = threading.Lock()

    def close(self) -> None:
        """Nothing to release; present so callers can close any state store."""

    def put_creator(
        self,
        record: CreatorRecord,
        *,
        expected: tuple[CreatorStatus, ...] | None = None,
        takeover_at: float | None = None,
        owner: str | None = None,
    ) -> None:
        # Stored as the SQLite store would give it back: metadata through JSON.
        record = replace(
            record,
            metadata=_through_json(record.metadata, f"metadata of {record.creator_name!r}"),
        )
        ident = (record.creator_name, record.batch_id)
        date = (record.creator_name, record.processing_date)
        who = f"creator {record.creator_name!r} in batch {record.batch_id!r}"
        with self._lock:
            stored = self._creators.get(ident)
            clash = self._dates.get(date, record.batch_id) != record.batch_id
            if expected is not None:
                if not expected and stored is not None:
                    raise ConditionFailedError(f"{who} already exists")
                if expected and not _qualifies(stored, record, expected, takeover_at, owner):
                    raise ConditionFailedError(
                        f"{who} is not in status {', '.join(s.value for s in expected)}"
                    )
                if clash:
                    raise ConditionFailedError(f"{who}: processing_date already used")
            if clash:  # an unconditional upsert replaces the clashing row (INSERT OR REPLACE)
                del self._creators[(record.creator_name, self._dates[date])]
            if stored is not None:
                del self._dates[(stored.creator_name, stored.processing_date)]
            self._creators[ident] = record
            self._dates[date] = record.batch_id

    def put_creators(self, records: Sequence[CreatorRecord], *, if_absent: bool) -> None:
        for record in records:
            try:
                self.put_creator(record, expected=() if if_absent else None)
            except ConditionFailedError:
                continue  # if_absent: a stored record stays as it is

    def finish_creator(
        self,
        record: CreatorRecord,
        *,
        expected: tuple[CreatorStatus, ...],
        owner: str | None = None,
    ) -> BatchRecord | None:
        counter = CreatorStatus(record.status).batch_counter
        with self._finish_lock:  # the write and the count happen together or not at all
            self.put_creator(record, expected=expected, owner=owner)
            with self._lock:
                batch = self._batches.get(record.batch_id)
                if batch is None:
                    return None
                setattr(batch, counter, getattr(batch, counter) + 1)
                return copy.deepcopy(batch)

    def claim_summary(self, batch_id: str, *, now: float, lease_seconds: float) -> bool:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None or batch.summary_key:
                return False
            claimed = self._claimed.get(batch_id)
            if claimed is not None and claimed >= now - lease_seconds:
                return False
            self._claimed[batch_id] = now
            return True

    def release_summary(self, batch_id: str, *, claimed_at: float) -> None:
        with self._lock:
            if self._claimed.get(batch_id) == claimed_at:
                del self._claimed[batch_id]

    def get_creator(self, creator_name: str, batch_id: str) -> CreatorRecord | None:
        with self._lock:
            return copy.deepcopy(self._creators.get((creator_name, batch_id)))

    def creators_in_batch(self, batch_id: str) -> Iterator[CreatorRecord]:
        with self._lock:
            found = [r for r in self._creators.values() if r.batch_id == batch_id]
            return iter(copy.deepcopy(sorted(found, key=lambda r: r.creator_name)))

    def creators_with_status(
        self, status: CreatorStatus, *, limit: int = 1000, processing_date: str | None = None
    ) -> list[CreatorRecord]:
        with self._lock:
            found = [
                r
                for r in self._creators.values()
                if r.status == status
                and (processing_date is None or r.processing_date == processing_date)
            ]
            found.sort(key=lambda r: r.processing_date)
            return copy.deepcopy(found[:limit])

    def creators_page(
        self, status: CreatorStatus, *, after: str | None = None, page_size: int = 500
    ) -> Page[CreatorRecord]:
        start = tuple(decode_cursor(after)) if after is not None else None
        with self._lock:
            found = sorted(
                (r for r in self._creators.values() if r.status == status),
                key=lambda r: (r.processing_date, r.creator_name),
            )
        if start is not None:
            found = [r for r in found if (r.processing_date, r.creator_name) > start]
        page = found[:page_size]
        more = len(found) > page_size
        cursor = encode_cursor([page[-1].processing_date, page[-1].creator_name]) if more else None
        return Page(copy.deepcopy(page), cursor)

    def creator_history(self, creator_name: str, limit: int = 50) -> list[CreatorRecord]:
        with self._lock:
            found = [r for r in self._creators.values() if r.creator_name == creator_name]
            found.sort(key=lambda r: r.processing_date, reverse=True)
            return copy.deepcopy(found[:limit])

    def put_batch(self, batch: BatchRecord) -> None:
        batch = replace(
            batch, settings=_through_json(batch.settings, f"settings of batch {batch.batch_id!r}")
        )
        with self._lock:
            stored = self._batches.get(batch.batch_id)
            if stored is not None:  # counters and backoff are kept, as the real stores do
                batch.completed, batch.failed = stored.completed, stored.failed
                batch.skipped = stored.skipped
                batch.sweep_failures = stored.sweep_failures
                batch.sweep_retry_at = stored.sweep_retry_at
            self._batches[batch.batch_id] = batch
            self._settled.discard(batch.batch_id)  # every put opens the batch

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        with self._lock:
            return copy.deepcopy(self._batches.get(batch_id))

    def list_batches(self, limit: int = 50) -> list[BatchRecord]:
        with self._lock:
            found = sorted(
                self._batches.values(), key=lambda b: (b.created_at, b.batch_id), reverse=True
            )
            return copy.deepcopy(found[:limit])

    def open_batches(self, *, after: str | None = None, page_size: int = 100) -> Page[str]:
        start = decode_cursor(after)[0] if after is not None else ""
        with self._lock:
            found = sorted(b for b in self._batches if b not in self._settled and b > start)
        more = len(found) > page_size
        return Page(found[:page_size], encode_cursor([found[page_size - 1]]) if more else None)

    def settle_batch(self, batch_id: str) -> None:
        with self._lock:
            if batch_id in self._batches:
                self._settled.add(batch_id)

    def set_sweep_backoff(self, batch_id: str, *, failures: int, retry_at: float) -> None:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is not None:
                batch.sweep_failures = failures
                batch.sweep_retry_at = retry_at if failures else 0.0


def _qualifies(
    stored: CreatorRecord | None,
    record: CreatorRecord,
    expected: tuple[CreatorStatus, ...],
    takeover_at: float | None,
    owner: str | None,
) -> bool:
    """The port's condition for a conditional write (see ``StateStore.put_creator``)."""
    if stored is None:
        return False
    if owner is not None and stored.lease_owner != owner:
        return False
    if stored.status in expected:
        return True
    return (
        takeover_at is not None
        and stored.status == CreatorStatus.PROCESSING
        and (stored.lease_expires < takeover_at or stored.lease_owner == record.lease_owner)
    )


def _through_json(value: dict[str, Any], what: str) -> dict[str, Any]:
    """A JSON round trip: a fresh copy shaped exactly as a real store returns it."""
    try:
        result: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))
        return result
    except (TypeError, ValueError) as exc:
        raise StateError(f"{what} is not JSON-serializable: {exc}") from exc
