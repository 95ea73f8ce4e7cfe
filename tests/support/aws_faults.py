"""DynamoDB contention as AWS answers it, injected into a real boto3 client's wire.

A ``before-send`` hook answers chosen requests with the raw HTTP response DynamoDB
sends under contention (status 400, a JSON body with ``__type``), so botocore parses
it, adds the modeled fields (``CancellationReasons``) and applies its own retry
rules exactly as for a response from the network: it retries throttling itself and
leaves ``TransactionConflict`` to the caller. Nothing reaches moto for those attempts::

    faults = DynamoContention(client, failures=2)
    ...                                  # run the work
    assert faults.injected["TransactionCanceledException"] > 0

An attempt is counted per *call*: the operation and what it writes (item key, the
condition and update expressions), not the volatile values, so a retry of the same
write is its second attempt.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from botocore.awsrequest import AWSResponse

__all__ = ["DynamoContention"]

_PREFIX = "com.amazonaws.dynamodb.v20120810#"


class _Body:
    """The ``raw`` of an AWSResponse: what urllib3 would stream."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        yield self.data


def _error(code: str, message: str, **fields: Any) -> tuple[int, dict[str, Any]]:
    return 400, {"__type": _PREFIX + code, "message": message, **fields}


def transaction_cancelled(reasons: list[str]) -> tuple[int, dict[str, Any]]:
    """TransactWriteItems refused: one reason per item, in order (``"None"``: that item is fine)."""
    listed = ", ".join(reasons)
    return _error(
        "TransactionCanceledException",
        f"Transaction cancelled, please refer cancellation reasons for specific reasons [{listed}]",
        CancellationReasons=[
            {"Code": r, "Message": "Transaction is ongoing for the item"}
            if r == "TransactionConflict"
            else {"Code": r}
            for r in reasons
        ],
    )


TRANSACTION_CONFLICT = _error("TransactionConflictException", "Transaction is ongoing for the item")
THROTTLED = _error(
    "ThrottlingException", "Throughput exceeds the current capacity for one or more items"
)


class DynamoContention:
    """Answers the first ``failures`` attempts of every write with a contention error.

    - TransactWriteItems: TransactionCanceledException, the last item (the batch
      counter every finish touches) in a ``TransactionConflict``; then throttling.
    - PutItem / UpdateItem: TransactionConflictException; then throttling.
    - BatchWriteItem: answered 200 with every request ``UnprocessedItems`` (what
      DynamoDB does when it throttles part of a batch write).

    ``only_conditional``: leave unconditional PutItem/UpdateItem alone.
    """

    def __init__(self, client: Any, *, failures: int = 2, only_conditional: bool = False) -> None:
        self.failures = failures
        self.only_conditional = only_conditional
        self.attempts: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()
        events = client.meta.events
        for operation in ("TransactWriteItems", "PutItem", "UpdateItem", "BatchWriteItem"):
            events.register(f"before-send.dynamodb.{operation}", self._before_send)

    def _before_send(self, request: Any, **kwargs: Any) -> AWSResponse | None:
        operation = str(request.headers.get("X-Amz-Target", b""), "ascii", "replace")
        operation = operation.rsplit(".", 1)[-1]
        params = json.loads(request.body or b"{}")
        if (
            self.only_conditional
            and operation in ("PutItem", "UpdateItem")
            and "ConditionExpression" not in params
        ):
            return None
        call = _identity(operation, params)
        with self._lock:
            self.attempts[call] += 1
            attempt = self.attempts[call]
        if attempt > self.failures:
            return None
        if operation == "BatchWriteItem":
            status, body = 200, {"UnprocessedItems": params["RequestItems"]}
            name = "UnprocessedItems"
        elif attempt > 1:
            status, body = THROTTLED
            name = "ThrottlingException"
        elif operation == "TransactWriteItems":
            items = params["TransactItems"]
            status, body = transaction_cancelled(
                ["None"] * (len(items) - 1) + ["TransactionConflict"]
            )
            name = "TransactionCanceledException"
        else:
            status, body = TRANSACTION_CONFLICT
            name = "TransactionConflictException"
        with self._lock:
            self.injected[name] += 1
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "x-amzn-RequestId": f"chaos-{call[:8]}-{attempt}",
        }
        return AWSResponse(request.url, status, headers, _Body(json.dumps(body).encode()))


def _identity(operation: str, params: dict[str, Any]) -> str:
    """The same write retried -> the same identity (volatile values left out)."""
    if operation == "TransactWriteItems":
        parts = [
            _identity(op, inner) for item in params["TransactItems"] for op, inner in item.items()
        ]
        return operation + "[" + ";".join(parts) + "]"
    if operation == "BatchWriteItem":
        keys = [
            (r["PutRequest"]["Item"]["creator_name"]["S"], r["PutRequest"]["Item"]["batch_id"]["S"])
            for requests in params["RequestItems"].values()
            for r in requests
        ]
        return operation + json.dumps(sorted(keys))
    item = params.get("Item") or params.get("Key") or {}
    key = {k: item[k] for k in ("creator_name", "processing_date") if k in item}
    status = item.get("status")
    return operation + json.dumps(
        [key, status, params.get("ConditionExpression"), params.get("UpdateExpression")],
        sort_keys=True,
    )
