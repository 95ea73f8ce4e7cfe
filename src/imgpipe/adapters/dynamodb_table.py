"""The DynamoDB state table's layout, and records as its items and back.

Kept apart from :mod:`imgpipe.adapters.dynamodb_state` because this is the table's
shape, not the store's behaviour: what the SAM template and Terraform must declare
(``create_state_table``, which tests compare them against) and how a record is
spelled in the low-level attribute-value form boto3's client speaks (``{"S": ...}``).
The store decides when to write, under which condition, and how a refusal is
translated; nothing here reads or writes a record.

The layout, shared with the original system's table:

* creators: partition key ``creator_name``, sort key ``processing_date`` (the batch
  start), indexes ``batch-id-index`` (batch_id, processing_date) and
  ``status-date-index`` (status, processing_date), TTL attribute ``ttl``;
  ``metadata`` is a JSON string; ``collage_key``, ``fingerprint`` and the claim
  (``lease_owner``, ``lease_expires``) are left out when unset, so the sparse
  indexes and the take-over condition see "absent", never an empty value;
* batches share the table in one partition of their own, ``creator_name =
  "/batches"`` (no creator key contains ``/``: ``creator_key`` replaces it), sorted
  by batch id (which starts with a timestamp). They carry no ``batch_id`` or
  ``status`` attribute (``ref`` and ``batch_status``), so the two sparse indexes
  only ever hold creators;
* ``open-batch-index`` (open_batch, processing_date), keys only, holds the batches
  that carry ``open_batch``: every batch write sets it, the sweep removes it once
  the batch is final and its notice no longer owed. So the sweep reads the few open
  batches, not every batch of the TTL's 30 days; keys only, so a finishing
  creator's counter update (one per creator) never writes to it.

Example::

    >>> from imgpipe.domain.records import CreatorRecord, CreatorStatus
    >>> record = CreatorRecord("ann", "2024-05-01T00:00:00Z", "b1", CreatorStatus.PENDING)
    >>> item = creator_item(record)
    >>> item["status"], "lease_owner" in item
    ({'S': 'pending'}, False)
    >>> creator_from_item(item) == record
    True
    >>> batch_key("b1")["creator_name"]
    {'S': '/batches'}
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from imgpipe.domain.records import BatchRecord, BatchStatus, CreatorRecord, CreatorStatus
from imgpipe.errors import StateError

__all__ = [
    "BATCH_INDEX",
    "BATCH_PARTITION",
    "INDEXES",
    "MAX_ITEM_BYTES",
    "OPEN",
    "OPEN_BATCH_INDEX",
    "STATUS_INDEX",
    "add_missing_indexes",
    "batch_from_item",
    "batch_item",
    "batch_key",
    "create_state_table",
    "creator_from_item",
    "creator_item",
    "item_size",
]

BATCH_PARTITION = "/batches"  # creator_key() never emits "/"
BATCH_INDEX = "batch-id-index"
STATUS_INDEX = "status-date-index"
OPEN_BATCH_INDEX = "open-batch-index"
OPEN = "open"  # the one value of ``open_batch``: the index's single partition
MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's limit on one item, names and values together


_KEYS = ("creator_name", "processing_date", "batch_id", "status", "open_batch")  # all strings


def _attributes(names: Any) -> list[dict[str, str]]:
    return [{"AttributeName": name, "AttributeType": "S"} for name in names]


def _index(name: str, hash_key: str, projection: str = "ALL") -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": "processing_date", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": projection},
    }


INDEXES = (
    _index(BATCH_INDEX, "batch_id"),
    _index(STATUS_INDEX, "status"),
    _index(OPEN_BATCH_INDEX, "open_batch", "KEYS_ONLY"),
)


def create_state_table(client: Any, name: str) -> None:
    """Create the table as the SAM template declares it (tests, ``imgpipe aws-init``)."""
    client.create_table(
        TableName=name,
        AttributeDefinitions=_attributes(_KEYS),
        KeySchema=[
            {"AttributeName": "creator_name", "KeyType": "HASH"},
            {"AttributeName": "processing_date", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=list(INDEXES),
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name)
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
    )


def add_missing_indexes(client: Any, name: str, *, poll_seconds: float = 5.0) -> list[str]:
    """Give a table made by an earlier version the indexes it lacks (``open-batch-index``),
    one at a time as DynamoDB requires, each waited for until active; their names."""
    added = []
    for index in INDEXES:
        table = client.describe_table(TableName=name)["Table"]
        if index["IndexName"] in {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}:
            continue
        client.update_table(
            TableName=name,
            AttributeDefinitions=_attributes(k["AttributeName"] for k in index["KeySchema"]),
            GlobalSecondaryIndexUpdates=[{"Create": index}],
        )
        while not _active(client, name, index["IndexName"]):
            time.sleep(poll_seconds)  # AWS builds the index over the table's items first
        added.append(index["IndexName"])
    return added


def _active(client: Any, table: str, index: str) -> bool:
    described = client.describe_table(TableName=table)["Table"]
    statuses = {i["IndexName"]: i.get("IndexStatus") for i in described["GlobalSecondaryIndexes"]}
    return statuses.get(index, "CREATING") in ("ACTIVE", None)  # moto may leave it out


def batch_key(batch_id: str) -> dict[str, Any]:
    """The primary key of a batch's item."""
    return {"creator_name": {"S": BATCH_PARTITION}, "processing_date": {"S": batch_id}}


def creator_item(r: CreatorRecord) -> dict[str, Any]:
    """The whole item of one creator record (optional attributes only when set)."""
    item: dict[str, Any] = {
        "creator_name": {"S": r.creator_name},
        "processing_date": {"S": r.processing_date},
        "batch_id": {"S": r.batch_id},
        "status": {"S": CreatorStatus(r.status).value},
        "images_processed": {"N": str(r.images_processed)},
        "processing_duration": {"N": str(Decimal(str(r.processing_duration)))},
        "error_count": {"N": str(r.error_count)},
        "metadata": {"S": _json(r.metadata, f"metadata of creator {r.creator_name!r}")},
        "ttl": {"N": str(r.ttl)},
    }
    if r.collage_key:
        item["collage_key"] = {"S": r.collage_key}
    if r.fingerprint:
        item["fingerprint"] = {"S": r.fingerprint}
    if r.lease_owner:
        item["lease_owner"] = {"S": r.lease_owner}
        item["lease_expires"] = {"N": f"{r.lease_expires:.3f}"}
    return _guarded(item, f"creator {r.creator_name!r} in batch {r.batch_id!r}")


def creator_from_item(item: dict[str, Any]) -> CreatorRecord:
    return CreatorRecord(
        creator_name=item["creator_name"]["S"],
        processing_date=item["processing_date"]["S"],
        batch_id=item["batch_id"]["S"],
        status=CreatorStatus(item["status"]["S"]),
        images_processed=int(item["images_processed"]["N"]),
        collage_key=item.get("collage_key", {}).get("S"),
        processing_duration=float(item["processing_duration"]["N"]),
        error_count=int(item["error_count"]["N"]),
        fingerprint=item.get("fingerprint", {}).get("S"),
        metadata=json.loads(item["metadata"]["S"]),
        ttl=int(item["ttl"]["N"]),
        lease_owner=item.get("lease_owner", {}).get("S"),
        lease_expires=float(item.get("lease_expires", {}).get("N", 0)),
    )


def batch_item(batch: BatchRecord) -> dict[str, Any]:
    """The whole item of one batch record, key included (``summary_claimed`` is the
    store's: it is only ever set and removed by conditional updates; ``sweep_failures``
    and ``sweep_retry_at`` only by ``set_sweep_backoff``, present only while failing)."""
    item = {
        **batch_key(batch.batch_id),
        "ref": {"S": batch.batch_id},
        "created_at": {"S": batch.created_at},
        "source": {"S": batch.source},
        "batch_status": {"S": BatchStatus(batch.status).value},
        "total_creators": {"N": str(batch.total_creators)},
        "completed": {"N": str(batch.completed)},
        "failed": {"N": str(batch.failed)},
        "skipped": {"N": str(batch.skipped)},
        "settings": {"S": _json(batch.settings, f"settings of batch {batch.batch_id!r}")},
        "owner": {"S": batch.owner},
        "ttl": {"N": str(batch.ttl)},
        "open_batch": {"S": OPEN},  # every write opens the batch (see the port)
    }
    if batch.summary_key:
        item["summary_key"] = {"S": batch.summary_key}
    if batch.finished_at:
        item["finished_at"] = {"S": batch.finished_at}
    return _guarded(item, f"batch {batch.batch_id!r}")


def item_size(item: dict[str, Any]) -> int:
    """The item's size as DynamoDB counts it against its limit: the UTF-8 bytes of
    every attribute name and string value, and (a slight over-estimate) of every
    number's digits.

    >>> item_size({"a": {"S": "é"}, "n": {"N": "12"}})
    6
    """
    return sum(
        len(name.encode()) + len(next(iter(value.values())).encode())
        for name, value in item.items()
    )


def _guarded(item: dict[str, Any], what: str) -> dict[str, Any]:
    # DynamoDB would refuse the write with a ValidationException that names neither
    # the creator nor the size; the ledger keeps records well under the limit (see
    # imgpipe.service.creator_covers), so this is the last line, not the rule.
    size = item_size(item)
    if size > MAX_ITEM_BYTES:
        raise StateError(
            f"the item of {what} would be {size:,} bytes, over DynamoDB's "
            f"{MAX_ITEM_BYTES:,}-byte item limit"
        )
    return item


def batch_from_item(item: dict[str, Any]) -> BatchRecord:
    return BatchRecord(
        batch_id=item["ref"]["S"],
        created_at=item["created_at"]["S"],
        source=item["source"]["S"],
        status=BatchStatus(item["batch_status"]["S"]),
        total_creators=int(item["total_creators"]["N"]),
        completed=int(item.get("completed", {}).get("N", 0)),
        failed=int(item.get("failed", {}).get("N", 0)),
        skipped=int(item.get("skipped", {}).get("N", 0)),
        summary_key=item.get("summary_key", {}).get("S"),
        finished_at=item.get("finished_at", {}).get("S"),
        settings=json.loads(item["settings"]["S"]),
        ttl=int(item.get("ttl", {}).get("N", 0)),
        owner=item.get("owner", {}).get("S", ""),
        sweep_failures=int(item.get("sweep_failures", {}).get("N", 0)),
        sweep_retry_at=float(item.get("sweep_retry_at", {}).get("N", 0)),
    )


def _json(value: dict[str, Any], what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StateError(f"{what} is not JSON-serializable: {exc}") from exc
