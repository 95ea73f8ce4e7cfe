"""StateStore on the original system's DynamoDB table.

This module is the store's behaviour: which write is conditional on what, which
call is one transaction, and how DynamoDB's refusals become the project's errors
(``ConditionFailedError``, ``ConflictError`` under contention, ``StateError``).
What the table and its items look like (keys, indexes, TTL, the batch partition,
record <-> item) lives in :mod:`imgpipe.adapters.dynamodb_table`.

``get_creator`` and ``get_batch`` read the base table strongly consistent;
``creators_in_batch`` and ``creators_with_status`` go through the
``batch-id-index`` and ``status-date-index`` GSIs, which may lag (the sweep's paged
reads, with ``open-batch-index``, are in :mod:`.dynamodb_pages`). Conditional
writes make status changes safe between workers; ``finish_creator`` is one
transaction (final record + batch counter), so a redelivered message can never
count a creator twice::

    state = DynamoStateStore("imgpipe-state", settings=settings)
    state.put_creator(record, expected=(CreatorStatus.PENDING,))
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

from imgpipe.adapters.aws_clients import aws_error_code, make_client
from imgpipe.adapters.dynamodb_pages import (
    CONTENTION,
    open_batch_page,
    set_backoff,
    settle,
    status_page,
)
from imgpipe.adapters.dynamodb_table import (
    BATCH_INDEX,
    BATCH_PARTITION,
    STATUS_INDEX,
    batch_from_item,
    batch_item,
    batch_key,
    create_state_table,
    creator_from_item,
    creator_item,
)
from imgpipe.domain.records import BatchRecord, CreatorRecord, CreatorStatus
from imgpipe.errors import ConditionFailedError, ConflictError, StateError
from imgpipe.ports import Page
from imgpipe.settings import Settings

# The table's layout names are re-exported: callers that imported them from here
# before the table module was split off keep working.
__all__ = [
    "BATCH_INDEX",
    "BATCH_PARTITION",
    "STATUS_INDEX",
    "DynamoStateStore",
    "create_state_table",
]

_CONDITION_FAILED = "ConditionalCheckFailedException"
_CANCELLED_BY_CONTENTION = frozenset({"TransactionConflict", "ThrottlingError"})
BATCH_WRITE_SIZE = 25  # BatchWriteItem's limit


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
            if code in CONTENTION:
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
                {"PutRequest": {"Item": creator_item(r)}}
                for r in records[start : start + BATCH_WRITE_SIZE]
            ]
            self._batch_write(requests)

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        pending = {self.table: requests}
        for attempt in range(8):
            try:
                answer = self.client.batch_write_item(RequestItems=pending)
            except Exception as exc:
                if aws_error_code(exc) in CONTENTION:
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
        batch_item_key = batch_key(record.batch_id)
        items: list[dict[str, Any]] = [{"Put": self._creator_put(record, expected, owner=owner)}]
        batch = self._get(batch_item_key)
        if batch is not None:
            items.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": batch_item_key,
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
            if codes & _CANCELLED_BY_CONTENTION or aws_error_code(exc) in CONTENTION:
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
                Key=batch_key(batch_id),
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
            if code in CONTENTION:
                raise ConflictError(f"cannot claim the summary of {batch_id!r} now") from exc
            raise StateError(f"cannot claim the summary of batch {batch_id!r}: {exc}") from exc
        return True

    def release_summary(self, batch_id: str, *, claimed_at: float) -> None:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=batch_key(batch_id),
                UpdateExpression="REMOVE summary_claimed",
                ConditionExpression="summary_claimed = :mine",
                ExpressionAttributeValues={":mine": {"N": f"{claimed_at:.3f}"}},
            )
        except Exception as exc:
            code = aws_error_code(exc)
            if code == _CONDITION_FAILED:
                return  # not ours any more: nothing to give up
            if code in CONTENTION:
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
        return creator_from_item(items[0]) if items else None

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
                yield from (creator_from_item(item) for item in page.get("Items", []))
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
        return [creator_from_item(item) for item in items]

    def creators_page(
        self, status: CreatorStatus, *, after: str | None = None, page_size: int = 500
    ) -> Page[CreatorRecord]:
        """One query page of ``status-date-index`` (see :mod:`.dynamodb_pages`)."""
        return status_page(self.client, self.table, status, after=after, page_size=page_size)

    def creator_history(self, creator_name: str, limit: int = 50) -> list[CreatorRecord]:
        items = self._query(
            KeyConditionExpression="creator_name = :n",
            ExpressionAttributeValues={":n": {"S": creator_name}},
            ScanIndexForward=False,
            limit=limit,
        )
        return [creator_from_item(item) for item in items]

    # -- batches ---------------------------------------------------------------

    def put_batch(self, batch: BatchRecord) -> None:
        item = batch_item(batch)
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
                Key=batch_key(batch.batch_id),
                UpdateExpression="SET " + ", ".join(updates),
                ExpressionAttributeNames={f"#{n}": n for n in names},
                ExpressionAttributeValues={f":{n}": item[n] for n in names},
            )
        except Exception as exc:
            # The batch item is in every finish's transaction: an update meeting one
            # is refused with TransactionConflict, a contention like any other.
            code = aws_error_code(exc)
            if code in CONTENTION:
                raise ConflictError(f"cannot write batch {batch.batch_id!r} now ({code})") from exc
            raise StateError(f"cannot write batch {batch.batch_id!r}: {exc}") from exc

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        item = self._get(batch_key(batch_id))
        return batch_from_item(item) if item else None

    def list_batches(self, limit: int = 50) -> list[BatchRecord]:
        items = self._query(
            KeyConditionExpression="creator_name = :p",
            ExpressionAttributeValues={":p": {"S": BATCH_PARTITION}},
            ScanIndexForward=False,
            limit=limit,
        )
        return [batch_from_item(item) for item in items]

    def open_batches(self, *, after: str | None = None, page_size: int = 100) -> Page[str]:
        """One page of the sparse ``open-batch-index`` (it may lag: see the port)."""
        return open_batch_page(self.client, self.table, after=after, page_size=page_size)

    def settle_batch(self, batch_id: str) -> None:
        settle(self.client, self.table, batch_id)

    def set_sweep_backoff(self, batch_id: str, *, failures: int, retry_at: float) -> None:
        set_backoff(self.client, self.table, batch_id, failures, retry_at)

    # -- plumbing --------------------------------------------------------------

    def _creator_put(
        self,
        record: CreatorRecord,
        expected: tuple[CreatorStatus, ...] | None,
        *,
        takeover_at: float | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {"TableName": self.table, "Item": creator_item(record)}
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
