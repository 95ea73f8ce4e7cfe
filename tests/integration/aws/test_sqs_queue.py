"""SqsWorkQueue and the resources of ``ensure_resources`` against moto's SQS, S3, DynamoDB."""

from __future__ import annotations

import json

import pytest

from imgpipe.adapters.aws_resources import (
    MAX_RECEIVE_COUNT,
    PLAN_QUEUE_ATTRIBUTES,
    QUEUE_ATTRIBUTES,
    ensure_resources,
)
from imgpipe.adapters.sqs_queue import SqsWorkQueue
from imgpipe.errors import QueueError
from imgpipe.settings import Settings
from tests.support.aws import client


@pytest.fixture
def names(aws: Settings) -> dict[str, str]:
    created = ensure_resources(aws, prefix="t")
    # S3 announces a new notification with an s3:TestEvent, as AWS does.
    seen = drain(SqsWorkQueue(created["IMGPIPE_SQS_QUEUE_URL"], settings=aws))
    assert [json.loads(body)["Event"] for body in seen] == ["s3:TestEvent"]
    return created


def drain(queue: SqsWorkQueue) -> list[str]:
    bodies: list[str] = []
    while batch := queue.receive(wait_seconds=0):
        for message in batch:
            bodies.append(message.body)
            queue.delete(message)
    return bodies


def test_send_in_batches_receive_and_delete(aws: Settings, names: dict[str, str]) -> None:
    queue = SqsWorkQueue(names["IMGPIPE_SQS_QUEUE_URL"], settings=aws)
    queue.send([f"m{i}" for i in range(23)])  # three SendMessageBatch calls
    assert sorted(drain(queue), key=lambda b: int(b[1:])) == [f"m{i}" for i in range(23)]
    assert queue.receive(wait_seconds=0) == []


@pytest.mark.parametrize(
    ("queue_name", "dlq_name"),
    [
        ("IMGPIPE_SQS_QUEUE_URL", "IMGPIPE_SQS_DLQ_URL"),
        ("IMGPIPE_PLAN_QUEUE_URL", "IMGPIPE_PLAN_DLQ_URL"),
    ],
)
def test_unreceived_max_receive_count_times_goes_to_the_dlq(
    aws: Settings, names: dict[str, str], queue_name: str, dlq_name: str
) -> None:
    queue = SqsWorkQueue(names[queue_name], settings=aws)
    dlq = SqsWorkQueue(names[dlq_name], settings=aws)
    queue.send(["poison"])
    counts = []
    for _ in range(MAX_RECEIVE_COUNT):
        (message,) = queue.receive(wait_seconds=0)
        counts.append(message.receive_count)
        queue.release(message)  # a failed attempt: visible again at once
    assert counts == list(range(1, MAX_RECEIVE_COUNT + 1))
    assert queue.receive(wait_seconds=0) == []  # the next receive moved it to the DLQ
    peeked = dlq.peek(10)
    assert [m.body for m in peeked] == ["poison"]
    assert [m.body for m in dlq.peek(10)] == ["poison"]  # peeking does not consume
    assert dlq.redrive_to(queue) == 1
    assert dlq.receive(wait_seconds=0) == []
    assert drain(queue) == ["poison"]


def test_send_to_a_missing_queue_names_it(aws: Settings) -> None:
    url = "http://127.0.0.1:1/123456789012/nope"
    with pytest.raises(QueueError, match="nope"):
        SqsWorkQueue(url, settings=aws).send(["x"])


def test_resources_match_the_deployed_shape(aws: Settings, names: dict[str, str]) -> None:
    sqs = client(aws, "sqs")
    for url, expected in (
        (names["IMGPIPE_SQS_QUEUE_URL"], QUEUE_ATTRIBUTES),
        (names["IMGPIPE_PLAN_QUEUE_URL"], PLAN_QUEUE_ATTRIBUTES),
    ):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert {k: attributes[k] for k in expected} == expected
        redrive = json.loads(attributes["RedrivePolicy"])
        assert int(redrive["maxReceiveCount"]) == MAX_RECEIVE_COUNT
    assert QUEUE_ATTRIBUTES["VisibilityTimeout"] == "1800"  # 6 x the worker's 300 s
    assert PLAN_QUEUE_ATTRIBUTES["VisibilityTimeout"] == "5400"  # 6 x the planner's 900 s
    plan_dlq = sqs.get_queue_attributes(
        QueueUrl=names["IMGPIPE_PLAN_DLQ_URL"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    plan = sqs.get_queue_attributes(
        QueueUrl=names["IMGPIPE_PLAN_QUEUE_URL"], AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    assert json.loads(plan["RedrivePolicy"])["deadLetterTargetArn"] == plan_dlq
    table = client(aws, "dynamodb").describe_table(TableName=names["IMGPIPE_DYNAMODB_TABLE_NAME"])
    indexes = {i["IndexName"] for i in table["Table"]["GlobalSecondaryIndexes"]}
    assert indexes == {"batch-id-index", "status-date-index", "open-batch-index"}
    ttl = client(aws, "dynamodb").describe_time_to_live(
        TableName=names["IMGPIPE_DYNAMODB_TABLE_NAME"]
    )
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "ttl"
    s3 = client(aws, "s3")
    notification = s3.get_bucket_notification_configuration(Bucket=names["IMGPIPE_INPUT_BUCKET"])
    # one notification per suffix spelling: S3's suffix filters are case-sensitive
    filters = [
        {r["Name"].lower(): r["Value"] for r in c["Filter"]["Key"]["FilterRules"]}
        for c in notification["QueueConfigurations"]
    ]
    assert sorted(filters, key=lambda f: f["suffix"]) == [
        {"prefix": "csv-files/", "suffix": ".CSV"},
        {"prefix": "csv-files/", "suffix": ".csv"},
    ]
    # the one-queue deployment: CSV uploads notify the work queue, not the planning queue
    work_arn = sqs.get_queue_attributes(
        QueueUrl=names["IMGPIPE_SQS_QUEUE_URL"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert {c["QueueArn"] for c in notification["QueueConfigurations"]} == {work_arn}
    assert ensure_resources(aws, prefix="t") == names  # idempotent
