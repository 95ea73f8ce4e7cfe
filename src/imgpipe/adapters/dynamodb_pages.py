"""The DynamoDB state store's paged reads and its open-batch mark.

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
    OPEN,
    OPEN_BATCH_INDEX,
    STATUS_INDEX,
    batch_key,
    creator_from_item,
)
from imgpipe.domain.records import CreatorRecord, CreatorStatus
from imgpipe.errors import StateError
from imgpipe.ports import Page

__all__ = ["open_batch_page", "settle", "status_page"]


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
