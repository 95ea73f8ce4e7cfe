"""StateStore in one SQLite file (the embedded default; DynamoDB plays this part on AWS).

The adapter only stores and conditionally updates records; status rules, TTL and
dedup decisions belong to the service. ``sqlite3`` errors become ``StateError``
here, a lost conditional write ``ConditionFailedError``::

    state = SqliteStateStore(Path("imgpipe-data/state.sqlite3"))
    state.put_creator(record, expected=())            # claim: only if absent
    state.put_creator(done, expected=(CreatorStatus.PROCESSING,))
    state.close()

Threads: one connection behind a lock (``check_same_thread=False``). Every
operation is a single short statement, so serializing them costs nothing next
to downloads and rendering, and one connection makes ``close()`` final instead
of leaking a connection per pool thread. Other processes on the same file are
handled by SQLite itself: WAL mode lets readers run beside a writer and
``busy_timeout`` makes writers wait instead of failing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe.adapters.cursors import decode_cursor, encode_cursor
from imgpipe.adapters.sqlite_rows import (
    BATCH_FIELDS,
    BATCH_READ_FIELDS,
    CREATOR_FIELDS,
    OPEN_INDEX,
    SCHEMA,
    SCHEMA_VERSION,
    batch_from_row,
    batch_values,
    creator_from_row,
    creator_values,
    marks,
)
from imgpipe.domain.records import CreatorStatus
from imgpipe.errors import ConditionFailedError, ConflictError, StateError
from imgpipe.ports import Page

if TYPE_CHECKING:
    from imgpipe.domain.records import BatchRecord, CreatorRecord

__all__ = ["SqliteStateStore"]

_CREATOR_COLUMNS = ", ".join(CREATOR_FIELDS)
_PAGE = 500  # records per page when a batch's creators are streamed
_BATCH_COLUMNS = ", ".join(BATCH_READ_FIELDS)  # what a read returns
_BATCH_WRITTEN = ", ".join(BATCH_FIELDS)  # what put_batch writes


class SqliteStateStore:
    """Creator and batch records in one SQLite file; ``busy_timeout`` in seconds."""

    def __init__(self, path: Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: each statement commits on its own, so no
            # transaction is ever left open between calls.
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL
            self._conn.executescript(SCHEMA)
            self._migrate()
            self._conn.execute(OPEN_INDEX)
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"cannot open state database {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _migrate(self) -> None:
        """Older files lack the summary claim (v1), leases and batch TTL (v2), the open
        mark (v3: every old batch starts open, settled by its next sweep), the sweep's
        backoff (v4): add in place."""
        added = {
            "batches": (
                ("summary_claimed", "INTEGER NOT NULL DEFAULT 0"),
                ("ttl", "INTEGER NOT NULL DEFAULT 0"),
                ("owner", "TEXT NOT NULL DEFAULT ''"),
                ("is_open", "INTEGER NOT NULL DEFAULT 1"),
                ("sweep_failures", "INTEGER NOT NULL DEFAULT 0"),
                ("sweep_retry_at", "REAL NOT NULL DEFAULT 0"),
            ),
            "creators": (("lease_owner", "TEXT"), ("lease_expires", "REAL NOT NULL DEFAULT 0")),
        }
        for table, columns in added.items():
            present = {row["name"] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            for name, declaration in columns:
                if name not in present:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")

    # -- creators --------------------------------------------------------------

    def put_creator(
        self,
        record: CreatorRecord,
        *,
        expected: tuple[CreatorStatus, ...] | None = None,
        takeover_at: float | None = None,
        owner: str | None = None,
    ) -> None:
        """Upsert; ``expected=()`` inserts only if absent; else updates only from those statuses::

        state.put_creator(record, expected=(CreatorStatus.PENDING,))  # claim a pending one
        """
        values = creator_values(record)
        who = f"creator {record.creator_name!r} in batch {record.batch_id!r}"
        with self._session(who) as conn:
            if expected is None:
                conn.execute(
                    f"INSERT OR REPLACE INTO creators ({_CREATOR_COLUMNS}) "
                    f"VALUES ({marks(len(values))})",
                    values,
                )
                return
            if not expected:
                try:
                    conn.execute(
                        f"INSERT INTO creators ({_CREATOR_COLUMNS}) VALUES ({marks(len(values))})",
                        values,
                    )
                except sqlite3.IntegrityError as exc:
                    raise ConditionFailedError(f"{who} already exists") from exc
                return
            self._update_from(conn, record, expected, takeover_at=takeover_at, owner=owner)

    def put_creators(self, records: Sequence[CreatorRecord], *, if_absent: bool) -> None:
        """One transaction; ``if_absent`` is INSERT OR IGNORE, else INSERT OR REPLACE."""
        verb = "INSERT OR IGNORE" if if_absent else "INSERT OR REPLACE"
        with self._session(f"{len(records)} creator records") as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    f"{verb} INTO creators ({_CREATOR_COLUMNS}) "
                    f"VALUES ({marks(len(CREATOR_FIELDS))})",
                    [creator_values(r) for r in records],
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @staticmethod
    def _update_from(
        conn: sqlite3.Connection,
        record: CreatorRecord,
        expected: tuple[CreatorStatus, ...],
        *,
        takeover_at: float | None = None,
        owner: str | None = None,
    ) -> None:
        """Update ``record`` only if its stored status is one of ``expected`` (see the port)."""
        who = f"creator {record.creator_name!r} in batch {record.batch_id!r}"
        # One statement: the status test and the write cannot be split by another writer.
        assignments = ", ".join(f"{name} = ?" for name in CREATOR_FIELDS)
        statuses = [status.value for status in expected]
        condition = f"status IN ({marks(len(statuses))})"
        params: list[Any] = list(statuses)
        if takeover_at is not None:
            condition = f"({condition} OR (status = ? AND (lease_expires < ? OR lease_owner = ?)))"
            params += [CreatorStatus.PROCESSING.value, takeover_at, record.lease_owner]
        if owner is not None:
            condition += " AND lease_owner = ?"
            params.append(owner)
        try:
            cursor = conn.execute(
                f"UPDATE creators SET {assignments} WHERE creator_name = ? AND batch_id = ? "
                f"AND {condition}",
                (*creator_values(record), record.creator_name, record.batch_id, *params),
            )
        except sqlite3.IntegrityError as exc:
            raise ConditionFailedError(f"{who}: {exc}") from exc
        if cursor.rowcount != 1:
            held = f" held by {owner}" if owner else ""
            raise ConditionFailedError(
                f"{who} is not in status {', '.join(statuses)}{held} (or does not exist)"
            )

    def finish_creator(
        self,
        record: CreatorRecord,
        *,
        expected: tuple[CreatorStatus, ...],
        owner: str | None = None,
    ) -> BatchRecord | None:
        """Final write and batch count in one transaction (see ``StateStore``)."""
        counter = CreatorStatus(record.status).batch_counter
        with self._session(f"finish of creator {record.creator_name!r}") as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._update_from(conn, record, expected, owner=owner)
                conn.execute(
                    f"UPDATE batches SET {counter} = {counter} + 1 WHERE batch_id = ?",
                    (record.batch_id,),
                )
                row = conn.execute(
                    f"SELECT {_BATCH_COLUMNS} FROM batches WHERE batch_id = ?", (record.batch_id,)
                ).fetchone()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return batch_from_row(row) if row else None

    def claim_summary(self, batch_id: str, *, now: float, lease_seconds: float) -> bool:
        # summary_claimed holds the claim's epoch seconds (0: never claimed).
        with self._session(f"summary claim of batch {batch_id!r}") as conn:
            cursor = conn.execute(
                "UPDATE batches SET summary_claimed = ? WHERE batch_id = ? "
                "AND (summary_key IS NULL OR summary_key = '') "
                "AND (summary_claimed = 0 OR summary_claimed < ?)",
                (now, batch_id, now - lease_seconds),
            )
            return cursor.rowcount == 1

    def release_summary(self, batch_id: str, *, claimed_at: float) -> None:
        with self._session(f"summary release of batch {batch_id!r}") as conn:
            conn.execute(
                "UPDATE batches SET summary_claimed = 0 WHERE batch_id = ? AND summary_claimed = ?",
                (batch_id, claimed_at),
            )

    def get_creator(self, creator_name: str, batch_id: str) -> CreatorRecord | None:
        rows = self._query(
            f"SELECT {_CREATOR_COLUMNS} FROM creators WHERE creator_name = ? AND batch_id = ?",
            (creator_name, batch_id),
        )
        return creator_from_row(rows[0]) if rows else None

    def creators_in_batch(self, batch_id: str) -> Iterator[CreatorRecord]:
        """Streamed in pages by key, so a 30,000-creator batch never sits in memory at once."""
        after = ""
        while True:
            rows = self._query(
                f"SELECT {_CREATOR_COLUMNS} FROM creators WHERE batch_id = ? "
                "AND creator_name > ? ORDER BY creator_name LIMIT ?",
                (batch_id, after, _PAGE),
            )
            yield from (creator_from_row(row) for row in rows)
            if len(rows) < _PAGE:
                return
            after = rows[-1]["creator_name"]

    def creators_with_status(
        self, status: CreatorStatus, *, limit: int = 1000, processing_date: str | None = None
    ) -> list[CreatorRecord]:
        # Both forms are one range of the (status, processing_date) index.
        dated = "" if processing_date is None else "AND processing_date = ? "
        rows = self._query(
            f"SELECT {_CREATOR_COLUMNS} FROM creators WHERE status = ? {dated}"
            "ORDER BY processing_date LIMIT ?",
            (CreatorStatus(status).value, *([processing_date] if dated else []), limit),
        )
        return [creator_from_row(row) for row in rows]

    def creators_page(
        self, status: CreatorStatus, *, after: str | None = None, page_size: int = 500
    ) -> Page[CreatorRecord]:
        """Keyset pages of the (status, processing_date) index: each page is one range."""
        start = decode_cursor(after) if after is not None else None
        later = "" if start is None else "AND (processing_date, creator_name) > (?, ?) "
        rows = self._query(
            f"SELECT {_CREATOR_COLUMNS} FROM creators WHERE status = ? {later}"
            "ORDER BY processing_date, creator_name LIMIT ?",
            (CreatorStatus(status).value, *(start or ()), page_size + 1),
        )
        page = [creator_from_row(row) for row in rows[:page_size]]
        more = len(rows) > page_size
        cursor = encode_cursor([page[-1].processing_date, page[-1].creator_name]) if more else None
        return Page(page, cursor)

    def creator_history(self, creator_name: str, limit: int = 50) -> list[CreatorRecord]:
        """Records of one creator across batches, newest ``processing_date`` first."""
        rows = self._query(
            f"SELECT {_CREATOR_COLUMNS} FROM creators WHERE creator_name = ? "
            "ORDER BY processing_date DESC LIMIT ?",
            (creator_name, limit),
        )
        return [creator_from_row(row) for row in rows]

    # -- batches ---------------------------------------------------------------

    def put_batch(self, batch: BatchRecord) -> None:
        values = batch_values(batch)
        # Counters and the summary claim are kept from the stored row, as on DynamoDB:
        # other writers may have moved them since this copy was read.
        keep = {"batch_id", "completed", "failed", "skipped"}
        updates = ", ".join(f"{n} = excluded.{n}" for n in BATCH_FIELDS if n not in keep)
        updates += ", is_open = 1"  # every put opens the batch (see the port)
        with self._session(f"batch {batch.batch_id!r}") as conn:
            conn.execute(
                f"INSERT INTO batches ({_BATCH_WRITTEN}) VALUES ({marks(len(values))}) "
                f"ON CONFLICT(batch_id) DO UPDATE SET {updates}",
                values,
            )

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        rows = self._query(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE batch_id = ?", (batch_id,))
        return batch_from_row(rows[0]) if rows else None

    def list_batches(self, limit: int = 50) -> list[BatchRecord]:
        """Newest ``created_at`` first."""
        rows = self._query(
            f"SELECT {_BATCH_COLUMNS} FROM batches ORDER BY created_at DESC, batch_id DESC LIMIT ?",
            (limit,),
        )
        return [batch_from_row(row) for row in rows]

    def open_batches(self, *, after: str | None = None, page_size: int = 100) -> Page[str]:
        start = decode_cursor(after)[0] if after is not None else ""
        rows = self._query(
            "SELECT batch_id FROM batches WHERE is_open = 1 AND batch_id > ? "
            "ORDER BY batch_id LIMIT ?",
            (start, page_size + 1),
        )
        ids = [row["batch_id"] for row in rows[:page_size]]
        return Page(ids, encode_cursor([ids[-1]]) if len(rows) > page_size else None)

    def settle_batch(self, batch_id: str) -> None:
        with self._session(f"batch {batch_id!r}") as conn:
            conn.execute("UPDATE batches SET is_open = 0 WHERE batch_id = ?", (batch_id,))

    def set_sweep_backoff(self, batch_id: str, *, failures: int, retry_at: float) -> None:
        with self._session(f"sweep backoff of batch {batch_id!r}") as conn:
            conn.execute(
                "UPDATE batches SET sweep_failures = ?, sweep_retry_at = ? WHERE batch_id = ?",
                (failures, retry_at if failures else 0.0, batch_id),
            )

    # -- plumbing --------------------------------------------------------------

    @contextmanager
    def _session(self, what: str) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, with sqlite3 errors translated once."""
        with self._lock:
            try:
                yield self._conn
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):  # another process held it
                    raise ConflictError(f"state database {self.path}, {what}: {exc}") from exc
                raise StateError(f"state database {self.path}, {what}: {exc}") from exc
            except sqlite3.Error as exc:
                raise StateError(f"state database {self.path}, {what}: {exc}") from exc

    def _query(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        with self._session("query") as conn:
            return conn.execute(sql, params).fetchall()
