"""Create the AWS resources imgpipe needs, idempotently, for a local AWS-compatible server.

The SAM template (``deploy/template.yaml``) is the way to deploy on AWS; this is
for LocalStack, moto and tests, behind ``imgpipe aws-init``::

    names = ensure_resources(settings, prefix="imgpipe")
    names["IMGPIPE_SQS_QUEUE_URL"], names["IMGPIPE_PLAN_QUEUE_URL"]

It is the one-queue deployment: the CSV upload notification goes to the work
queue, and ``imgpipe worker`` takes every message kind from it (S3 notifications,
``csv_s3`` planning messages, per-creator messages). The planning queue and its
DLQ exist too, with the template's attributes, for whatever sends ``csv_s3``
messages to ``IMGPIPE_PLAN_QUEUE_URL`` (the API on AWS); a worker pointed at
that URL as its ``IMGPIPE_SQS_QUEUE_URL`` drains it.
"""

from __future__ import annotations

import json
from typing import Any

from imgpipe.adapters.aws_clients import aws_error_code, make_client
from imgpipe.adapters.dynamodb_pages import open_unmarked_batches
from imgpipe.adapters.dynamodb_table import add_missing_indexes, create_state_table
from imgpipe.settings import Settings

__all__ = [
    "COMPRESS_TIMEOUT",
    "CSV_SUFFIXES",
    "MAX_RECEIVE_COUNT",
    "PLANNER_TIMEOUT",
    "PLAN_QUEUE_ATTRIBUTES",
    "QUEUE_ATTRIBUTES",
    "SWEEP_TIMEOUT",
    "WORKER_TIMEOUT",
    "ensure_resources",
]

# Function timeouts of the four functions (deploy/template.yaml, deploy/terraform).
PLANNER_TIMEOUT = 900
WORKER_TIMEOUT = 300
COMPRESS_TIMEOUT = 60
SWEEP_TIMEOUT = 300
# AWS advises a visibility timeout of at least six times the consumer's timeout;
# a heartbeat extends a live message, so a long visibility only delays a dead one.
QUEUE_ATTRIBUTES = {
    "VisibilityTimeout": str(6 * WORKER_TIMEOUT),
    "MessageRetentionPeriod": "1209600",
    "ReceiveMessageWaitTimeSeconds": "20",
}
PLAN_QUEUE_ATTRIBUTES = {**QUEUE_ATTRIBUTES, "VisibilityTimeout": str(6 * PLANNER_TIMEOUT)}
# S3 suffix filters are case-sensitive: one notification per spelling that exports use
# (``.CSV`` from Windows tools). The handler takes any case of the suffix.
CSV_SUFFIXES = (".csv", ".CSV")
# Room for throttled receives and for redeliveries that met a live claim and
# re-queued themselves (a visibility change still counts a receive).
MAX_RECEIVE_COUNT = 5


def ensure_resources(
    settings: Settings, *, prefix: str = "imgpipe", notify_prefix: str | None = None
) -> dict[str, str]:
    """Buckets, work and planning queues + DLQs with redrive, the table, the CSV notification.

    Names come from the settings when set (IMGPIPE_INPUT_BUCKET...), else from ``prefix``.
    Returns the names and URLs, ready to export as environment variables.
    """
    s3 = make_client("s3", settings)
    sqs = make_client("sqs", settings)
    dynamodb = make_client("dynamodb", settings)
    names = {
        "IMGPIPE_INPUT_BUCKET": settings.input_bucket or f"{prefix}-input",
        "IMGPIPE_OUTPUT_BUCKET": settings.output_bucket or f"{prefix}-output",
        "IMGPIPE_TEMP_BUCKET": settings.temp_bucket or f"{prefix}-temp",
        "IMGPIPE_DYNAMODB_TABLE_NAME": settings.dynamodb_table_name or f"{prefix}-state",
    }
    for key in ("IMGPIPE_INPUT_BUCKET", "IMGPIPE_OUTPUT_BUCKET", "IMGPIPE_TEMP_BUCKET"):
        _bucket(s3, names[key], settings.aws_region)

    queue_url, dlq_url = _queue_with_dlq(sqs, f"{prefix}-queue", f"{prefix}-dlq", QUEUE_ATTRIBUTES)
    names["IMGPIPE_SQS_QUEUE_URL"], names["IMGPIPE_SQS_DLQ_URL"] = queue_url, dlq_url
    plan_url, plan_dlq_url = _queue_with_dlq(
        sqs, f"{prefix}-plan-queue", f"{prefix}-plan-dlq", PLAN_QUEUE_ATTRIBUTES
    )
    names["IMGPIPE_PLAN_QUEUE_URL"], names["IMGPIPE_PLAN_DLQ_URL"] = plan_url, plan_dlq_url

    table = names["IMGPIPE_DYNAMODB_TABLE_NAME"]
    try:
        create_state_table(dynamodb, table)
    except Exception as exc:
        if aws_error_code(exc) != "ResourceInUseException":
            raise
        # made by an earlier version: the sweep's index, and its batches marked open
        if add_missing_indexes(dynamodb, table):
            open_unmarked_batches(dynamodb, table)

    # One queue for every kind here: the worker plans the CSV it is notified of.
    queue_arn = _arn(sqs, queue_url)
    s3.put_bucket_notification_configuration(
        Bucket=names["IMGPIPE_INPUT_BUCKET"],
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {
                            "FilterRules": [
                                {"Name": "prefix", "Value": notify_prefix or settings.csv_prefix},
                                {"Name": "suffix", "Value": suffix},
                            ]
                        }
                    },
                }
                for suffix in CSV_SUFFIXES
            ]
        },
    )
    return names


def _queue_with_dlq(
    sqs: Any, name: str, dlq_name: str, attributes: dict[str, str]
) -> tuple[str, str]:
    """A queue whose messages move to ``dlq_name`` after MAX_RECEIVE_COUNT receives."""
    dlq_url: str = sqs.create_queue(
        QueueName=dlq_name, Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    redrive = {"deadLetterTargetArn": _arn(sqs, dlq_url), "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
    queue_url: str = sqs.create_queue(
        QueueName=name, Attributes={**attributes, "RedrivePolicy": json.dumps(redrive)}
    )["QueueUrl"]
    return queue_url, dlq_url


def _arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    arn: str = attributes["Attributes"]["QueueArn"]
    return arn


def _bucket(s3: Any, name: str, region: str) -> None:
    params: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**params)
    except Exception as exc:
        if aws_error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
