"""One SQS record's body, whatever kind, and what each kind does.

A body is an S3 notification (S3 -> SQS wiring: CSVs are planned, images under the
compress prefix compressed), a per-creator message of the fan-out (claimed,
rendered, metrics emitted), or the original system's ``processing_type: csv_s3``
message (planned, with a heartbeat on its planning message). The Lambda handlers
(:mod:`imgpipe.entrypoints.aws_lambda`) and ``imgpipe worker`` on any host both
run :func:`handle_record_body`, so it lives apart from the Lambda events. A body
that is no message of these kinds is poison: a ``MessageError`` naming what is wrong.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from imgpipe.entrypoints.lambda_observability import tracing
from imgpipe.entrypoints.lambda_runtime import METRICS_LOCK, metrics, runtime
from imgpipe.errors import MessageError

if TYPE_CHECKING:  # pydantic is a tenth of a second; the first event pays it, not the import
    from imgpipe.entrypoints.worker import MessageLease
    from imgpipe.settings import Settings

__all__ = ["PLAN_HEARTBEAT_SECONDS", "handle_record_body", "s3_record"]

log = logging.getLogger("imgpipe.lambda")
# How much longer a planning message stays hidden at each of the planner's heartbeats.
PLAN_HEARTBEAT_SECONDS = 900


def handle_record_body(body: str, lease: MessageLease | None = None) -> dict[str, Any]:
    """One SQS message body, whatever kind; MessageError when it is poison.

    With ``lease`` (the message on its queue), long work extends the message's
    visibility, and a creator claimed by a live worker defers the message until
    the claim would expire (and raises ClaimBusyError, so it is not deleted).
    """
    settings, fanout = runtime()
    try:
        message = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MessageError(f"message body is not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise MessageError("message body is not a JSON object")
    if message.get("Event") == "s3:TestEvent":
        return {"ignored": "s3:TestEvent"}
    if isinstance(message.get("Records"), list):  # an S3 notification delivered by SQS
        return {"results": [s3_record(r) for r in message["Records"]]}
    from imgpipe.service.fanout import CREATOR_MESSAGE, options_from_config

    if message.get("type") == CREATOR_MESSAGE:
        return _creator(message, fanout, lease)
    if message.get("processing_type") == "csv_s3":
        key = message.get("s3_key")
        if not isinstance(key, str) or not key:
            raise MessageError("csv_s3 message without s3_key")
        bucket, prefix = _text_field(message, "s3_bucket"), _text_field(message, "output_prefix")
        overrides = options_from_config(message.get("processing_config") or {})
        batch_id = message.get("batch_id")
        heartbeat = None if lease is None else lambda: lease.extend(PLAN_HEARTBEAT_SECONDS)
        return _plan(
            fanout,
            key,
            overrides,
            heartbeat=heartbeat,
            batch_id=batch_id,
            bucket=bucket or None,
            output_prefix=prefix,
        )
    kind = message.get("processing_type") or message.get("type")
    raise MessageError(f"unknown message type {kind!r}")


def _text_field(message: Mapping[str, Any], name: str) -> str:
    """An optional string field of a message ("" when absent); MessageError otherwise."""
    value = message.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MessageError(f"csv_s3 message: {name} must be a string, got {value!r}")
    return value


def s3_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """One S3 event record: a CSV under the CSV prefix planned, an image under the compress
    prefix compressed, anything else ignored."""
    settings, fanout = runtime()
    try:
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
    except (KeyError, TypeError) as exc:
        raise MessageError(f"S3 record without bucket or key: {exc!r}") from exc
    if not str(record.get("eventName", "ObjectCreated")).startswith("ObjectCreated"):
        return {"ignored": key}
    if bucket != settings.input_bucket:
        return {"ignored": key, "reason": f"bucket {bucket} is not the input bucket"}
    if key.startswith(settings.csv_prefix) and key.lower().endswith(".csv"):
        return _plan(fanout, key, {})
    from imgpipe.service.compress import is_compressible_key

    if is_compressible_key(key, settings.compress_prefix):
        return _compress(fanout.ports.inputs, key, settings)
    return {"ignored": key}


def _compress(store: Any, key: str, settings: Settings) -> dict[str, Any]:
    """``uploads/x.png`` -> ``compressed/uploads/x.png``; outside the watched prefix, so no loop.

    A file that is not a usable image is reported and not retried (it never will be);
    storage errors raise, so the record is retried and ends in the DLQ.
    """
    from imgpipe.errors import ImageError
    from imgpipe.service.compress import CompressOptions, compress_object

    try:
        with tracing().span("compress", object_key=key):
            target, result = compress_object(store, key, CompressOptions.from_settings(settings))
    except ImageError as exc:
        log.warning("not compressed %s: %s", key, exc, extra={"key": key, "reason": exc.reason})
        return {"key": key, "error": f"{exc.reason}: {exc.detail}"}
    log.info("compressed %s", key, extra={"target": target, **result.to_dict()})
    return {"key": key, "compressed_key": target, **result.to_dict()}


def _plan(
    fanout: Any,
    key: str,
    overrides: dict[str, Any],
    *,
    heartbeat: Any = None,
    batch_id: str | None = None,
    bucket: str | None = None,
    output_prefix: str = "",
) -> dict[str, Any]:
    with tracing().span("plan", csv_key=key, batch_id=batch_id) as span:
        planned = fanout.plan(
            key,
            overrides,
            heartbeat=heartbeat,
            batch_id=batch_id,
            bucket=bucket,
            output_prefix=output_prefix,
        )
        if planned.batch_id:  # known once planned, unless the API reserved it
            span.annotate("batch_id", planned.batch_id)
    log.info(
        "planned %s",
        key,
        extra={"batch_id": planned.batch_id, "creators": planned.creators},
    )
    return {
        "batch_id": planned.batch_id,
        "csv_key": key,
        "creators": planned.creators,
        "messages_sent": planned.messages_sent,
        "replayed": planned.replayed,
        "error": planned.error,
    }


def _creator(message: dict[str, Any], fanout: Any, lease: MessageLease | None) -> dict[str, Any]:
    import asyncio

    from imgpipe.errors import ClaimBusyError
    from imgpipe.logs import log_context

    started = time.perf_counter()
    heartbeat = None
    if lease is not None:
        seconds = fanout.ledger.lease_seconds

        async def heartbeat() -> None:
            await asyncio.to_thread(lease.extend, seconds)

    batch_id, creator = _text(message.get("batch_id")), _text(message.get("key"))
    # One creator per thread here (a message at a time), so its subsegment nests the
    # S3, DynamoDB and download calls; the pipeline sets the same log keys for the CLI.
    with log_context(batch_id=batch_id, creator=creator):
        try:
            with tracing().span("creator", batch_id=batch_id, creator=creator):
                result = asyncio.run(fanout.process(message, heartbeat=heartbeat))
        except ClaimBusyError as exc:
            if lease is not None:
                lease.defer(exc.retry_after)  # back when the other claim would expire
            raise
    try:
        with METRICS_LOCK:  # worker threads share Powertools' class-level metric set
            _emit(result, time.perf_counter() - started)
    except Exception:  # metrics must never fail (and so redeliver) finished work
        log.exception("could not emit metrics for %s", result.key)
    return _logged(message, result)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _emit(result: Any, duration: float) -> None:
    emitter = metrics()
    emitter.observe("ProcessingDuration", duration)
    emitter.incr("ImagesProcessed", result.images_used)
    emitter.incr("ErrorCount", len(result.failures) + (1 if result.error else 0))
    emitter.flush()


def _logged(message: dict[str, Any], result: Any) -> dict[str, Any]:
    if result.replayed:  # a processed creator was logged by the pipeline (imgpipe.events)
        log.info(
            "creator %s was already %s: not processed again",
            result.key,
            result.status.value,
            extra={"batch_id": message.get("batch_id"), "creator": result.key},
        )
    return {"creator": result.key, "status": result.status.value, "replayed": result.replayed}
