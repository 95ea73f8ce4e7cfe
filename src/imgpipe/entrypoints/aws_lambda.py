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

This module holds the handlers and how an event is told apart; what one SQS
record's body does (plan, process a creator, compress) is
:mod:`imgpipe.entrypoints.lambda_records`, which ``imgpipe worker`` runs too, and
the settings, services and metrics built once per container are
:mod:`imgpipe.entrypoints.lambda_runtime`.

Every function logs JSON through Powertools Logger (with ``batch_id`` and ``creator``
while a creator is processed) and is traced with X-Ray: see ``lambda_observability``.

Importing this module is cheap: boto3, Pillow, Powertools and the X-Ray SDK load on
first use (in a Lambda, during the init phase).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from imgpipe.entrypoints.lambda_observability import observed, tracing
from imgpipe.entrypoints.lambda_records import handle_record_body, s3_record
from imgpipe.entrypoints.lambda_runtime import METRICS_LOCK, metrics, runtime
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


@observed
def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point (``imgpipe.entrypoints.aws_lambda.handler``)."""
    return _handle(event, context)


def _handle(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    settings, _ = runtime()
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
        return {"results": [s3_record(r) for r in records]}
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

    Emits ``StuckCreators``: claims that expired with no message coming back, and
    ``BatchesFailingToFinalise``: batches whose finalisation failed ten times in a row
    or more (each backs off; see ``service/sweep_backoff.py``). Its work is bounded per
    run (``IMGPIPE_SWEEP_MAX_*``); ``"more": 1`` in the logged counts says the next run
    carries on.
    """
    _, fanout = runtime()
    with tracing().span("sweep") as span:
        counts = fanout.sweep()
        span.annotate("stuck", counts["stuck"])
    try:
        with METRICS_LOCK:
            emitter = metrics()
            emitter.observe("StuckCreators", counts["stuck"])
            emitter.observe("BatchesFailingToFinalise", counts["failing"])
            emitter.flush()
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


def _inline(event: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Direct invocation: the whole CSV processed in this invocation."""
    from imgpipe.bootstrap import run_inline
    from imgpipe.domain.fingerprints import content_hash
    from imgpipe.service.fanout import options_from_config, parse_csv_bytes
    from imgpipe.service.planning import batch_identity

    _, fanout = runtime()
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
    runtime()
