"""The Lambda handler: S3 uploads, SQS records and direct invocations, one service layer.

``handler(event, context)`` dispatches on the event:

- S3 ``ObjectCreated`` for ``<IMGPIPE_CSV_PREFIX>*.csv``, any case (keys arrive URL-encoded:
  ``a+b%C3%BC.csv`` is ``a bü.csv``): plan the batch and fan out per-creator
  messages. Images under ``<IMGPIPE_COMPRESS_PREFIX>`` (``uploads/``) are
  compressed to ``compressed/<key>``. ``s3:TestEvent`` and other keys are ignored.
- SQS records: an S3 notification body (S3 -> SQS wiring), a per-creator
  message of the fan-out, or the original system's ``processing_type: csv_s3``
  message (its ``output_prefix`` prefixes the batch's collages and results; its
  ``s3_bucket`` is the input bucket or one of ``IMGPIPE_READABLE_BUCKETS``).
  Failures are reported per record (``batchItemFailures``).
- Direct invocation: ``{"csv_s3": {"bucket": ..., "key": ...}}`` or
  ``{"csv_text": "creator,url\\n..."}`` runs the whole batch inline and returns
  its summary (a test mode).

Every function logs JSON through Powertools Logger (with ``batch_id`` and ``creator``
while a creator is processed) and is traced with X-Ray: see ``lambda_observability``.

Importing this module is cheap: boto3, Pillow, Powertools and the X-Ray SDK load on
first use (in a Lambda, during the init phase).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from imgpipe.entrypoints.lambda_observability import lambda_logger, observed, tracing
from imgpipe.errors import MessageError

if TYPE_CHECKING:  # pydantic is a tenth of a second; the first event pays it, not the import
    from imgpipe.entrypoints.worker import MessageLease
    from imgpipe.settings import Settings

__all__ = [
    "compress_handler",
    "handle_record_body",
    "handler",
    "planner_handler",
    "sweep_handler",
    "worker_handler",
]

log = logging.getLogger("imgpipe.lambda")
# How much longer a planning message stays hidden at each of the planner's heartbeats.
PLAN_HEARTBEAT_SECONDS = 900
_METRICS_LOCK = threading.Lock()


@functools.cache
def _runtime() -> Any:
    """Built once per container (warm invocations reuse clients and connections)."""
    from imgpipe.bootstrap import make_fanout
    from imgpipe.settings import Settings

    # Logging and tracing first: the clients made below are then traced from the start.
    lambda_logger()
    tracing()
    settings = Settings()
    return settings, make_fanout(settings)


@functools.cache
def _metrics() -> Any:
    """One per process: Powertools keeps metric state at class level."""
    from imgpipe.adapters.emf_metrics import EmfMetrics

    settings, _ = _runtime()
    function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "imgpipe-worker")
    return EmfMetrics(namespace=settings.metrics_namespace, function_name=function)


@observed
def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point (``imgpipe.entrypoints.aws_lambda.handler``)."""
    return _handle(event, context)


def _handle(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    settings, _ = _runtime()
    records = event.get("Records")
    if isinstance(records, list) and records and records[0].get("eventSource") == "aws:sqs":
        from aws_lambda_powertools.utilities.batch import (
            BatchProcessor,
            EventType,
            process_partial_response,
        )

        processor = BatchProcessor(event_type=EventType.SQS)

        def record_handler(record: Any) -> None:
            handle_record_body(record.body, _lease_of(record, settings))

        response: dict[str, Any] = dict(
            process_partial_response(
                event=dict(event), record_handler=record_handler, processor=processor,
                context=context,
            )
        )  # fmt: skip
        return response
    if isinstance(records, list):
        return {"results": [_s3_record(r) for r in records]}
    if event.get("Event") == "s3:TestEvent":
        return {"ignored": "s3:TestEvent"}
    if "csv_s3" in event or "csv_text" in event:
        return _inline(event, settings)
    raise MessageError(f"unrecognised event with keys {sorted(event)[:10]}")


@observed
def planner_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The planner function: S3 CSV events and the planning queue's ``csv_s3`` messages."""
    return _handle(event, context)


@observed
def worker_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The worker function: the work queue's per-creator messages."""
    return _handle(event, context)


@observed
def compress_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The compression function: S3 events for images under the compress prefix."""
    return _handle(event, context)


@observed
def sweep_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The scheduled sweep: re-queue expired claims, finalise finished batches.

    Emits ``StuckCreators``: claims that expired with no message coming back.
    """
    _, fanout = _runtime()
    with tracing().span("sweep") as span:
        counts = fanout.sweep()
        span.annotate("stuck", counts["stuck"])
    try:
        with _METRICS_LOCK:
            metrics = _metrics()
            metrics.observe("StuckCreators", counts["stuck"])
            metrics.flush()
    except Exception:  # metrics must never fail the sweep
        log.exception("could not emit the sweep's metrics")
    log.info("sweep", extra=counts)
    return dict(counts)


def _lease_of(record: Any, settings: Settings) -> MessageLease | None:
    """The record's message on its queue (the work or the planning queue), for heartbeats."""
    from imgpipe.adapters.sqs_queue import SqsWorkQueue
    from imgpipe.entrypoints.worker import MessageLease
    from imgpipe.ports import QueueMessage

    name = str(getattr(record, "event_source_arn", "") or "").rsplit(":", 1)[-1]
    url = next(
        (u for u in (settings.sqs_queue_url, settings.plan_queue_url) if u and u.endswith(name)),
        "",
    )
    if not name or not url:
        return None
    message = QueueMessage(record.message_id, record.body, receipt=record.receipt_handle)
    return MessageLease(SqsWorkQueue(url, settings=settings), message)


def handle_record_body(body: str, lease: MessageLease | None = None) -> dict[str, Any]:
    """One SQS message body, whatever kind; MessageError when it is poison.

    With ``lease`` (the message on its queue), long work extends the message's
    visibility, and a creator claimed by a live worker defers the message until
    the claim would expire (and raises ClaimBusyError, so it is not deleted).
    """
    settings, fanout = _runtime()
    try:
        message = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MessageError(f"message body is not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise MessageError("message body is not a JSON object")
    if message.get("Event") == "s3:TestEvent":
        return {"ignored": "s3:TestEvent"}
    if isinstance(message.get("Records"), list):  # an S3 notification delivered by SQS
        return {"results": [_s3_record(r) for r in message["Records"]]}
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


def _s3_record(record: Mapping[str, Any]) -> dict[str, Any]:
    settings, fanout = _runtime()
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
        with _METRICS_LOCK:  # worker threads share Powertools' class-level metric set
            _emit(result, time.perf_counter() - started)
    except Exception:  # metrics must never fail (and so redeliver) finished work
        log.exception("could not emit metrics for %s", result.key)
    return _logged(message, result)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _emit(result: Any, duration: float) -> None:
    metrics = _metrics()
    metrics.observe("ProcessingDuration", duration)
    metrics.incr("ImagesProcessed", result.images_used)
    metrics.incr("ErrorCount", len(result.failures) + (1 if result.error else 0))
    metrics.flush()


def _logged(message: dict[str, Any], result: Any) -> dict[str, Any]:
    if result.replayed:  # a processed creator was logged by the pipeline (imgpipe.events)
        log.info(
            "creator %s was already %s: not processed again",
            result.key,
            result.status.value,
            extra={"batch_id": message.get("batch_id"), "creator": result.key},
        )
    return {"creator": result.key, "status": result.status.value, "replayed": result.replayed}


def _inline(event: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Direct invocation: the whole CSV processed in this invocation."""
    from imgpipe.bootstrap import run_inline
    from imgpipe.domain.fingerprints import content_hash
    from imgpipe.service.fanout import options_from_config, parse_csv_bytes
    from imgpipe.service.planning import batch_identity

    _, fanout = _runtime()
    options = settings.batch_spec(**options_from_config(event.get("processing_config") or {}))
    store = fanout.ports.inputs
    if "csv_text" in event:
        data, key, source = (
            str(event["csv_text"]).encode(),
            settings.csv_prefix + "inline.csv",
            "inline",
        )
    else:
        ref = event["csv_s3"]
        key = str(ref.get("key", "")) if isinstance(ref, dict) else ""
        if not key:
            raise MessageError("csv_s3 needs a key")
        bucket = str(ref.get("bucket") or "") or settings.input_bucket
        store = fanout.csv_store(bucket)  # the input bucket or a readable one
        data, source = store.get(key), f"s3://{bucket}/{key}"
    manifest = parse_csv_bytes(data, options, key)
    identity = batch_identity(content_hash(data), options, source=source)
    with tracing().span("inline", csv_key=key) as span:
        summary = run_inline(
            manifest,
            options,
            fanout.ports,
            settings,
            source=source,
            csv_key=key,
            identity=identity,
            csv_store=store,
        )
        span.annotate("batch_id", summary.batch_id)
    return dict(summary.to_dict())


# In a Lambda, build the clients during the init phase: it runs at full CPU before the
# first event and is not billed against the first invocation's timeout. Anywhere else
# (tests, the import benchmark, `imgpipe worker`) importing this module stays cheap.
if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    _runtime()
