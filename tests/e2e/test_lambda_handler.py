"""``imgpipe.entrypoints.aws_lambda.handler`` with the events Lambda delivers, on moto."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imgpipe.entrypoints import aws_lambda
from imgpipe.errors import MessageError
from tests.support.aws_deploy import Deployment
from tests.support.covers import RED, solid_jpeg
from tests.support.http_server import FaultServer, Serve


def s3_event(bucket: str, key: str, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": name,
                "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10}},
            }
        ]
    }


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:flow-queue",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def test_s3_put_with_an_encoded_key_plans_the_batch(deployed: Deployment) -> None:
    bucket = deployed.names["IMGPIPE_INPUT_BUCKET"]
    deployed.upload_csv("csv-files/a bü.csv", [("Ann", "https://example.com/a.jpg")])
    for message in deployed.queue.receive(max_messages=10, wait_seconds=1):
        deployed.queue.delete(message)  # the bucket's own notification; we send ours
    result = aws_lambda.handler(s3_event(bucket, "csv-files/a+b%C3%BC.csv"))
    (planned,) = result["results"]
    assert planned["csv_key"] == "csv-files/a bü.csv" and planned["creators"] == 1
    (message,) = deployed.queue.receive(wait_seconds=1)
    body = json.loads(message.body)
    assert body["type"] == "imgpipe.creator" and body["creator"] == "Ann"
    # the covers stay in the plan object; the message names their byte range
    plan_key, offset, length = body["plan"]
    plan = json.loads(deployed.plans.get_range(plan_key, offset, length))
    assert plan == {"key": "Ann", "covers": [[2, "https://example.com/a.jpg"]]}
    assert len(message.body) < 1024

    # the same event again: the same batch, not a second one
    again = aws_lambda.handler(s3_event(bucket, "csv-files/a+b%C3%BC.csv"))
    assert again["results"][0]["batch_id"] == planned["batch_id"]
    assert again["results"][0]["replayed"] is True
    assert len(deployed.state.list_batches()) == 1

    ignored = aws_lambda.handler(s3_event(bucket, "uploads/readme.txt"))
    assert ignored["results"] == [{"ignored": "uploads/readme.txt"}]
    assert aws_lambda.handler({"Event": "s3:TestEvent"}) == {"ignored": "s3:TestEvent"}


def test_sqs_batch_reports_only_the_bad_record(deployed: Deployment) -> None:
    deployed.upload_csv("csv-files/x.csv", [("Ann", "https://example.com/a.jpg")])
    good = json.dumps(
        {"processing_type": "csv_s3", "s3_key": "csv-files/x.csv", "processing_config": {"rows": 2}}
    )
    test_event = json.dumps({"Event": "s3:TestEvent", "Bucket": "flow-input"})
    response = aws_lambda.handler(sqs_event(good, "{not json", test_event))
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    (batch,) = deployed.state.list_batches()
    assert batch.settings["rows"] == 2  # the original message's processing_config applied


def test_unusable_csv_is_archived_as_failed(deployed: Deployment) -> None:
    deployed.inputs.put("csv-files/bad.csv", b"just,some\nwords,here\n")
    (result,) = aws_lambda.handler(
        s3_event(deployed.names["IMGPIPE_INPUT_BUCKET"], "csv-files/bad.csv")
    )["results"]
    assert result["batch_id"] is None and "column" in result["error"]
    assert deployed.inputs.exists("archived/failed/bad.csv")
    assert not deployed.inputs.exists("csv-files/bad.csv")


def test_direct_invocation_returns_the_summary_and_emits_emf(
    deployed: Deployment, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "imgpipe-processor")
    with FaultServer() as server:
        url = server.add("/r.jpg", Serve(solid_jpeg(RED)))
        summary = aws_lambda.handler({"csv_text": f"creator,url\nAnn,{url}\nBo,{url}\n"})
        assert summary["totals"]["completed"] == 2
        assert deployed.outputs.exists(summary["creators"][0]["collage_key"])

        deployed.upload_csv("csv-files/emf.csv", [("Cy", url)])
        deployed.work()
    documents = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line
    ]
    assert documents, "no EMF output"
    emf = documents[-1]
    directive = emf["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "imgpipe"
    assert {m["Name"] for m in directive["Metrics"]} == {
        "ProcessingDuration",
        "ImagesProcessed",
        "ErrorCount",
    }
    assert emf["function_name"] == "imgpipe-processor"
    # EMF allows a list of values per metric; Powertools always writes one
    assert emf["ImagesProcessed"] == [1.0] and emf["ErrorCount"] == [0.0]
    assert emf["ProcessingDuration"][0] > 0


def test_unknown_direct_event_is_refused(deployed: Deployment) -> None:
    with pytest.raises(MessageError, match="unrecognised event"):
        aws_lambda.handler({"hello": "world"})
