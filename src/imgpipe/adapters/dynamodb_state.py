"""StateStore on the original system's DynamoDB table.

Creator records: partition key ``creator_name``, sort key ``processing_date``
(the batch start), indexes ``batch-id-index`` (batch_id, processing_date) and
``status-date-index`` (status, processing_date), TTL attribute ``ttl``.

Batch records share the table in one partition of their own,
``creator_name = "/batches"`` (no creator key contains ``/``: ``creator_key``
replaces it), sorted by batch id (which starts with a timestamp). They
carry no ``batch_id`` or ``status`` attribute (``ref`` and ``batch_status``), so
the two sparse indexes only ever hold creators.

Conditional writes make status changes safe between workers; ``finish_creator``
is one transaction (final record + batch counter), so a redelivered message can
never count a creator twice::

    state = DynamoStateStore("imgpipe-state", settings=settings)
    state.put_creator(record, expected=(CreatorStatus.PENDING,))
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from imgpipe.adapters.aws_clients import aws_error_code, make_client
from imgpipe.domain.records import BatchRecord, BatchStatus, CreatorRecord, CreatorStatus
from imgpipe.errors import ConditionFailedError, ConflictError, StateError
from imgpipe.settings import Settings

__all__ = ["BATCH_PARTITION", "DynamoStateStore", "create_state_table"]

BATCH_PARTITION = "/batches"  # creator_key() never emits "/"
BATCH_INDEX = "batch-id-index"
STATUS_INDEX = "status-date-index"
_CONDITION_FAILED = "ConditionalCheckFailedException"
# What DynamoDB answers under contention or load: nothing was written, and botocore
# does not retry TransactionConflict at all (the service does, with jitter).
_CONTENTION = frozenset(
    {
        "TransactionConflictException",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TransactionInProgressException",
    }
)
_CANCELLED_BY_CONTENTION = frozenset({"TransactionConflict", "ThrottlingError"})
BATCH_WRITE_SIZE = 25  # BatchWriteItem's limit


def create_state_table(client: Any, name: str) -> None:
    """Create the table as the SAM template declares it (tests, ``imgpipe aws-init``)."""
    keys = [
        {"AttributeName": "creator_name", "AttributeType": "S"},
        {"AttributeName": "processing_date", "AttributeType": "S"},
        {"AttributeName": "batch_id", "AttributeType": "S"},
        {"AttributeName": "status", "AttributeType": "S"},
    ]

    def index(name: str, hash_key: str) -> dict[str, Any]:
        return {
            "IndexName": name,
            "KeySchema": [
                {"AttributeName": hash_key, "KeyType": "HASH"},
                {"AttributeName": "processing_date", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }

    client.create_table(
        TableName=name,
        AttributeDefinitions=keys,
        KeySchema=[
            {"AttributeName": "creator_name", "KeyType": "HASH"},
            {"AttributeName": "processing_date", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[index(BATCH_INDEX, "batch_id"), index(STATUS_INDEX, "status")],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name)
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
    )


class DynamoStateStore:
    """Creator and batch records in one DynamoDB table; ``client`` is injectable."""

    def __init__(
        self, table_name: str, *, client: Any | None = None, settings: Settings | None = None
    ) -> None:
        if not table_name:
            raise StateError("no table configured (IMGPIPE_DYNAMODB_TABLE_NAME)")
        self.table = table_name
        self._settings = settings
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client("dynamodb", self._settings)
        return self._client

    def close(self) -> None:
        """Nothing to release (HTTP connections are pooled by botocore)."""

    # -- creators --------------------------------------------------------------

    def put_creator(
        self,
        record: CreatorRecord,
        *,
        expected: tuple[CreatorStatus, ...] | None = None,
        takeover_at: float | None = None,
        owner: str | None = None,
    ) -> None:
        request = self._creator_put(record, expected, takeover_at=takeover_at, owner=owner)
        who = f"creator {record.creator_name!r} in batch {record.batch_id!r}"
        try:
            self.client.put_item(**request)
        except Exception as exc:
            code = aws_error_code(exc)
            if code == _CONDITION_FAILED:
                problem = "already exists" if expected == () else "is not in the expected state"
                raise ConditionFailedError(f"{who} {problem}") from exc
            if code in _CONTENTION:
                raise ConflictError(f"cannot write {who} now ({code})") from exc
            raise StateError(f"cannot write {who}: {exc}") from exc

    def put_creators(self, records: Sequence[CreatorRecord], *, if_absent: bool) -> None:
        """BatchWriteItem in 25s, unprocessed items sent again; ``if_absent`` needs one
        conditional put each (BatchWriteItem has no conditions), used only on replays."""
        if if_absent:
            for record in records:
                try:
                    self.put_creator(record, expected=())
                except ConditionFailedError:
                    continue
            return
        for start in range(0, len(records), BATCH_WRITE_SIZE):
            requests = [
                {"PutRequest": {"Item": _creator_item(r)}}
                for r in records[start : start + BATCH_WRITE_SIZE]
            ]
            self._batch_write(requests)

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        pending = {self.table: requests}
        for attempt in range(8):
            try:
                answer = self.client.batch_write_item(RequestItems=pending)
            except Exception as exc:
                if aws_error_code(exc) in _CONTENTION:
                    raise ConflictError(f"cannot write {len(requests)} creators now") from exc
                raise StateError(f"cannot write {len(requests)} creators: {exc}") from exc
            pending = answer.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.random())  # throttled: back off
        raise ConflictError(f"{len(pending[self.table])} creator writes stayed unprocessed")

    def finish_creator(
        self,
        record: CreatorRecord,
        *,
        expected: tuple[CreatorStatus, ...],
        owner: str | None = None,
    ) -> BatchRecord | None:
        counter = CreatorStatus(record.status).batch_counter
        who = f"creator {record.creator_name!r} in batch {record.batch_id!r}"
        batch_key = _batch_key(record.batch_id)
        items: list[dict[str, Any]] = [{"Put": self._creator_put(record, expected, owner=owner)}]
        batch = self._get(batch_key)
        if batch is not None:
            items.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": batch_key,
                        "UpdateExpression": "ADD #c :one",
                        "ExpressionAttributeNames": {"#c": counter},
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                }
            )
        try:
            self.client.transact_write_items(TransactItems=items)
        except Exception as exc:
            reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
            codes = {r.get("Code") for r in reasons}
            if "ConditionalCheckFailed" in codes:
                raise ConditionFailedError(f"{who}: not in the expected state") from exc
            if codes & _CANCELLED_BY_CONTENTION or aws_error_code(exc) in _CONTENTION:
                raise ConflictError(
                    f"cannot finish {who} now ({', '.join(map(str, codes))})"
                ) from exc
            raise StateError(f"cannot finish {who}: {exc}") from exc
        if batch is None:
            return None
        return self.get_batch(record.batch_id)

    def claim_summary(self, batch_id: str, *, now: float, lease_seconds: float) -> bool:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_batch_key(batch_id),
                UpdateExpression="SET summary_claimed = :now",
                ConditionExpression="attribute_exists(creator_name) AND "
                "attribute_not_exists(summary_key) AND "
                "(attribute_not_exists(summary_claimed) OR summary_claimed < :stale)",
                ExpressionAttributeValues={
                    ":now": {"N": f"{now:.3f}"},
                    ":stale": {"N": f"{now - lease_seconds:.3f}"},
                },
            )
        except Exception as exc:
            code = aws_error_code(exc)
            if code == _CONDITION_FAILED:
                return False
            if code in _CONTENTION:
                raise ConflictError(f"cannot claim the summary of {batch_id!r} now") from exc
            raise StateError(f"cannot claim the summary of batch {batch_id!r}: {exc}") from exc
        return True

    def release_summary(self, batch_id: str, *, claimed_at: float) -> None:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_batch_key(batch_id),
                UpdateExpression="REMOVE summary_claimed",
                ConditionExpression="summary_claimed = :mine",
                ExpressionAttributeValues={":mine": {"N": f"{claimed_at:.3f}"}},
            )
        except Exception as exc:
            code = aws_error_code(exc)
            if code == _CONDITION_FAILED:
                return  # not ours any more: nothing to give up
            if code in _CONTENTION:
                raise ConflictError(f"cannot release the summary of {batch_id!r} now") from exc
            raise StateError(f"cannot release the summary of {batch_id!r}: {exc}") from exc

    def get_creator(self, creator_name: str, batch_id: str) -> CreatorRecord | None:
        # The base table's partition, read strongly consistent (never the index).
        items = self._query(
            KeyConditionExpression="creator_name = :n",
            FilterExpression="batch_id = :b",
            ExpressionAttributeValues={":n": {"S": creator_name}, ":b": {"S": batch_id}},
            ConsistentRead=True,
        )
        return _creator(items[0]) if items else None

    def creators_in_batch(self, batch_id: str) -> Iterator[CreatorRecord]:
        """Through ``batch-id-index``, page by page (an index: it may lag, see the port)."""
        params = {
            "TableName": self.table,
            "IndexName": BATCH_INDEX,
            "KeyConditionExpression": "batch_id = :b",
            "ExpressionAttributeValues": {":b": {"S": batch_id}},
        }
        try:
            for page in self.client.get_paginator("query").paginate(**params):
                yield from (_creator(item) for item in page.get("Items", []))
        except Exception as exc:
            raise StateError(f"cannot query {self.table}: {exc}") from exc

    def creators_with_status(
        self, status: CreatorStatus, *, limit: int = 1000, processing_date: str | None = None
    ) -> list[CreatorRecord]:
        """Oldest first, through ``status-date-index`` (the sweep, operators' queries);
        ``processing_date`` narrows the key condition to that sort key."""
        condition = "#s = :s"
        values: dict[str, Any] = {":s": {"S": CreatorStatus(status).value}}
        if processing_date is not None:
            condition += " AND processing_date = :d"
            values[":d"] = {"S": processing_date}
        items = self._query(
            IndexName=STATUS_INDEX,
            KeyConditionExpression=condition,
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=values,
            limit=limit,
        )
        return [_creator(item) for item in items]

    def creator_history(self, creator_name: str, limit: int = 50) -> list[CreatorRecord]:
        items = self._query(
            KeyConditionExpression="creator_name = :n",
            ExpressionAttributeValues={":n": {"S": creator_name}},
            ScanIndexForward=False,
            limit=limit,
        )
        return [_creator(item) for item in items]

    # -- batches ---------------------------------------------------------------

    def put_batch(self, batch: BatchRecord) -> None:
        item = {
            **_batch_key(batch.batch_id),
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
        }
        if batch.summary_key:
            item["summary_key"] = {"S": batch.summary_key}
        if batch.finished_at:
            item["finished_at"] = {"S": batch.finished_at}
        # Counters and the summary claim are kept from the stored item: other
        # workers may have moved them since this copy was read.
        names = [k for k in item if k not in ("creator_name", "processing_date")]
        keep = {"completed", "failed", "skipped"}
        updates = [
            f"#{n} = if_not_exists(#{n}, :{n})" if n in keep else f"#{n} = :{n}" for n in names
        ]
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_batch_key(batch.batch_id),
                UpdateExpression="SET " + ", ".join(updates),
                ExpressionAttributeNames={f"#{n}": n for n in names},
                ExpressionAttributeValues={f":{n}": item[n] for n in names},
            )
        except Exception as exc:
            # The batch item is in every finish's transaction: an update meeting one
            # is refused with TransactionConflict, a contention like any other.
            code = aws_error_code(exc)
            if code in _CONTENTION:
                raise ConflictError(f"cannot write batch {batch.batch_id!r} now ({code})") from exc
            raise StateError(f"cannot write batch {batch.batch_id!r}: {exc}") from exc

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        item = self._get(_batch_key(batch_id))
        return _batch(item) if item else None

    def list_batches(self, limit: int = 50) -> list[BatchRecord]:
        items = self._query(
            KeyConditionExpression="creator_name = :p",
            ExpressionAttributeValues={":p": {"S": BATCH_PARTITION}},
            ScanIndexForward=False,
            limit=limit,
        )
        return [_batch(item) for item in items]

    # -- plumbing --------------------------------------------------------------

    def _creator_put(
        self,
        record: CreatorRecord,
        expected: tuple[CreatorStatus, ...] | None,
        *,
        takeover_at: float | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {"TableName": self.table, "Item": _creator_item(record)}
        if expected is None:
            return request
        if not expected:
            request["ConditionExpression"] = "attribute_not_exists(creator_name)"
            return request
        values: dict[str, Any] = {
            f":s{i}": {"S": CreatorStatus(s).value} for i, s in enumerate(expected)
        }
        condition = f"#s IN ({', '.join(values)})"
        if takeover_at is not None:
            condition = (
                f"({condition} OR (#s = :processing AND "
                "(attribute_not_exists(lease_expires) OR lease_expires < :now "
                "OR lease_owner = :me)))"
            )
            values[":processing"] = {"S": CreatorStatus.PROCESSING.value}
            values[":now"] = {"N": f"{takeover_at:.3f}"}
            values[":me"] = {"S": record.lease_owner or ""}
        if owner is not None:
            condition += " AND lease_owner = :owner"
            values[":owner"] = {"S": owner}
        values[":bid"] = {"S": record.batch_id}
        request["ConditionExpression"] = f"{condition} AND batch_id = :bid"
        request["ExpressionAttributeNames"] = {"#s": "status"}
        request["ExpressionAttributeValues"] = values
        return request

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            item: dict[str, Any] | None = self.client.get_item(
                TableName=self.table, Key=key, ConsistentRead=True
            ).get("Item")
        except Exception as exc:
            raise StateError(f"cannot read {key}: {exc}") from exc
        return item

    def _query(self, *, limit: int | None = None, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params["TableName"] = self.table
        try:
            paginator = self.client.get_paginator("query")
            for page in paginator.paginate(**params):
                items.extend(page.get("Items", []))
                if limit is not None and len(items) >= limit:
                    return items[:limit]
        except Exception as exc:
            raise StateError(f"cannot query {self.table}: {exc}") from exc
        return items


def _batch_key(batch_id: str) -> dict[str, Any]:
    return {"creator_name": {"S": BATCH_PARTITION}, "processing_date": {"S": batch_id}}


def _json(value: dict[str, Any], what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StateError(f"{what} is not JSON-serializable: {exc}") from exc


def _creator_item(r: CreatorRecord) -> dict[str, Any]:
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
    return item


def _creator(item: dict[str, Any]) -> CreatorRecord:
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


def _batch(item: dict[str, Any]) -> BatchRecord:
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
    )
