"""The SQLite state file's schema, and records as its rows and back.

Kept apart from :mod:`imgpipe.adapters.sqlite_state` (the store's behaviour: which
write is conditional on what) as :mod:`.dynamodb_table` is from the DynamoDB store.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from imgpipe.domain.records import BatchRecord, BatchStatus, CreatorRecord, CreatorStatus
from imgpipe.errors import StateError

__all__ = [
    "BATCH_FIELDS",
    "BATCH_READ_FIELDS",
    "CREATOR_FIELDS",
    "OPEN_INDEX",
    "SCHEMA",
    "SCHEMA_VERSION",
    "batch_from_row",
    "batch_values",
    "creator_from_row",
    "creator_values",
    "marks",
    "to_json",
]

SCHEMA_VERSION = 5
SCHEMA = """
CREATE TABLE IF NOT EXISTS creators (
    creator_name TEXT NOT NULL,
    processing_date TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    status TEXT NOT NULL,
    images_processed INTEGER NOT NULL,
    collage_key TEXT,
    processing_duration REAL NOT NULL,
    error_count INTEGER NOT NULL,
    fingerprint TEXT,
    metadata TEXT NOT NULL,
    ttl INTEGER NOT NULL,
    lease_owner TEXT,
    lease_expires REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (creator_name, processing_date),
    UNIQUE (creator_name, batch_id)
);
CREATE INDEX IF NOT EXISTS creators_by_batch ON creators (batch_id);
CREATE INDEX IF NOT EXISTS creators_by_status_date ON creators (status, processing_date);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    total_creators INTEGER NOT NULL,
    completed INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    summary_key TEXT,
    finished_at TEXT,
    settings TEXT NOT NULL,
    summary_claimed INTEGER NOT NULL DEFAULT 0,
    ttl INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT '',
    is_open INTEGER NOT NULL DEFAULT 1,
    sweep_failures INTEGER NOT NULL DEFAULT 0,
    sweep_retry_at REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS batches_by_created ON batches (created_at);
"""
# Created once the migration has added ``is_open`` to an older file.
OPEN_INDEX = "CREATE INDEX IF NOT EXISTS open_batches ON batches (batch_id) WHERE is_open = 1"
CREATOR_FIELDS = (
    "creator_name", "processing_date", "batch_id", "status", "images_processed",
    "collage_key", "processing_duration", "error_count", "fingerprint", "metadata", "ttl",
    "lease_owner", "lease_expires",
)  # fmt: skip
BATCH_FIELDS = (
    "batch_id", "created_at", "source", "status", "total_creators", "completed",
    "failed", "skipped", "summary_key", "finished_at", "settings", "ttl", "owner",
)  # fmt: skip
# Read with the batch, written only by ``set_sweep_backoff`` (``put_batch`` keeps them).
BATCH_READ_FIELDS = (*BATCH_FIELDS, "sweep_failures", "sweep_retry_at")


def marks(n: int) -> str:
    return ", ".join("?" * n)


# Reused: json.dumps with options builds a new encoder on every call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def to_json(value: dict[str, Any], what: str) -> str:
    try:
        return _ENCODE(value)
    except (TypeError, ValueError) as exc:
        raise StateError(f"{what} is not JSON-serializable: {exc}") from exc


def creator_values(r: CreatorRecord) -> tuple[Any, ...]:
    metadata = to_json(r.metadata, f"metadata of creator {r.creator_name!r}")
    return (
        r.creator_name, r.processing_date, r.batch_id, CreatorStatus(r.status).value,
        r.images_processed, r.collage_key, r.processing_duration, r.error_count,
        r.fingerprint, metadata, r.ttl, r.lease_owner, r.lease_expires,
    )  # fmt: skip


def creator_from_row(row: sqlite3.Row) -> CreatorRecord:
    data = dict(zip(CREATOR_FIELDS, row, strict=True))
    data["status"] = CreatorStatus(data["status"])
    data["metadata"] = json.loads(data["metadata"])
    return CreatorRecord(**data)


def batch_values(b: BatchRecord) -> tuple[Any, ...]:
    settings = to_json(b.settings, f"settings of batch {b.batch_id!r}")
    return (
        b.batch_id, b.created_at, b.source, BatchStatus(b.status).value, b.total_creators,
        b.completed, b.failed, b.skipped, b.summary_key, b.finished_at, settings, b.ttl, b.owner,
    )  # fmt: skip


def batch_from_row(row: sqlite3.Row) -> BatchRecord:
    data = dict(zip(BATCH_READ_FIELDS, tuple(row)[: len(BATCH_READ_FIELDS)], strict=True))
    data["status"] = BatchStatus(data["status"])
    data["settings"] = json.loads(data["settings"])
    return BatchRecord(**data)
