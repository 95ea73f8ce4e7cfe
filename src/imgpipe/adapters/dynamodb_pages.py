"""The DynamoDB state store's paged reads and the sweep's marks on a batch item (open,
backoff).

One query page per call, resumed from ``LastEvaluatedKey`` (carried in the port's
opaque cursor), so the sweep reads every record in a status and every open batch
whatever their number, a page at a time::

    page = status_page(client, "state", CreatorStatus.PROCESSING, after=None, page_size=500)
    page.items, page.cursor
"""

from __future__ import annotations

from typing import Any

from imgpipe.adapters.aws_clients import aws_error_code
from imgpipe.adapters.cursors import decode_cursor, encode_cursor
from imgpipe.adapters.dynamodb_table import (
    BATCH_PARTITION,
    OPEN,
    OPEN_BATCH_INDEX,
    STATUS_INDEX,
    batch_key,
    creator_from_item,
)
from imgpipe.domain.records import CreatorRecord, CreatorStatus
from imgpipe.errors import ConflictError, StateError
from imgpipe.ports import Page

__all__ = [
    "CONTENTION",
    "open_batch_page",
    "open_unmarked_batches",
    "set_backoff",
    "settle",
    "status_page",
]

# What DynamoDB answers under contention or load: nothing was written, and botocore
# does not retry TransactionConflict at all (the service does, with jitter).
CONTENTION = frozenset(
    {
        "TransactionConflictException",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TransactionInProgressException",
    }
)


def status_page(
    client: Any, table: str, status: CreatorStatus, *, after: str | None, page_size: int
) -> Page[CreatorRecord]:
    """One page of ``status-date-index`` (oldest ``processing_date`` first)."""
    items, cursor = _page(
        client,
        table,
        after,
        page_size,
        IndexName=STATUS_INDEX,
        KeyConditionExpression="#s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": CreatorStatus(status).value}},
    )
    return Page([creator_from_item(item) for item in items], cursor)


def open_batch_page(client: Any, table: str, *, after: str | None, page_size: int) -> Page[str]:
    """One page of ``open-batch-index``: batch ids (the items' sort key), oldest first."""
    items, cursor = _page(
        client,
        table,
        after,
        page_size,
        IndexName=OPEN_BATCH_INDEX,
        KeyConditionExpression="open_batch = :o",
        ExpressionAttributeValues={":o": {"S": OPEN}},
    )
    return Page([item["processing_date"]["S"] for item in items], cursor)


def settle(client: Any, table: str, batch_id: str) -> None:
    """Remove the batch's open mark: it leaves the sparse index."""
    try:
        client.update_item(
            TableName=table,
            Key=batch_key(batch_id),
            UpdateExpression="REMOVE open_batch",
            # without it, an update of a batch the TTL deleted would create a bare item
            ConditionExpression="attribute_exists(creator_name)",
        )
    except Exception as exc:
        if aws_error_code(exc) == "ConditionalCheckFailedException":
            return  # gone: nothing left to settle
        raise StateError(f"cannot settle batch {batch_id!r}: {exc}") from exc


def set_backoff(client: Any, table: str, batch_id: str, failures: int, retry_at: float) -> None:
    """Set the batch's backoff (two numbers), or remove it with ``failures=0``: the
    item carries it only while the sweep keeps failing, so a healthy batch stays small."""
    if failures:
        update = "SET sweep_failures = :f, sweep_retry_at = :r"
        values: dict[str, Any] = {":f": {"N": str(failures)}, ":r": {"N": f"{retry_at:.3f}"}}
    else:
        update, values = "REMOVE sweep_failures, sweep_retry_at", {}
    params: dict[str, Any] = {"ExpressionAttributeValues": values} if values else {}
    try:
        client.update_item(
            TableName=table,
            Key=batch_key(batch_id),
            UpdateExpression=update,
            # without it, an update of a batch the TTL deleted would create a bare item
            ConditionExpression="attribute_exists(creator_name)",
            **params,
        )
    except Exception as exc:
        code = aws_error_code(exc)
        if code == "ConditionalCheckFailedException":
            return  # gone: nothing to back off
        if code in CONTENTION:  # a finish's transaction on the item: try again
            raise ConflictError(f"cannot record the backoff of {batch_id!r} now ({code})") from exc
        raise StateError(f"cannot record the backoff of batch {batch_id!r}: {exc}") from exc


def _page(
    client: Any, table: str, after: str | None, page_size: int, **params: Any
) -> tuple[list[dict[str, Any]], str | None]:
    if after is not None:
        params["ExclusiveStartKey"] = decode_cursor(after, shape=dict)
    try:
        answer = client.query(TableName=table, Limit=page_size, **params)
    except Exception as exc:
        raise StateError(f"cannot query {table} ({params['IndexName']}): {exc}") from exc
    last = answer.get("LastEvaluatedKey")
    return answer.get("Items", []), encode_cursor(last) if last else None


def open_unmarked_batches(client: Any, table: str) -> int:
    """Mark open every batch written before batches carried the open mark (an upgrade;
    ``imgpipe aws-open-batches``); the number marked. The sweep then settles those that
    are done, ``IMGPIPE_SWEEP_MAX_SETTLEMENTS`` a run. Reads the batch partition once:
    the batches of the TTL's 30 days."""
    marked = 0
    try:
        pages = client.get_paginator("query").paginate(
            TableName=table,
            KeyConditionExpression="creator_name = :p",
            FilterExpression="attribute_not_exists(open_batch)",
            ExpressionAttributeValues={":p": {"S": BATCH_PARTITION}},
            ProjectionExpression="processing_date",
        )
        for page in pages:
            for item in page.get("Items", []):
                marked += _mark_open(client, table, item["processing_date"]["S"])
    except StateError:
        raise
    except Exception as exc:
        raise StateError(f"cannot mark the open batches of {table}: {exc}") from exc
    return marked


def _mark_open(client: Any, table: str, batch_id: str) -> int:
    try:
        client.update_item(
            TableName=table,
            Key=batch_key(batch_id),
            UpdateExpression="SET open_batch = :o",
            ConditionExpression="attribute_exists(creator_name) "
            "AND attribute_not_exists(open_batch)",
            ExpressionAttributeValues={":o": {"S": OPEN}},
        )
    except Exception as exc:
        if aws_error_code(exc) == "ConditionalCheckFailedException":
            return 0  # deleted by its TTL, or marked meanwhile by a write
        raise StateError(f"cannot mark batch {batch_id!r} open: {exc}") from exc
    return 1
